"""Making a serving environment as a :class:`~provision.stack.spec.StackSpec` says, all or nothing:

1. ``uv venv`` in a new directory beside the one in use (its name is the spec's digest);
2. ``uv pip install`` of the planned set, the plan's pins as constraints (``-c``) — or, for llama.cpp,
   llama-cpp-python built for the GPUs here by :mod:`provision.llama_build` (the same build as
   ``gpuprov build llama-cpp``) and verified;
3. ``compat check`` of what is really installed (:func:`provision.compat.installed.check_environment`, from
   metadata: nothing imported); an incompatible set stops here;
4. prune: each ``prune:`` package removed unless something kept requires it (the dependency graph of
   ``gpuprov prune``, markers and extras evaluated for that interpreter);
5. the lock file (``uv pip freeze``) and record written, then the server's path switched to the new
   directory with one ``rename`` of a symbolic link; environments older than ``keep`` removed.

Any failure removes the new directory and leaves the server's path where it was: the previous environment
keeps serving. Every command's output goes to a log file; the failure is summarised in one line.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.stack.installed import installed_versions, missing_pins
from provision.stack.prune import prune_environment
from provision.stack.record import read_record, remove_record, write_record
from provision.stack.spec import StackError, StackSpec
from provision.stack.uvrun import Progress, _hidden, _Runner, _uv, choose_interpreter


@dataclass
class StackResult:
    changed: bool
    message: str
    home: str
    seconds: float = 0.0
    installed: dict[str, str] = field(default_factory=dict)
    pruned: list[str] = field(default_factory=list)
    #: prune candidates kept: name → why
    kept: dict[str, str] = field(default_factory=dict)
    check: dict[str, Any] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    log: str = ""
    phases: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _install_args(spec: StackSpec, python: str, requirements: list[str], constraints: Path) -> list[str]:
    cmd = [*_uv(), "pip", "install", "--python", python, "-c", str(constraints)]
    if spec.wheelhouse:
        cmd += ["--offline", "--no-index", "--find-links", spec.wheelhouse]
    for url in spec.indexes:
        cmd += ["--extra-index-url", url, "--index-strategy", "unsafe-best-match"]
    return [*cmd, *requirements]


def _base_interpreter(home: Path) -> str | None:
    try:
        for line in (home / "pyvenv.cfg").read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home":
                return value.strip()
    except OSError:
        return None
    return None


def apply_spec(
    spec: StackSpec,
    snapshot: Any,
    *,
    state_dir: Path,
    log_path: Path,
    progress: Progress | None = None,
) -> StackResult:
    """Make the environment ``spec`` describes and switch the server's path to it (see the module's doc)."""
    start = time.monotonic()
    link = Path(spec.link)
    record = read_record(state_dir, spec.link) or {"link": spec.link, "engine": spec.engine, "homes": []}
    current = os.readlink(link) if link.is_symlink() else None
    if spec.generation(current) and record.get("digest") == spec.digest and record.get("complete"):
        assert current is not None
        have = installed_versions(Path(current))
        if not missing_pins(have, spec.pins):
            return StackResult(False, f"{spec.link} already holds {spec.summary()}", current, installed=have)
    if link.exists() and not link.is_symlink():
        raise StackError(f"{spec.link} is a directory gpuprov did not make: move it away first")
    if current is not None and current not in record["homes"] and not spec.generation(current):
        raise StackError(f"{spec.link} leads to {current}, which gpuprov did not make: move the link away first")
    # the planned directory is the one in use but no longer as planned (changed by hand): rebuild beside it
    base, n = spec.home, 1
    while spec.home == current:
        n += 1
        spec = spec.at(f"{base}.{n}")
    home = Path(spec.home)
    runner = _Runner(log_path, progress)
    try:
        if home.exists():
            shutil.rmtree(home)  # a build cut off earlier: never the one in use
        result = _build(spec, snapshot, runner, state_dir, record, current)
    except BaseException:
        shutil.rmtree(home, ignore_errors=True)
        raise
    finally:
        runner.close()
    result.seconds = round(time.monotonic() - start, 3)
    result.phases = runner.phases
    return result


def _build(
    spec: StackSpec, snapshot: Any, runner: _Runner, state_dir: Path, record: dict[str, Any], current: str | None
) -> StackResult:
    link, home = Path(spec.link), Path(spec.home)
    python = spec.python_exe
    runner.phase("create the environment")
    home.parent.mkdir(parents=True, exist_ok=True)
    runner.run([*_uv(), "venv", *choose_interpreter(spec.python, runner), "--no-project", str(home)])
    base = _base_interpreter(home) or ""
    if _hidden(base):
        raise StackError(
            f"create the environment: its interpreter is under {base}, which the server's sandbox hides "
            "(ProtectHome=/PrivateTmp=): give stack.python a version (uv installs it under /opt/gpuprov/python) "
            "or an interpreter outside /home, /root and /tmp"
        )
    runner.done()
    with tempfile.TemporaryDirectory(prefix="gpuprov-stack-") as tmp:
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text("\n".join(spec.constraints) + "\n", encoding="utf-8")
        if spec.build:
            _build_llama(spec, runner)
        extra = [r for r in spec.requirements] if not spec.build else list(spec.requirements)
        if extra:
            runner.phase("install " + ", ".join(extra))
            runner.run(_install_args(spec, python, extra, constraints))
            runner.done()
    runner.phase("check the installed set")
    installed = installed_versions(home)
    missing = missing_pins(installed, spec.pins)
    if missing:
        shown = ", ".join(f"{n} {v or 'absent'} (planned {spec.pins[n]})" for n, v in missing.items())
        raise StackError(f"check the installed set: uv installed another set than planned: {shown}")
    check = _check(python, snapshot, cpu_build=bool(spec.build and spec.build.get("cpu")))
    runner.done()
    runner.phase("prune")
    pruned, kept = prune_environment(spec, python, runner)
    installed = installed_versions(home)
    runner.done()
    runner.phase("lock and switch")
    freeze = runner.run([*_uv(), "pip", "freeze", "--python", python])
    homes = [h for h in record.get("homes", []) if h != spec.home] + [spec.home]
    keep = homes[-(spec.keep + 1) :]
    new_record = {
        "link": spec.link,
        "engine": spec.engine,
        "digest": spec.digest,
        "home": spec.home,
        "homes": homes,
        "pins": spec.pins,
        "python": spec.python,
        "base_interpreter": _base_interpreter(home),
        "installed": installed,
        "pruned": pruned,
        "complete": True,
        "made": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_record(state_dir, new_record, freeze)
    _switch(link, spec.home)
    removed = []
    for old in homes[: -len(keep)] if len(homes) > len(keep) else []:
        shutil.rmtree(old, ignore_errors=True)
        removed.append(old)
    if removed:
        new_record["homes"] = keep
        write_record(state_dir, new_record, freeze)
    runner.done()
    what = "switched from " + current if current else "created"
    return StackResult(
        True,
        f"{spec.link}: {spec.summary()} ({what})",
        spec.home,
        installed=installed,
        pruned=pruned,
        kept=kept,
        check=check,
        removed=removed,
        log=str(runner.log_path),
    )


def _build_llama(spec: StackSpec, runner: _Runner) -> None:
    from provision.llama_build import BuildPlan, mem_available_mib, rebound_jobs, run_build, verify_build

    assert spec.build is not None
    plan = BuildPlan(**{k: v for k, v in spec.build.items() if k != "shell"})
    plan = rebound_jobs(plan, os.cpu_count(), mem_available_mib())
    runner.phase(f"build llama-cpp-python ({'CPU' if plan.cpu else 'CUDA ' + ','.join(plan.archs)})")
    runner.log.write(f"# build log: {runner.log_path}.build\n")
    runner.log.flush()
    result = run_build(plan, Path(f"{runner.log_path}.build"))
    if not result.ok:
        raise StackError(
            f"build llama-cpp-python: failed at {result.failed_step}: "
            + " | ".join(result.error_lines[-3:])
            + f" (log: {result.log_path})"
        )
    failed = [c for c in verify_build(plan) if c.ok is False]
    if failed:
        raise StackError("build llama-cpp-python: built, but " + "; ".join(f"{c.name}: {c.detail}" for c in failed))
    from provision.llama_build import record_build

    record_build(plan, result)
    runner.done()


class StackRefused(StackError):
    """compat check called what was installed incompatible with this host: the environment was removed, the
    server's path left where it was (``gpuprov apply`` exits 3)."""


#: what compat check says of a CPU build of llama-cpp-python on a GPU host: what ``stack.cpu: true`` asked for
_ASKED_FOR_CPU = "llama_cpp_cpu"


def _check(python: str, snapshot: Any, *, cpu_build: bool) -> dict[str, Any]:
    """compat check of what is installed; incompatible stops the build (StackError), except the CPU-only
    llama-cpp-python a profile asked for (``stack.cpu: true``), which is said, not refused."""
    from provision.compat.installed import check_environment

    report = check_environment(python, snapshot)
    blocking = [
        p for p in report.problems if p.severity == "incompatible" and not (cpu_build and p.kind == _ASKED_FOR_CPU)
    ]
    if blocking:
        problems = "; ".join(f"{p.pair}: {p.reason}" for p in blocking)
        raise StackRefused(f"check the installed set: compat check says incompatible: {problems}")
    return report.to_dict()


def _switch(link: Path, home: str) -> None:
    """Point ``link`` at ``home`` in one step: a new link beside it, renamed over it (rename(2) is atomic)."""
    tmp = link.with_name(f".{link.name}.gpuprov-new")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(home, tmp)
    os.replace(tmp, link)


def remove_environments(state_dir: Path, records: list[dict[str, Any]]) -> list[str]:
    """Revert: every environment gpuprov made (its record's directories) and the link, when it leads to one
    of them; what gpuprov did not make is left alone. The removed paths."""
    removed = []
    for record in records:
        link = Path(record["link"])
        homes = [h for h in record.get("homes", []) if isinstance(h, str)]
        if link.is_symlink() and os.readlink(link) in homes:
            link.unlink()
            removed.append(str(link))
        for home in homes:
            if Path(home).is_dir():
                shutil.rmtree(home)
                removed.append(home)
        remove_record(state_dir, record["link"])
    return removed
