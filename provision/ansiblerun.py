"""Running gpuprov's playbooks with the real ``ansible-playbook`` on this host, and reading back
what every task did (through the ``gpuprov_results`` callback plugin, not by scraping its output).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.errors import GpuprovError


class AnsibleError(GpuprovError):
    """ansible-playbook is missing or failed."""


def playbooks_dir() -> Path:
    """``playbooks/``: packaged in a wheel as provision/_playbooks, else the repository's."""
    here = Path(__file__).resolve().parent
    packaged = here / "_playbooks"
    return packaged if packaged.is_dir() else here.parent / "playbooks"


def collections_dir() -> Path:
    """Where the ``gpuprov.gpu`` collection is (``ansible_collections/gpuprov/gpu`` below it): next to the
    playbooks, the one place ``gpuprov apply``, ``ansible-playbook playbooks/site.yml`` and ansible.cfg look."""
    return playbooks_dir() / "collections"


def ansible_playbook() -> str:
    """The ansible-playbook next to this interpreter (the project's environment), else on PATH."""
    local = Path(sys.executable).parent / "ansible-playbook"
    if local.exists():
        return str(local)
    found = shutil.which("ansible-playbook")
    if found is None:
        raise AnsibleError(
            "ansible-playbook not found: install gpuprov with its ansible extra (uv pip install 'gpuprov[ansible]')"
        )
    return found


@dataclass(frozen=True)
class TaskResult:
    task: str
    item: str | None
    status: str
    msg: str = ""
    diff: Any = None
    #: what the run's plan (the gpuprov_plan task) wants a person to know
    notes: tuple[str, ...] = ()
    #: the plan refused the profile before any change (``msg`` says why)
    refusal: bool = False
    #: a later task refused what the plan asked for (the server's environment failed compat check): the
    #: server is not set up, the run exits 3 (``msg`` says why)
    refused: bool = False


@dataclass
class RunResult:
    returncode: int
    results: list[TaskResult] = field(default_factory=list)
    output: str = ""

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def failed(self) -> list[TaskResult]:
        return [r for r in self.results if r.status in ("failed", "unreachable")]

    @property
    def refusal(self) -> str | None:
        """Why the run's plan refused before any change (None: it did not)."""
        return next((r.msg for r in self.results if r.refusal and r.status == "failed"), None)

    @property
    def refused(self) -> str | None:
        """Why a task after the plan refused (the environment's compat check), None when none did."""
        return next((r.msg for r in self.results if r.refused and r.status == "failed"), None)

    @property
    def notes(self) -> list[str]:
        """The notes of the run's plan, each once, in order."""
        return list(dict.fromkeys(n for r in self.results for n in r.notes))


def run_playbook(
    playbook: str,
    extra_vars: dict[str, Any],
    *,
    check: bool = False,
    diff: bool = False,
    env: dict[str, str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> RunResult:
    """``ansible-playbook -i localhost, -c local PLAYBOOK`` with this interpreter as the module
    interpreter and gpuprov's modules, roles and callback on the paths."""
    pdir = playbooks_dir()
    with tempfile.TemporaryDirectory(prefix="gpuprov-ansible-") as tmp:
        results_file = Path(tmp) / "results.jsonl"
        vars_file = Path(tmp) / "vars.json"
        vars_file.write_text(json.dumps({**extra_vars, "ansible_python_interpreter": sys.executable}))
        environ = dict(os.environ if env is None else env)
        environ.update(
            {
                "ANSIBLE_COLLECTIONS_PATH": str(collections_dir()),
                "ANSIBLE_CALLBACKS_ENABLED": "gpuprov.gpu.gpuprov_results",
                "ANSIBLE_RETRY_FILES_ENABLED": "false",
                "ANSIBLE_NOCOLOR": "1",
                "ANSIBLE_LOCALHOST_WARNING": "false",
                "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
                "ANSIBLE_LOCAL_TEMP": str(Path(tmp) / "local"),
                "ANSIBLE_REMOTE_TEMP": str(Path(tmp) / "remote"),
                "GPUPROV_RESULTS_FILE": str(results_file),
            }
        )
        if progress is not None:
            environ["GPUPROV_PROGRESS_FILE"] = str(Path(tmp) / "progress.jsonl")
        cmd = [ansible_playbook(), "-i", "localhost,", "-c", "local", str(pdir / playbook), "-e", f"@{vars_file}"]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        try:
            proc = _run_with_progress(cmd, environ, progress)
        except OSError as exc:
            raise AnsibleError(f"cannot run ansible-playbook: {exc}") from None
        results = []
        if results_file.exists():
            for line in results_file.read_text(encoding="utf-8").splitlines():
                d = json.loads(line)
                results.append(
                    TaskResult(
                        d["task"],
                        d.get("item"),
                        d["status"],
                        d.get("msg", ""),
                        d.get("diff"),
                        tuple(d.get("notes") or ()),
                        bool(d.get("refusal")),
                        bool(d.get("refused")),
                    )
                )
        return RunResult(proc.returncode, results, proc.stdout + proc.stderr)


def _run_with_progress(
    cmd: list[str], environ: dict[str, str], progress: Callable[[str], None] | None
) -> subprocess.CompletedProcess[str]:
    """Run ansible-playbook; with ``progress``, pass it each task as it starts and each phase a module
    reports (the lines of GPUPROV_PROGRESS_FILE), while the run goes on."""
    if progress is None:
        return subprocess.run(cmd, env=environ, capture_output=True, text=True, check=False)
    import threading

    path = Path(environ["GPUPROV_PROGRESS_FILE"])
    done = threading.Event()

    def follow() -> None:
        offset = 0
        while True:
            finished = done.wait(0.25)
            try:
                with path.open("rb") as fh:
                    fh.seek(offset)
                    chunk = fh.read()
            except OSError:
                chunk = b""
            complete, newline, _ = chunk.rpartition(b"\n")
            offset += len(complete) + len(newline)
            for line in complete.decode("utf-8", "replace").splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and isinstance(event.get("task") or event.get("phase"), str):
                    progress(event.get("task") or "  " + event["phase"])
            if finished:
                return

    watcher = threading.Thread(target=follow, daemon=True)
    watcher.start()
    try:
        return subprocess.run(cmd, env=environ, capture_output=True, text=True, check=False)
    finally:
        done.set()
        watcher.join(timeout=5)
