"""``gpuprov prune --apply``: remove the safe-to-remove dependencies the way the project is managed,
keep a backup of everything it changes, verify the environment afterwards, and roll back on failure.

* uv project (``pyproject.toml`` + ``uv.lock``): ``uv remove --no-sync`` per declaring group edits
  pyproject and re-locks; then exactly the predicted distributions (the removed ones and their
  orphans) leave the environment with ``uv pip uninstall`` — the lock no longer holds them, so a
  later ``uv sync`` agrees, and nothing else the environment holds is touched.
* otherwise: ``uv pip uninstall`` from the environment, and the declaring lines are deleted from
  ``requirements*.txt`` (and from ``pyproject.toml`` arrays, checked by re-parsing).
* either way, when the project itself is installed in the environment (``uv sync`` of a packaged
  project, ``pip install -e .``), its installed metadata still lists what was removed: it is rebuilt
  from the edited declarations (``uv pip install --no-deps --reinstall-package NAME [-e] PROJECT``,
  editable as it was), so ``uv pip check`` and a later ``uv sync`` agree with the new declarations.

Backup: the project files (copies) and every file the removed distributions' ``RECORD`` lists (hard
links where possible, in the environment's prefix), so a rollback needs no network.
Verify: ``uv pip check``; ``import`` of each top-level module the project imports, of every module
of the project's own packages (settings, app modules, entry points: all of them) and of its root (or
``src/``) modules that only define things; the project's console scripts (``[project.scripts]``)
run with ``--help``; and each ``--verify "CMD"`` the user gives (``python manage.py check``). The
set is recorded before the change: a module that does not import cleanly then, or a script whose
``--help`` fails then, is not held against the removal; a ``--verify`` command that fails before any
change is refused. Root modules whose module-level code would run (a script's ``main()``) are not
imported, and the result says so.

A uv project whose ``uv.lock`` is already out of date with its ``pyproject.toml`` (``uv lock --check``)
is refused: ``uv remove`` would re-resolve other packages too. The refusal names them (``uv lock
--dry-run``); ``--allow-relock`` goes ahead and the result lists every other package whose locked
version changed.
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from provision.errors import GpuprovError, UsageError
from provision.prune.analysis import PruneReport
from provision.prune.backup import Backup, record_files, record_paths
from provision.prune.declared import logical_lines
from provision.prune.graph import requirement_name
from provision.prune.installed import InstalledDist, InstalledEnv, is_own_environment
from provision.prune.verify import command_failures, import_failures, package_modules, script_checks

#: ``uv lock --dry-run`` lines naming a change to a locked package
_LOCK_CHANGE = re.compile(r"^(Add|Remove|Update|Upgrade|Downgrade)\s+\S+", re.M)


class RemovalFailed(GpuprovError):
    """A removal step or the verification failed; everything was put back. ``result`` is what was
    attempted (commands run, files edited), for the JSON report."""

    def __init__(self, message: str, result: RemovalResult | None = None) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class RemovalResult:
    mode: str
    removed: list[str]
    orphans_removed: list[str]
    commands: list[list[str]] = field(default_factory=list)
    edited_files: list[str] = field(default_factory=list)
    checked_modules: list[str] = field(default_factory=list)
    #: modules that did not import cleanly before the change (not held against it)
    failing_before: list[str] = field(default_factory=list)
    #: ``SCRIPT --help`` and ``--verify`` commands run before and after
    checked_commands: list[str] = field(default_factory=list)
    #: other locked packages whose version the re-lock changed: name → (before, after); None is absent
    relocked: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    #: the project's own root/src modules not imported by the check: their module-level code runs
    unchecked_modules: list[str] = field(default_factory=list)
    #: the project's own installed distributions rebuilt from the edited declarations
    reinstalled: list[str] = field(default_factory=list)
    #: why it failed (everything was then rolled back); None when it succeeded
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "removed": self.removed,
            "orphans_removed": self.orphans_removed,
            "commands": [_shown(c) for c in self.commands],
            "edited_files": self.edited_files,
            "checked_modules": self.checked_modules,
            "failing_before": self.failing_before,
            "checked_commands": self.checked_commands,
            "relocked": {k: {"before": b, "after": a} for k, (b, a) in sorted(self.relocked.items())},
            "unchecked_modules": self.unchecked_modules,
            "reinstalled": self.reinstalled,
            "error": self.error,
            "rolled_back": self.error is not None,
        }


def refuse_own_environment(env: InstalledEnv, explicit: bool) -> None:
    """``--apply`` changes an environment: never gpuprov's own unless ``--python`` named it."""
    if not explicit and is_own_environment(env):
        raise UsageError(
            f"--apply would change gpuprov's own environment ({env.prefix}), which the project did not choose: "
            f"pass --python {env.interpreter} to mean it, or create the project's .venv"
        )


def uv_command() -> list[str]:
    """uv, found the one way gpuprov finds it (:mod:`provision.uvtool`)."""
    from provision.uvtool import find_uv

    found = find_uv()
    if found is None:
        raise GpuprovError("--apply needs uv: install it (python3 -m pip install uv)")
    return found


def is_uv_project(project: Path) -> bool:
    return (project / "pyproject.toml").is_file() and (project / "uv.lock").is_file()


def _group_flag(group: str) -> list[str]:
    if group == "project":
        return []
    if group == "uv-dev":
        return ["--dev"]
    kind, _, name = group.partition(":")
    return ["--optional", name] if kind == "optional" else ["--group", name]


def remove_requirement_lines(text: str, start_lines: set[int]) -> str:
    """``text`` without the logical lines (continuations included) that start at ``start_lines``."""
    physical = text.splitlines(keepends=True)
    drop: set[int] = set()
    numbered = logical_lines(text)
    for idx, (start, _) in enumerate(numbered):
        if start in start_lines:
            end = numbered[idx + 1][0] - 1 if idx + 1 < len(numbered) else len(physical)
            # a trailing run of blank/comment lines belongs to the next entry, not this one
            while end > start and not physical[end - 1].strip():
                end -= 1
            drop.update(range(start, end + 1))
    return "".join(line for n, line in enumerate(physical, start=1) if n not in drop)


def remove_from_pyproject(text: str, requirement_texts: list[str]) -> str:
    """Drop each quoted requirement string (first occurrence) from pyproject arrays, with its own
    comma: the one after it, or, for the last item of a one-line array, the one before it
    (``["django>=4.2", "six"]`` → ``["django>=4.2"]``); a line left with nothing but whitespace or a
    comment goes with it."""
    lines = text.splitlines(keepends=True)
    for req in requirement_texts:
        quoted = r"""(["'])""" + re.escape(req) + r"""\1"""
        after = re.compile(quoted + r"""[ \t]*,[ \t]*""")
        before = re.compile(r"""[ \t]*,[ \t]*""" + quoted + r"""(?=[ \t]*\])""")
        alone = re.compile(quoted + r"""[ \t]*""")
        for idx, line in enumerate(lines):
            for pattern in (after, before, alone):
                new, count = pattern.subn("", line, count=1)
                if count:
                    break
            if count:
                lines[idx] = "" if re.fullmatch(r"[ \t]*(#[^\n]*)?\r?\n?", new) else new
                break
    return "".join(lines)


def _run(
    cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, check=False)


def _locked_versions(path: Path) -> dict[str, str]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    return {canonicalize_name(p["name"]): str(p.get("version", "")) for p in data.get("package", [])
            if isinstance(p, dict) and isinstance(p.get("name"), str)}  # fmt: skip


def check_lock_current(uv: list[str], project: Path, allow_relock: bool) -> bool:
    """Whether ``uv.lock`` agrees with ``pyproject.toml``. When it does not and ``allow_relock`` is
    off: refuse, naming what a re-lock would change (nothing has been touched yet)."""
    check = _run([*uv, "lock", "--check"], project, env={**os.environ, "UV_NO_PROGRESS": "1"})
    if check.returncode == 0:
        return True
    if allow_relock:
        return False
    dry = _run([*uv, "lock", "--dry-run"], project, env={**os.environ, "UV_NO_PROGRESS": "1"})
    changes = [ln for ln in (dry.stdout + dry.stderr).splitlines() if _LOCK_CHANGE.match(ln)]
    what = "; ".join(changes) if changes else (check.stderr.strip().splitlines() or ["uv lock --check failed"])[0]
    raise UsageError(
        f"uv.lock is out of date with pyproject.toml, so removing would also re-resolve other packages ({what}); "
        "run `uv lock` and review that first, or pass --allow-relock to accept it"
    )


def _pip_check(uv: list[str], python: str, cwd: Path) -> set[str]:
    proc = _run([*uv, "pip", "check", "--python", python], cwd)
    if proc.returncode == 0:
        return set()
    lines = {ln.strip() for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()}
    return {ln for ln in lines if not ln.startswith(("Using ", "Checked ", "Found "))} or {"uv pip check failed"}


def apply_removal(
    report: PruneReport, env: InstalledEnv, verify: tuple[str, ...] = (), allow_relock: bool = False
) -> RemovalResult:
    project = Path(report.project)
    removable = report.removable
    uv = uv_command()
    mode = "uv-project" if is_uv_project(project) else "environment"
    orphans = sorted({name for v in removable for name, _ in v.orphans})
    result = RemovalResult(mode=mode, removed=[v.name for v in removable], orphans_removed=orphans)
    if not removable:
        return result
    removed_keys = {v.key for v in removable} | {canonicalize_name(n) for n in orphans}
    python = env.interpreter
    modules = sorted(
        {top for top, owners in report.import_providers.items() if not owners <= removed_keys}
        | set(package_modules(project, report.first_party_packages))
        | set(report.first_party_modules)
    )
    result.unchecked_modules = list(report.unimportable_modules)
    own = stale_own_installs(env, project, removed_keys)
    bad_verify = command_failures(list(verify), project, env)
    if bad_verify:
        cmd, why = next(iter(bad_verify.items()))
        raise UsageError(
            f"--verify {cmd!r} fails before any change ({why}): fix it or leave it out; nothing was changed"
        )
    lock_before: dict[str, str] = {}
    if mode == "uv-project":
        check_lock_current(uv, project, allow_relock)
        lock_before = _locked_versions(project / "uv.lock")
    baseline_imports = import_failures(python, modules, project)
    result.failing_before = sorted(baseline_imports)
    result.checked_modules = [m for m in modules if m not in baseline_imports]
    scripts = script_checks(report, env)
    scripts_ok = [c for c in scripts if c not in command_failures(scripts, project, env)]
    commands = [*scripts_ok, *verify]
    result.checked_commands = commands
    baseline_check = _pip_check(uv, python, project)

    backup = Backup(env.prefix)
    try:
        project_files = [project / "pyproject.toml", project / "uv.lock"]
        project_files += [project / f for f in report.declared.requirements_files]
        for path in project_files:
            backup.save_text(path)
        for key in sorted(removed_keys | {d.key for d in own}):
            if key in env.dists:
                for path in record_files(env, key):
                    backup.save(path)
        _remove(report, env, mode, uv, result, removed_keys)
        _reinstall_own(own, env, uv, project, result, backup)
        if lock_before:
            result.relocked = _lock_changes(lock_before, _locked_versions(project / "uv.lock"), removed_keys)
        problems = sorted(_pip_check(uv, python, project) - baseline_check)
        broken = import_failures(python, result.checked_modules, project)
        failed = command_failures(commands, project, env)
        if problems or broken or failed:
            details = "; ".join([*problems, *(f"import {m}: {why}" for m, why in sorted(broken.items())),
                                 *(f"`{c}`: {why}" for c, why in failed.items())])  # fmt: skip
            raise RemovalFailed(f"verification failed after removal ({details})")
    except (RemovalFailed, subprocess.TimeoutExpired, OSError) as exc:
        backup.restore()
        backup.discard()
        msg = exc.message if isinstance(exc, GpuprovError) else str(exc)
        result.error = f"{msg}; everything was rolled back"
        raise RemovalFailed(result.error, result) from None
    except BaseException:
        backup.restore()
        backup.discard()
        raise
    backup.discard()
    return result


def _lock_changes(
    before: dict[str, str], after: dict[str, str], removed: set[str]
) -> dict[str, tuple[str | None, str | None]]:
    """Locked packages other than the removed ones whose version changed, appeared or went."""
    return {
        name: (before.get(name), after.get(name))
        for name in sorted(set(before) | set(after))
        if name not in removed and before.get(name) != after.get(name)
    }


def _remove(
    report: PruneReport, env: InstalledEnv, mode: str, uv: list[str], result: RemovalResult, removed_keys: set[str]
) -> None:
    project = Path(report.project)
    removable = report.removable
    by_group: dict[str, list[str]] = {}
    req_lines: dict[str, set[int]] = {}
    pyproject_texts: list[str] = []
    for v in removable:
        dep = report.declared.dependencies[v.key]
        for decl in dep.declarations:
            if decl.group == "requirements":
                req_lines.setdefault(decl.file, set()).add(decl.line)
            elif mode == "uv-project":
                names = by_group.setdefault(decl.group, [])
                if dep.name not in names:
                    names.append(dep.name)
            else:
                pyproject_texts.append(decl.text)
    for group, names in sorted(by_group.items()):
        cmd = [*uv, "remove", "--no-sync", *_group_flag(group), *names]
        _checked(cmd, project, result)
        result.edited_files += [f for f in ("pyproject.toml", "uv.lock") if f not in result.edited_files]
    if pyproject_texts:
        path = project / "pyproject.toml"
        before = tomllib.loads(path.read_text(encoding="utf-8"))
        text = remove_from_pyproject(path.read_text(encoding="utf-8"), pyproject_texts)
        try:
            after = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RemovalFailed(f"pyproject.toml would not parse after the edit ({exc})") from None
        if _flatten_deps(before) - set(pyproject_texts) != _flatten_deps(after):
            raise RemovalFailed("pyproject.toml edit changed more than the removed requirements")
        path.write_text(text, encoding="utf-8")
        result.edited_files.append("pyproject.toml")
    for rel, lines in sorted(req_lines.items()):
        path = project / rel
        path.write_text(remove_requirement_lines(path.read_text(encoding="utf-8"), lines), encoding="utf-8")
        result.edited_files.append(rel)
    names = sorted(env.dists[k].name for k in removed_keys if k in env.dists)
    if names:
        _checked([*uv, "pip", "uninstall", "--python", env.interpreter, *names], project, result)


def stale_own_installs(env: InstalledEnv, project: Path, removed_keys: set[str]) -> list[InstalledDist]:
    """The project's own installed distributions (built from its directory: PEP 610 ``direct_url``)
    whose ``Requires-Dist`` names something being removed: after the edit their metadata is stale."""
    return sorted(
        (
            dist
            for dist in env.dists.values()
            if dist.installed_from(project) and any(requirement_name(r) in removed_keys for r in dist.requires)
        ),
        key=lambda d: d.key,
    )


def _reinstall_own(
    own: list[InstalledDist], env: InstalledEnv, uv: list[str], project: Path, result: RemovalResult, backup: Backup
) -> None:
    """Rebuild the project's own install from the edited declarations, editable as it was, without
    touching its dependencies; files the new install adds are deleted again by a rollback."""
    for dist in own:
        editable = ["-e"] if dist.editable else []
        cmd = [*uv, "pip", "install", "--python", env.interpreter, "--no-deps", "--reinstall-package", dist.name]
        _checked([*cmd, *editable, str(project)], project, result)
        result.reinstalled.append(dist.name)
        site = Path(dist.location)
        for info in site.glob("*.dist-info") if site.is_dir() else []:
            if canonicalize_name(info.name.split("-", 1)[0]) == dist.key:
                for path in record_paths(str(info), str(site)):
                    backup.note_created(path)


def _flatten_deps(data: dict[str, Any]) -> set[str]:
    proj = data.get("project", {})
    out = set(proj.get("dependencies", []) or [])
    for items in (proj.get("optional-dependencies", {}) or {}).values():
        out |= set(items)
    for items in (data.get("dependency-groups", {}) or {}).values():
        out |= {i for i in items if isinstance(i, str)}
    return out


def _shown(cmd: list[str]) -> str:
    """``python -m uv remove x`` and ``/path/to/bin/uv remove x`` → ``uv remove x`` for messages."""
    if cmd[1:3] == ["-m", "uv"]:
        return " ".join(["uv", *cmd[3:]])
    if cmd and os.path.basename(cmd[0]) == "uv":
        return " ".join(["uv", *cmd[1:]])
    return " ".join(cmd)


def _checked(cmd: list[str], cwd: Path, result: RemovalResult) -> None:
    result.commands.append(cmd)
    proc = _run(cmd, cwd, env={**os.environ, "UV_NO_PROGRESS": "1"})
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["failed"])[-1]
        raise RemovalFailed(f"`{_shown(cmd)}` failed: {last}")
