"""The stack's ``prune:`` step: which candidates leave an environment. A candidate something kept requires
is never removed (the dependency graph of ``gpuprov prune``: ``Requires-Dist`` with markers and extras
evaluated for that interpreter), and the reason it stays is said."""

from __future__ import annotations

from typing import TYPE_CHECKING

from provision.stack.spec import StackSpec

if TYPE_CHECKING:
    from provision.prune.installed import InstalledEnv
    from provision.stack.uvrun import _Runner


def prune_decision(spec: StackSpec, env: InstalledEnv) -> tuple[list[str], dict[str, str]]:
    """(the candidates to remove, the candidates kept: name → why) for the environment ``env``."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    from provision.prune.graph import DependencyGraph

    candidates = [c for c in spec.prune if c in env.dists]
    kept: dict[str, str] = {c: "not installed" for c in spec.prune if c not in env.dists}
    if not candidates:
        return [], kept
    roots: dict[str, set[str]] = {}
    for text in [*spec.requirements, *(["llama-cpp-python[server]"] if spec.build else [])]:
        req = Requirement(text)
        roots.setdefault(str(canonicalize_name(req.name)), set()).update(str(canonicalize_name(e)) for e in req.extras)
    # a candidate stays when anything reached from the roots (other candidates left out) requires it
    closure = DependencyGraph(env).closure({k: v for k, v in roots.items() if k not in candidates})
    gone = set(candidates)  # a candidate a kept one requires is kept too, until nothing more changes
    while held := {n for n in gone if any(e.source not in gone for e in closure.required_by.get(n, []))}:
        gone -= held
    removable = []
    for name in candidates:
        edges = [e for e in closure.required_by.get(name, []) if e.source not in gone]
        if edges:
            who = sorted({f"{e.source} {env.dists[e.source].version}" for e in edges if e.source in env.dists})
            kept[name] = "required by " + ", ".join(who)
        else:
            removable.append(name)
    return removable, kept


def prune_environment(spec: StackSpec, python: str, runner: _Runner) -> tuple[list[str], dict[str, str]]:
    """Remove the candidates nothing kept requires from ``python``'s environment; (removed, kept → why)."""
    from pathlib import Path

    from provision.stack.installed import dependency_env
    from provision.stack.uvrun import _uv

    if not spec.prune:
        return [], {}
    removable, kept = prune_decision(spec, dependency_env(Path(python).parent.parent))
    if removable:
        runner.run([*_uv(), "pip", "uninstall", "--python", python, *removable])
    return removable, kept
