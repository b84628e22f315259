"""Where a project uses each distribution: its imports (resolved to the installed distributions that
provide them), entry points, metadata look-ups, commands it runs, ``python -m``, tools it configures,
and module paths named in strings. Strong evidence makes a dependency "used"; weak evidence (a plain
word in a string, a mention in prose) only keeps it "unknown". The verdicts are
:mod:`~provision.prune.analysis`'s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from provision.prune.declared import DeclaredSet
from provision.prune.imports import entry_point_imports, literal_location
from provision.prune.installed import InstalledEnv
from provision.prune.known import UNINSTALLED_IMPORT_NAMES
from provision.prune.mentions import config_file_tools, find_mentions, tool_tables
from provision.prune.scanresult import ScanResult


@dataclass
class Use:
    where: str
    kind: str
    name: str
    #: weak evidence (a plain word in a string literal, a mention in prose): keeps the dependency as
    #: "unknown", never makes it "used"
    weak: bool = False


@dataclass
class Uses:
    #: distribution key → its first use
    first: dict[str, Use] = field(default_factory=dict)
    undeclared: dict[str, dict[str, str]] = field(default_factory=dict)
    unresolved: dict[str, dict[str, str]] = field(default_factory=dict)
    #: top-level module imported at run time → providing distributions (for --apply's import check)
    import_providers: dict[str, set[str]] = field(default_factory=dict)
    #: declared distribution key → its first weak evidence of use (no strong use found)
    weak: dict[str, Use] = field(default_factory=dict)


def find_uses(project: Path, env: InstalledEnv, declared: DeclaredSet, scan: ScanResult, own: set[str]) -> Uses:
    """Every distribution the project uses: imports, entry points, metadata look-ups, commands it
    runs, ``python -m``, tools it configures."""
    deps = declared.dependencies
    found = Uses()

    def record(key: str, use: Use) -> None:
        if key in own:
            return
        if use.weak:
            if key in deps:
                found.weak.setdefault(key, use)
            return
        if key not in found.first or (found.first[key].kind == "type-checking" and use.kind != "type-checking"):
            found.first[key] = use
        if key not in deps and key not in found.undeclared and key in env.dists:
            found.undeclared[key] = {"import": use.name, "distribution": env.dists[key].name, "where": use.where}

    for imp in [*scan.imports, *entry_point_imports(declared.pyproject, declared.pyproject_text)]:
        top = imp.module.split(".")[0]
        if top in env.stdlib_modules or top == "__future__":
            continue
        providers = env.providers(imp.module) - own
        if providers:
            if imp.kind in ("import", "from"):
                found.import_providers.setdefault(top, set()).update(providers)
            for key in providers:
                record(key, Use(imp.where, imp.kind, imp.module))
            continue
        if top in scan.first_party or env.providers(imp.module):
            continue  # the project's own code
        two = ".".join(imp.module.split(".")[:2])
        fallback = UNINSTALLED_IMPORT_NAMES.get(two) or UNINSTALLED_IMPORT_NAMES.get(top)
        hits = [k for k in (fallback[0] if fallback else ()) if k in deps]
        for key in hits:
            record(key, Use(imp.where, f"{imp.kind} (not installed; name from gpuprov's exceptions list)", imp.module))
        if not hits and top not in found.unresolved:
            found.unresolved[top] = {"module": imp.module, "where": imp.where}
    for ref in scan.dist_references:
        key = canonicalize_name(ref.distribution)
        if key in deps or key in env.dists:
            record(key, Use(f"{ref.file}:{ref.line}", "metadata", ref.distribution))

    commands: dict[str, set[str]] = {}
    for key in deps:
        dist = env.dists.get(key)
        for script in dist.console_scripts if dist else []:
            commands.setdefault(script, set()).add(key)
    mentions, modules = find_mentions(project, set(commands), declared.pyproject, declared.pyproject_text)
    for m in mentions:
        for key in commands.get(m.word, ()):
            record(key, Use(m.where, m.kind, m.word, weak=m.weak))
    for m in modules:
        if m.word.split(".")[0] in env.stdlib_modules:
            continue
        for key in env.providers(m.word) - own:
            record(key, Use(m.where, m.kind, m.word, weak=m.weak))
    for literal, rel in scan.strings.items():
        evidence = [(key, "command", False) for key in commands.get(literal, ())]
        evidence += _string_module_use(literal, env, scan, deps, own)
        if evidence:
            where = literal_location(project, rel, literal)
            for key, kind, weak in evidence:
                record(key, Use(where, kind, literal, weak=weak))
    tools: dict[str, str] = {
        canonicalize_name(t): f"pyproject.toml [tool.{t}]" for t in tool_tables(declared.pyproject)
    }
    for name, where in config_file_tools(project).items():
        tools.setdefault(canonicalize_name(name), where)
    for key in deps:
        dist = env.dists.get(key)
        names = [key, *(canonicalize_name(s) for s in (dist.console_scripts if dist else []))]
        hit = next((n for n in names if n in tools), None)
        if hit is not None and key not in found.first:
            record(key, Use(tools[hit], "tool-config", hit))
    return found


_MODULE_PATH = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


def _string_module_use(
    literal: str, env: InstalledEnv, scan: ScanResult, deps: dict[str, Any], own: set[str]
) -> list[tuple[str, str, bool]]:
    """(distribution key, kind of use, weak) for a string literal in code that names a module of a
    declared distribution: a dotted path (``"django.contrib.admin"`` in ``INSTALLED_APPS``,
    ``"whitenoise.middleware.WhiteNoiseMiddleware"``, a ``dictConfig`` ``"()"``/``"class"``, a Sphinx
    extension ``"sphinx_copybutton.x"``) is imported by a framework: a use. A plain word that matches
    a top-level module (``"rest_framework"``, or just the word ``"yaml"`` as a format name) may be
    either: weak evidence, which keeps the dependency."""
    if not _MODULE_PATH.fullmatch(literal):
        return []
    top = literal.split(".", 1)[0]
    if top in env.stdlib_modules or top in scan.first_party or not env.module_index.get(top):
        return []
    keys = sorted((env.providers(literal) & set(deps)) - own)
    if "." in literal:
        return [(key, "dotted module path in a string", False) for key in keys]
    return [(key, "string naming its module (weak evidence)", True) for key in keys]
