"""What prune's source scan records: imports, distribution references, dynamic imports, unparsed
files and name-like strings (:mod:`~provision.prune.sourcescan` fills it, one file at a time;
:mod:`~provision.prune.imports` merges the project's)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ImportUse:
    #: dotted name as written (``from a import b`` is recorded as ``a.b``; the resolver falls back to ``a``)
    module: str
    file: str
    line: int
    #: import, from, import_module, __import__, find_spec, dynamic-prefix, type-checking, entry-point,
    #: unparsed-file
    kind: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class DistributionReference:
    """``importlib.metadata.version("torch")``: the code names a distribution directly."""

    distribution: str
    file: str
    line: int


@dataclass
class ScanResult:
    imports: list[ImportUse] = field(default_factory=list)
    dist_references: list[DistributionReference] = field(default_factory=list)
    #: imports whose module name is computed at run time: where
    dynamic: list[str] = field(default_factory=list)
    #: files that did not parse: (file, why)
    unparsed: list[tuple[str, str]] = field(default_factory=list)
    #: string literals that look like names (``"uvicorn"``, ``"django.contrib.admin"``) → the file where
    #: each first appears (its line: :func:`provision.prune.imports.literal_location`, asked only for
    #: the few that turn out to be evidence): console-script names run through subprocess, dotted
    #: module paths a framework imports
    strings: dict[str, str] = field(default_factory=dict)
    files_scanned: int = 0
    #: the project's own top-level module names (imports of these are first-party)
    first_party: set[str] = field(default_factory=set)
