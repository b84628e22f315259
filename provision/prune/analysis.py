"""``gpuprov prune`` as a pure function of (project files, installed environment): which declared
dependencies the code uses, which it does not, and which of those nothing kept still requires.

Verdicts are conservative by construction: anything that cannot be resolved is ``unknown`` and
never removable; an unused dependency that a kept package requires (``Requires-Dist``, markers
evaluated for the target interpreter) or lists as an optional backend is kept and says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from provision.errors import UsageError
from provision.prune.declared import DeclaredSet, read_declared
from provision.prune.graph import DependencyGraph
from provision.prune.imports import scan_project
from provision.prune.installed import InstalledDist, InstalledEnv, PendingEnvironment
from provision.prune.known import PLUGIN_HOSTS, RUNTIME_LOADED
from provision.prune.scancache import ScanCache
from provision.prune.scanresult import ScanResult
from provision.prune.sourcetree import root_modules
from provision.prune.uses import Use, Uses, find_uses

SCHEMA_VERSION = 1
STATUSES = ("used", "unused", "unknown")


@dataclass
class Verdict:
    name: str
    key: str
    status: str
    removable: bool = False
    reason: str = ""
    used_at: Use | None = None
    required_by: list[str] = field(default_factory=list)
    optional_for: list[str] = field(default_factory=list)
    #: installed distributions that list the same module files: uninstalling this one deletes theirs
    shares_files_with: list[str] = field(default_factory=list)
    record_bytes: int | None = None
    orphans: list[tuple[str, int]] = field(default_factory=list)
    declared_in: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    installed_version: str | None = None
    ignored: bool = False

    @property
    def total_bytes(self) -> int:
        return (self.record_bytes or 0) + sum(b for _, b in self.orphans)

    def to_dict(self) -> dict[str, Any]:
        """One ``dependencies`` item: ``bytes`` is what removing it frees (its RECORD sizes plus the
        orphans that go with it) when removable, else its own RECORD sizes."""
        return {
            "name": self.name,
            "status": self.status,
            "removable": self.removable,
            "required_by": self.required_by,
            "optional_for": self.optional_for,
            "shares_files_with": self.shares_files_with,
            "bytes": self.total_bytes if self.removable else (self.record_bytes or 0),
            "own_bytes": self.record_bytes,
            "orphans": [{"name": n, "bytes": b} for n, b in self.orphans],
            "used_at": self.used_at.where if self.used_at else None,
            "use_kind": self.used_at.kind if self.used_at else None,
            "reason": self.reason,
            "declared_in": self.declared_in,
            "groups": self.groups,
            "installed_version": self.installed_version,
            "ignored": self.ignored,
        }


@dataclass
class PruneConfig:
    ignore: set[str] = field(default_factory=set)
    exclude: tuple[str, ...] = ()


@dataclass
class PruneReport:
    project: str
    interpreter: str
    interpreter_source: str
    python_version: str
    verdicts: list[Verdict]
    declared: DeclaredSet
    undeclared: list[dict[str, str]]
    unresolved: list[dict[str, str]]
    dynamic_imports: list[str]
    unparsed: list[tuple[str, str]]
    missing_requirements: list[tuple[str, str]]
    files_scanned: int
    ignored_unknown: list[str]
    prefix: str = ""
    #: top-level modules the code imports (module level, not type-checking only) → providing distributions
    import_providers: dict[str, set[str]] = field(default_factory=dict)
    #: the project's own packages (directories with ``__init__.py``) at its root or in ``src/``
    first_party_packages: list[str] = field(default_factory=list)
    #: its single-file modules there that only define things (safe to import for the check)
    first_party_modules: list[str] = field(default_factory=list)
    #: its single-file modules whose module-level code would run on import (a script): not imported
    unimportable_modules: list[str] = field(default_factory=list)

    @property
    def removable(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.removable]

    @property
    def removable_bytes(self) -> int:
        seen: dict[str, int] = {}
        for v in self.removable:
            seen[v.key] = v.record_bytes or 0
            for name, size in v.orphans:
                seen[canonicalize_name(name)] = size
        return sum(seen.values())

    @property
    def exit_code(self) -> int:
        return 1 if self.removable else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "exit_code": self.exit_code,
            "project": self.project,
            "environment": {
                "interpreter": self.interpreter,
                "chosen_because": self.interpreter_source,
                "python_version": self.python_version,
            },
            "dependencies": [v.to_dict() for v in self.verdicts],
            "removable_bytes": self.removable_bytes,
            "undeclared_imports": self.undeclared,
            "unresolved_imports": self.unresolved,
            "dynamic_imports": self.dynamic_imports,
            "unparsed_files": [{"file": f, "why": w} for f, w in self.unparsed],
            "declaration_problems": [{"where": w, "text": t, "why": y} for w, t, y in self.declared.problems],
            "ignored_not_declared": self.ignored_unknown,
            "files_scanned": self.files_scanned,
        }


def read_config(pyproject: dict[str, Any]) -> PruneConfig:
    """``[tool.gpuprov.prune]``: ``ignore`` (distribution names) and ``exclude`` (paths not scanned)."""
    tool = pyproject.get("tool", {})
    gpuprov = tool.get("gpuprov", {}) if isinstance(tool, dict) else {}
    if not isinstance(gpuprov, dict):
        raise UsageError("pyproject.toml: [tool] gpuprov must be a table")
    table = gpuprov.get("prune", {})
    if not isinstance(table, dict):
        raise UsageError("pyproject.toml: [tool.gpuprov.prune] must be a table")
    unknown = sorted(set(table) - {"ignore", "exclude"})
    if unknown:
        raise UsageError(f"pyproject.toml: [tool.gpuprov.prune] has unknown keys {unknown}; known: ignore, exclude")
    cfg = PruneConfig()
    for key in ("ignore", "exclude"):
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UsageError(f"pyproject.toml: [tool.gpuprov.prune] {key} must be a list of strings")
    cfg.ignore = {canonicalize_name(v) for v in table.get("ignore", [])}
    cfg.exclude = tuple(table.get("exclude", []))
    return cfg


def _own_dists(env: InstalledEnv, project: Path, project_name: str | None) -> set[str]:
    """The project's own distribution (an editable install of it is not a dependency)."""
    own: set[str] = {canonicalize_name(project_name)} if project_name else set()
    root = project.resolve()
    for key, dist in env.dists.items():
        for r in dist.editable_roots:
            p = Path(r).resolve()
            if p == root or root in p.parents:
                own.add(key)
    return own & set(env.dists) | ({canonicalize_name(project_name)} if project_name else set())


def _shared_files(env: InstalledEnv, key: str, leaving: set[str], owners: dict[str, set[str]]) -> dict[str, str]:
    """Module files of ``key`` that a distribution staying installed also lists: file → that one."""
    shared: dict[str, str] = {}
    for path in env.dists[key].shallow_module_files:
        others = owners.get(path, set()) - leaving - {key}
        if others:
            shared[path] = sorted(others)[0]
    return shared


def _classify(
    declared: DeclaredSet, env: InstalledEnv, uses: Uses, scan: ScanResult, ignored: set[str]
) -> dict[str, Verdict]:
    """used / unused / unknown for each declared dependency (removability comes later)."""
    verdicts: dict[str, Verdict] = {}
    for key, dep in sorted(declared.dependencies.items()):
        dist = env.dists.get(key)
        v = Verdict(
            name=dist.name if dist else dep.name,
            key=key,
            status="unused",
            declared_in=[f"{d.where} ({d.group})" for d in dep.declarations],
            groups=sorted({d.group for d in dep.declarations}),
            installed_version=dist.version if dist else None,
            record_bytes=dist.record_bytes if dist else None,
            ignored=key in ignored,
        )
        hosts = _plugin_hosts(dist, env, declared, uses) if dist is not None else []
        if key in uses.first:
            v.status, v.used_at = "used", uses.first[key]
        elif hosts:
            group, host = hosts[0]
            v.status = "used"
            v.used_at = Use(f"entry point group {group}", f"plugin loaded by {host}", group)
        elif key in uses.weak:
            weak = uses.weak[key]
            v.status, v.used_at = "unknown", weak
            v.reason = f"only weak evidence of use: '{weak.name}' at {weak.where} ({weak.kind}) — kept"
        elif dist is None:
            v.status, v.reason = "unknown", "not installed in this environment: its import names cannot be read"
        elif key in RUNTIME_LOADED:
            v.status, v.reason = "unknown", RUNTIME_LOADED[key]
        elif [g for g in dist.plugin_groups if g not in PLUGIN_HOSTS]:
            v.status = "unknown"
            v.reason = f"a plugin (entry points: {', '.join(dist.plugin_groups)}): its host loads it without an import"
        elif not dist.modules and not dist.top_level and not dist.console_scripts:
            v.status, v.reason = "unknown", "installs no importable module or command: cannot tell what uses it"
        elif scan.dynamic:
            v.status = "unknown"
            v.reason = f"the code imports names computed at run time ({', '.join(scan.dynamic[:3])})"
        if v.ignored:
            v.reason = (v.reason + "; " if v.reason else "") + "ignored (--ignore or [tool.gpuprov.prune])"
        verdicts[key] = v
    return verdicts


def _plugin_hosts(dist: InstalledDist, env: InstalledEnv, declared: DeclaredSet, uses: Uses) -> list[tuple[str, str]]:
    """(entry-point group, host) for each group of ``dist`` whose host program (``pytest11`` →
    pytest) is installed and kept: declared and used, or installed without being declared."""
    out = []
    for group in dist.plugin_groups:
        host = PLUGIN_HOSTS.get(group, ("", ""))[0]
        if host in env.dists and (host not in declared.dependencies or host in uses.first):
            out.append((group, env.dists[host].name))
    return out


def _decide(
    verdicts: dict[str, Verdict], declared: DeclaredSet, env: InstalledEnv, uses: Uses, own: set[str]
) -> list[tuple[str, str]]:
    """Which unused dependencies are safe to remove, with their orphans; returns the requirements of
    kept distributions that are not installed."""
    deps = declared.dependencies
    graph = DependencyGraph(env)
    candidates = {k for k, v in verdicts.items() if v.status == "unused" and not v.ignored}
    roots: dict[str, set[str]] = {}
    for key, dep in deps.items():
        if key not in candidates:
            roots.setdefault(key, set()).update(dep.extras)
    for key in uses.first:
        if key not in deps and key in env.dists:  # used but undeclared: its extras are unknown, assume all
            roots.setdefault(key, set()).update(env.dists[key].provides_extras)
    world = graph.closure({**{k: set(d.extras) for k, d in deps.items()}, **roots})
    for key, dist in env.dists.items():
        if key not in world.reached and key not in own:  # installed for some other reason: it stays
            roots.setdefault(key, set()).update(dist.provides_extras)

    file_owners: dict[str, set[str]] = {}
    for key, dist in env.dists.items():
        for path in dist.shallow_module_files:
            file_owners.setdefault(path, set()).add(key)
    while True:  # keeping one candidate keeps what it needs: repeat until nothing changes
        kept = graph.closure(roots)
        newly_kept = False
        for key in sorted(candidates):
            v = verdicts[key]
            v.required_by, v.optional_for = [], []
            if key in kept.reached:
                v.required_by = sorted({env.dists[e.source].name for e in kept.required_by.get(key, [])})
                v.removable = False
                v.reason = "unused by your code, needed by " + ", ".join(v.required_by) + " — keep"
                continue
            optional = graph.optional_requirers(key, kept.reached)
            if optional:
                v.optional_for = sorted(f"{env.dists[k].name}[{x}]" for k, x in optional)
                v.removable = False
                v.reason = "unused by your code, an optional backend of " + ", ".join(v.optional_for) + " — keep"
                roots.setdefault(key, set()).update(deps[key].extras)
                newly_kept = True
                continue
            shared = _shared_files(env, key, set(candidates), file_owners)
            if shared:
                v.shares_files_with = sorted({env.dists[o].name for o in shared.values()})
                v.removable = False
                v.reason = (
                    f"unused by your code, but it installs the same files as {', '.join(v.shares_files_with)} "
                    f"({', '.join(sorted(shared)[:3])}): uninstalling it deletes them — keep"
                )
                roots.setdefault(key, set()).update(deps[key].extras)
                newly_kept = True
                continue
            v.removable = True
            v.reason = "unused by your code and required by nothing kept — safe to remove"
            extras = sorted(g.partition(":")[2] for g in v.groups if g.startswith("optional:"))
            if extras and declared.project_name:
                v.reason += (
                    f" (it is in the extra {', '.join(extras)}: users installing "
                    f"{declared.project_name}[{extras[0]}] get it; removing it changes what that extra installs)"
                )
        if not newly_kept:
            break
        candidates = {k for k in candidates if not verdicts[k].optional_for and not verdicts[k].shares_files_with}

    removable = {k for k in candidates if verdicts[k].removable}
    for key in sorted(removable):
        mine = graph.closure({key: set(deps[key].extras)})
        leaving = removable | (set(mine.reached) - set(kept.reached))
        verdicts[key].orphans = sorted(
            (env.dists[o].name, env.dists[o].record_bytes or 0)
            for o in mine.reached
            if o != key
            and o not in kept.reached
            and o not in candidates
            and o not in own
            and not _shared_files(env, o, leaving, file_owners)
        )
    return kept.missing


def analyse(
    project: Path,
    environment: InstalledEnv | PendingEnvironment,
    interpreter_source: str = "given",
    ignore: tuple[str, ...] = (),
    cache_dir: Path | None = None,
) -> PruneReport:
    """The prune verdicts for ``project`` in the installed environment ``env``; ``cache_dir`` keeps
    the per-file scan results between runs (:mod:`~provision.prune.scancache`). A pending
    ``environment`` (its collector still running in the target interpreter) is waited for after the
    source scan, so the two run side by side."""
    if not project.is_dir():
        raise UsageError(f"{project}: not a directory")
    declared = read_declared(project)
    if not declared.dependencies and not (project / "pyproject.toml").exists() and not declared.requirements_files:
        raise UsageError(f"{project}: no pyproject.toml and no requirements*.txt: nothing declares dependencies")
    config = read_config(declared.pyproject)
    ignored = config.ignore | {canonicalize_name(n) for n in ignore}
    cache = ScanCache(cache_dir, project) if cache_dir is not None else None
    scan = scan_project(project, config.exclude, cache)
    env = environment.result() if isinstance(environment, PendingEnvironment) else environment
    own = _own_dists(env, project, declared.project_name)
    uses = find_uses(project, env, declared, scan, own)
    verdicts = _classify(declared, env, uses, scan, ignored)
    missing = _decide(verdicts, declared, env, uses, own)
    definitions_only, scripts = root_modules(project)
    return PruneReport(
        project=str(project.resolve()),
        interpreter=env.interpreter,
        interpreter_source=interpreter_source,
        python_version=env.python_version,
        verdicts=sorted(verdicts.values(), key=lambda v: (not v.removable, STATUSES.index(v.status), v.key)),
        declared=declared,
        undeclared=sorted(uses.undeclared.values(), key=lambda d: d["distribution"].lower()),
        unresolved=sorted(uses.unresolved.values(), key=lambda d: d["module"]),
        dynamic_imports=scan.dynamic,
        unparsed=scan.unparsed,
        missing_requirements=missing,
        files_scanned=scan.files_scanned,
        ignored_unknown=sorted(ignored - set(declared.dependencies)),
        prefix=env.prefix,
        import_providers=uses.import_providers,
        first_party_packages=sorted(
            p.name
            for base in (project, project / "src")
            if base.is_dir()
            for p in base.iterdir()
            if (p / "__init__.py").is_file() and p.name.isidentifier()
        ),
        first_party_modules=definitions_only,
        unimportable_modules=scripts,
    )
