"""Running uv for a serving environment: its environment variables (managed interpreters under
/opt/gpuprov/python, no user or project configuration), the log every command writes to, the phases shown
while ``gpuprov apply`` runs, the one line that says why uv failed, and which interpreter the
environment is made from (one the server's sandbox can see)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from provision.stack.spec import PYTHONS_DIR, StackError

#: directories an environment's interpreter must not come from: the server's sandbox hides them
#: (ProtectHome=, PrivateTmp=; provision.serving.settings HOME_DIRS, TMP_DIRS)
_HIDDEN = ("/home/", "/root/", "/run/user/", "/tmp/", "/var/tmp/")

Progress = Callable[[str], None]


def progress_file_writer() -> Progress | None:
    """Where the phases go while ``gpuprov apply`` runs: the progress file it names (GPUPROV_PROGRESS_FILE,
    read by :func:`provision.ansiblerun.run_playbook`), or nowhere."""
    path = os.environ.get("GPUPROV_PROGRESS_FILE")
    if not path:
        return None

    def write(phase: str) -> None:
        import json

        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"phase": phase}) + "\n")

    return write


def _uv() -> list[str]:
    from provision.uvtool import find_uv

    found = find_uv()
    if found is None:
        raise StackError("uv not found: install it (pip install uv); gpuprov makes environments with uv")
    return found


def uv_environ() -> dict[str, str]:
    """uv's environment for a serving environment: managed interpreters under /opt/gpuprov/python (a server's
    sandbox hides /root), no reading of the user's uv.toml or a project's."""
    return {
        **os.environ,
        "UV_PYTHON_INSTALL_DIR": os.environ.get("GPUPROV_PYTHON_INSTALL_DIR", PYTHONS_DIR),
        "UV_NO_CONFIG": "1",
    }


class _Runner:
    def __init__(self, log_path: Path, progress: Progress | None) -> None:
        self.log_path = log_path
        self.progress = progress
        self.phases: dict[str, float] = {}
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def close(self) -> None:
        self.log.close()

    def phase(self, name: str) -> None:
        self.current = name
        self.started = time.monotonic()
        self.log.write(f"\n## {name}\n")
        self.log.flush()
        if self.progress:
            self.progress(name)

    def done(self) -> None:
        self.phases[self.current] = round(time.monotonic() - self.started, 3)

    def run(self, cmd: list[str], *, env: dict[str, str] | None = None) -> str:
        self.log.write("$ " + " ".join(cmd) + "\n")
        self.log.flush()
        try:
            proc = subprocess.run(
                cmd, env=env or uv_environ(), capture_output=True, text=True, errors="replace", check=False
            )
        except OSError as exc:
            raise StackError(f"{self.current}: cannot run {cmd[0]}: {exc.strerror or exc}") from None
        self.log.write(proc.stdout + proc.stderr)
        self.log.flush()
        if proc.returncode != 0:
            raise StackError(f"{self.current}: {failure_line(proc.stderr or proc.stdout)} (log: {self.log_path})")
        return proc.stdout


def failure_line(output: str) -> str:
    """The line of uv's output that says what went wrong (uv prints the cause last, after "Caused by")."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    if any("No space left on device" in ln for ln in lines):
        return "no space left on the device (free some, or put the environment on another filesystem)"
    for marker in ("No solution found", "Because ", "error:", "Caused by:", "×"):
        picked = [ln for ln in lines if ln.startswith(marker) or marker in ln[:12]]
        if picked:
            text = picked[-1] if marker == "Caused by:" else picked[0]
            tail = [ln for ln in lines if ln.startswith(("╰─▶", "Caused by:", "cause:"))]  # cause: uv without a tty
            if tail:
                text = f"{text} {tail[-1].lstrip('╰─▶ ').removeprefix('cause: ')}"
            return text[:400]
    return (lines[-1] if lines else "failed")[:400]


def _hidden(path: str) -> bool:
    return any((path.rstrip("/") + "/").startswith(d) for d in _HIDDEN)


def choose_interpreter(request: str, runner: _Runner) -> list[str]:
    """``uv venv``'s interpreter arguments for ``request``: a path as given; for a version, the first
    installed interpreter of it that the server's sandbox can see (uv's own first choice may be a pyenv
    Python under /root), else a uv-managed one, which uv installs under /opt/gpuprov/python."""
    if request.startswith("/"):
        return ["--python", request]
    import json

    listed = runner.run([*_uv(), "python", "list", request, "--only-installed", "--output-format", "json"])
    try:
        found = [e["path"] for e in json.loads(listed) if isinstance(e, dict) and isinstance(e.get("path"), str)]
    except ValueError:
        found = []
    for path in found:
        if not _hidden(path) and not _hidden(os.path.realpath(path)):
            return ["--python", path]
    return ["--python", request, "--python-preference", "only-managed"]
