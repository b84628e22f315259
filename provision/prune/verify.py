"""What ``prune --apply`` checks before and after a removal: the modules that import, the project's
console scripts run with ``--help`` and the user's ``--verify`` commands, each in the project's
environment. The same checks run before the change (what already fails is not held against it) and
after it (what fails then rolls the removal back).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

from provision.prune.analysis import PruneReport
from provision.prune.installed import InstalledEnv

IMPORT_TIMEOUT_S = 300


#: how long a console script's ``--help`` and a ``--verify`` command may take
COMMAND_TIMEOUT_S = 300


#: run in the target interpreter: import each module named on stdin, one result line each, flushed,
#: so a module that kills the interpreter or hangs is known by the line that never came
_IMPORT_BATCH = """
import importlib, json, sys
for name in sys.stdin.read().split():
    try:
        importlib.import_module(name)
        line = [name, None]
    except BaseException as exc:
        line = [name, (type(exc).__name__ + ": " + str(exc)).splitlines()[0][:300] if str(exc) else type(exc).__name__]
    print(json.dumps(line), flush=True)
"""


def import_failures(python: str, modules: list[str], cwd: Path) -> dict[str, str]:
    """Modules that fail to import, tried from the project directory (``src/`` on the path for a src
    layout) in as few interpreters as possible: one imports them in turn; when one kills or hangs
    it, that module fails and a fresh interpreter goes on with the rest."""
    failures: dict[str, str] = {}
    paths = [str(p) for p in (cwd / "src", cwd) if p.is_dir()]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    remaining = list(modules)
    while remaining:
        why = ""
        try:
            proc = subprocess.run(
                [python, "-c", _IMPORT_BATCH],
                input="\n".join(remaining),
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=IMPORT_TIMEOUT_S,
                check=False,
            )
            stdout = proc.stdout
            why = (
                f"the interpreter exited ({proc.returncode}) while importing it: "
                + ((proc.stderr.strip().splitlines() or ["no message"])[-1][:300])
            )
        except subprocess.TimeoutExpired as exc:
            raw = exc.stdout or b""
            stdout = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
            why = f"imports took longer than {IMPORT_TIMEOUT_S} s, stuck in this one"
        done = 0
        for line in stdout.splitlines():
            try:
                name, error = json.loads(line)
            except (ValueError, TypeError):
                continue  # a module printed something of its own
            if name in remaining[done : done + 1]:
                done += 1
                if error is not None:
                    failures[name] = error
        if done < len(remaining):
            failures[remaining[done]] = why
            done += 1
        remaining = remaining[done:]
    return failures


def package_modules(project: Path, packages: list[str]) -> list[str]:
    """Every module of the project's own packages (at its root or in ``src/``): ``app``,
    ``app.settings``, ``app.views.admin``... — subpackages with ``__init__.py``, ``__main__`` left out
    (importing it runs the program)."""
    out: list[str] = []
    for base in (project, project / "src"):
        for name in packages:
            root = base / name
            if not (root / "__init__.py").is_file():
                continue
            for dirpath, dirnames, filenames in os.walk(root):
                here = Path(dirpath)
                dirnames[:] = sorted(d for d in dirnames if d.isidentifier() and (here / d / "__init__.py").is_file())
                prefix = ".".join(here.relative_to(base).parts)
                out.append(prefix)
                for f in sorted(filenames):
                    if f.endswith(".py") and f[:-3].isidentifier() and f not in ("__init__.py", "__main__.py"):
                        out.append(f"{prefix}.{f[:-3]}")
    return sorted(set(out))


def _command_env(env: InstalledEnv) -> dict[str, str]:
    """The environment a command of the project runs in: its virtualenv first on ``PATH``."""
    bin_dir = str(Path(env.interpreter).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "VIRTUAL_ENV": env.prefix}


def command_failures(commands: list[str], cwd: Path, env: InstalledEnv) -> dict[str, str]:
    """Shell commands (a console script's ``--help``, a ``--verify``) that fail: command → why."""
    failures: dict[str, str] = {}
    for command in commands:
        try:
            proc = subprocess.run(
                ["/bin/sh", "-c", command],
                cwd=cwd,
                env=_command_env(env),
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            failures[command] = f"took longer than {COMMAND_TIMEOUT_S} s"
            continue
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["no output"])[-1]
            failures[command] = f"exit {proc.returncode}: {last[:300]}"
    return failures


def script_checks(report: PruneReport, env: InstalledEnv) -> list[str]:
    """``SCRIPT --help`` for each of the project's console scripts installed in the environment."""
    project = report.declared.pyproject.get("project", {})
    scripts = project.get("scripts", {}) if isinstance(project, dict) else {}
    bin_dir = Path(env.interpreter).parent
    names = sorted(n for n in scripts if isinstance(n, str)) if isinstance(scripts, dict) else []
    return [f"{shlex.quote(str(bin_dir / n))} --help" for n in names if (bin_dir / n).is_file()]
