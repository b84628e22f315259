"""The installed dependency graph: ``Requires-Dist`` of each distribution, markers evaluated by
``packaging`` against the target interpreter's marker environment, extras followed."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from packaging.markers import Marker, UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from provision.prune.installed import InstalledEnv

#: the distribution name at the start of a requirement line (PEP 508 names)
_NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")


def requirement_name(line: str) -> str | None:
    """The canonical distribution name a requirement line starts with, even when the rest of the line
    is not valid PEP 508 (``foo (>=1) ; python_version >=``); None when it names nothing."""
    try:
        return canonicalize_name(Requirement(line).name)
    except InvalidRequirement:
        m = _NAME.match(line)
        return canonicalize_name(m.group(1)) if m else None


@dataclass(frozen=True)
class Edge:
    """``source`` (with ``via_extra`` active, or "" for its base requirements) requires ``target``."""

    source: str
    target: str
    via_extra: str
    target_extras: frozenset[str]


@dataclass
class Closure:
    #: every distribution reached, with the extras active on it
    reached: dict[str, set[str]] = field(default_factory=dict)
    #: target → the edges (from reached sources) that require it
    required_by: dict[str, list[Edge]] = field(default_factory=dict)
    #: requirements of reached distributions that are not installed: (source, requirement)
    missing: list[tuple[str, str]] = field(default_factory=list)


def _marker_true(marker: Marker | None, env: dict[str, str], extra: str) -> bool:
    if marker is None:
        return True
    try:
        return bool(marker.evaluate({**env, "extra": extra}))
    except (UndefinedComparison, UndefinedEnvironmentName):
        return True  # cannot tell: assume it applies (keeping is the safe mistake)


class DependencyGraph:
    def __init__(self, env: InstalledEnv) -> None:
        self.env = env
        self._reqs: dict[str, list[Requirement]] = {}
        #: distribution → names from its ``Requires-Dist`` lines ``packaging`` cannot parse: their markers
        #: and extras are unknown, so each is taken as always required (keeping is the safe mistake)
        self.unparsed: dict[str, list[str]] = {}
        for key, dist in env.dists.items():
            parsed = []
            for line in dist.requires:
                try:
                    parsed.append(Requirement(line))
                except InvalidRequirement:
                    name = requirement_name(line)
                    if name:
                        self.unparsed.setdefault(key, []).append(name)
            self._reqs[key] = parsed

    def edges_from(self, key: str, extras: Iterable[str]) -> list[Edge]:
        """Requirements of ``key`` that apply here with ``extras`` active."""
        out: list[Edge] = []
        active = ["", *sorted(extras)]
        for req in self._reqs.get(key, []):
            for extra in active:
                if _marker_true(req.marker, self.env.marker_environment, extra):
                    out.append(
                        Edge(
                            key, canonicalize_name(req.name), extra, frozenset(canonicalize_name(e) for e in req.extras)
                        )
                    )
                    break
        out += [Edge(key, name, "", frozenset()) for name in self.unparsed.get(key, [])]
        return out

    def optional_requirers(self, target: str, among: Iterable[str]) -> list[tuple[str, str]]:
        """(distribution, extra) pairs among ``among`` that list ``target`` only under an extra:
        an optional backend those distributions use when it is present."""
        out: list[tuple[str, str]] = []
        for key in among:
            for req in self._reqs.get(key, []):
                if canonicalize_name(req.name) != target or req.marker is None:
                    continue
                if _marker_true(req.marker, self.env.marker_environment, ""):
                    continue  # a base requirement, not an optional one
                for extra in self.env.dists[key].provides_extras if key in self.env.dists else []:
                    if _marker_true(req.marker, self.env.marker_environment, extra):
                        out.append((key, extra))
                        break
        return out

    def closure(self, roots: dict[str, set[str]]) -> Closure:
        """Everything ``roots`` (distribution → extras requested) need, transitively."""
        result = Closure()
        queue: deque[str] = deque()
        for key, extras in roots.items():
            if key in self.env.dists:
                result.reached.setdefault(key, set()).update(extras)
                queue.append(key)
        expanded: dict[str, frozenset[str]] = {}
        while queue:
            key = queue.popleft()
            asked = frozenset(result.reached[key])
            done = expanded.get(key)
            if done is not None and asked <= done:
                continue
            expanded[key] = asked
            for edge in self.edges_from(key, asked):
                result.required_by.setdefault(edge.target, [])
                if edge not in result.required_by[edge.target]:
                    result.required_by[edge.target].append(edge)
                if edge.target not in self.env.dists:
                    result.missing.append((key, edge.target))
                    continue
                have = result.reached.setdefault(edge.target, set())
                if edge.target not in expanded or not edge.target_extras <= have:
                    have.update(edge.target_extras)
                    queue.append(edge.target)
        return result
