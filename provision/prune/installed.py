"""The installed distributions of the project's environment, and which one provides an import name.

The facts come from :func:`provision.pyenv.collect_distributions` (gpuprov's one collector of
Python-environment facts), run inside the target interpreter when it is not ours (``python -I -c
<collector source>``), so a project whose environment gpuprov does not run in is read the same way as
our own.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision import pyenv, pyenvrun
from provision.errors import UsageError
from provision.prune.scancache import write_cache_file


@dataclass
class InstalledDist:
    name: str
    key: str
    version: str
    requires: list[str]
    provides_extras: list[str]
    modules: list[str]
    top_level: list[str]
    has_record: bool
    record_bytes: int | None
    entry_points: dict[str, list[str]]
    editable_roots: list[str] = field(default_factory=list)
    location: str = ""
    #: the ``.dist-info`` directory (its RECORD lists every file the distribution installed)
    metadata_dir: str = ""
    #: executables its RECORD installs into the environment's bin/ (console scripts and binaries)
    scripts: list[str] = field(default_factory=list)
    #: module files at most one directory deep (``pynvml.py``, ``yaml/__init__.py``): two
    #: distributions listing the same one overwrite each other, and uninstalling one deletes it
    shallow_module_files: list[str] = field(default_factory=list)
    #: PEP 610 ``direct_url.json``: the URL it was installed from ("" for an index) and whether editable
    direct_url: str = ""
    editable: bool = False

    def installed_from(self, directory: Path) -> bool:
        """Whether this distribution was built and installed from ``directory`` (``pip install [-e] .``,
        ``uv sync`` installing the project itself)."""
        import urllib.parse  # not at the top: urllib.request pulls in http.client, for this one call
        import urllib.request

        parsed = urllib.parse.urlparse(self.direct_url)
        if parsed.scheme != "file":
            return False
        source = Path(urllib.request.url2pathname(urllib.parse.unquote(parsed.path)))
        return os.path.realpath(source) == os.path.realpath(directory)

    @property
    def console_scripts(self) -> list[str]:
        named = self.entry_points.get("console_scripts", []) + self.entry_points.get("gui_scripts", [])
        return sorted(set(named) | set(self.scripts))

    @property
    def plugin_groups(self) -> list[str]:
        """Entry-point groups other than scripts: a host program loads these without an import."""
        return sorted(g for g in self.entry_points if g not in ("console_scripts", "gui_scripts"))


@dataclass
class InstalledEnv:
    interpreter: str
    prefix: str
    python_version: str
    marker_environment: dict[str, str]
    stdlib_modules: frozenset[str]
    dists: dict[str, InstalledDist]
    #: dotted module prefix → keys of the distributions that install files under it
    module_index: dict[str, set[str]] = field(default_factory=dict)

    def providers(self, dotted: str) -> set[str]:
        """Distributions that provide the module ``a.b.c``: the longest recorded prefix wins."""
        parts = dotted.split(".")[: pyenv.MODULE_DEPTH]
        for depth in range(len(parts), 0, -1):
            found = self.module_index.get(".".join(parts[:depth]))
            if found:
                return found
        return set()


def env_from_collected(data: dict[str, Any]) -> InstalledEnv:
    from packaging.utils import canonicalize_name  # here: choosing the interpreter must not load packaging

    dists: dict[str, InstalledDist] = {}
    for raw in data["distributions"].values():
        key: str = canonicalize_name(raw["name"])
        dists[key] = InstalledDist(
            name=raw["name"],
            key=key,
            version=raw["version"],
            requires=list(raw["requires"]),
            provides_extras=[canonicalize_name(e) for e in raw["provides_extras"]],
            modules=list(raw["modules"]),
            top_level=list(raw["top_level"]),
            has_record=bool(raw["has_record"]),
            record_bytes=raw["record_bytes"],
            entry_points={g: list(n) for g, n in raw["entry_points"].items()},
            editable_roots=list(raw.get("editable_roots", [])),
            location=raw.get("location", ""),
            metadata_dir=raw.get("metadata_dir", ""),
            scripts=list(raw.get("scripts", [])),
            shallow_module_files=list(raw.get("shallow_module_files", [])),
            direct_url=str((raw.get("direct_url") or {}).get("url", "")),
            editable=bool((raw.get("direct_url") or {}).get("editable", False)),
        )
    index: dict[str, set[str]] = {}
    for key, dist in dists.items():
        names = list(dist.modules)
        if not dist.has_record:  # no RECORD (old egg-info installs): top_level.txt is all there is
            names += dist.top_level
        for name in names:
            index.setdefault(name, set()).add(key)
    for module, owners in data.get("packages_distributions", {}).items():
        if module not in index:  # importlib's own map knows it and RECORD did not: trust it
            index[module] = {canonicalize_name(o) for o in owners if canonicalize_name(o) in dists}
    return InstalledEnv(
        interpreter=data["interpreter"],
        prefix=data["prefix"],
        python_version=data["python_version"],
        marker_environment=dict(data["marker_environment"]),
        stdlib_modules=frozenset(data["stdlib_modules"]),
        dists=dists,
        module_index={k: v for k, v in index.items() if v},
    )


def read_environment(
    python: str | None = None, paths: list[str] | None = None, cache_dir: Path | None = None
) -> InstalledEnv:
    """The installed distributions of ``python`` (default: ours); ``paths`` limits to those dirs.

    With ``cache_dir``, another interpreter's answer is kept and reused while nothing it read from
    changed: the interpreter file and every ``sys.path`` directory and editable source root keep
    their ``mtime_ns`` (installing, upgrading or removing a distribution adds and removes entries in
    its site-packages directory, which changes that directory's mtime)."""
    return PendingEnvironment(python, paths, cache_dir).result()


class PendingEnvironment:
    """:func:`read_environment` started: another interpreter's collector (when its cached answer is
    out of date) runs in its own process while the caller scans the project; :meth:`result` waits
    for it, :meth:`cancel` stops it when the answer is no longer wanted."""

    def __init__(self, python: str | None = None, paths: list[str] | None = None, cache_dir: Path | None = None):
        self.python, self.paths = python, paths
        self.env: InstalledEnv | None = None
        self.cache: Path | None = None
        #: another interpreter's answer: ``[path, mtime_ns]`` of what it depends on (None: gpuprov's own)
        self.fingerprint: list[list[Any]] | None = None
        self.running: pyenvrun.RunningCollector | None = None
        if python is None or _same_interpreter(python):
            return  # read in-process by result()
        if cache_dir is not None:
            import hashlib  # here, as below: a run served from the report cache needs no hashing

            digest = hashlib.sha256(os.path.abspath(python).encode()).hexdigest()[:24]
            self.cache = cache_dir / f"env-{digest}.json"
            try:
                saved = json.loads(self.cache.read_text(encoding="utf-8"))
                if saved["key"] == _collector_key() and saved["fingerprint"] == _fingerprint(python, saved["data"]):
                    self.env = env_from_collected(saved["data"])
                    self.fingerprint = saved["fingerprint"]
                    return
            except (OSError, ValueError, KeyError, TypeError):
                pass
        self.running = pyenvrun.RunningCollector(python, "collect_distributions()")

    def cancel(self) -> None:
        if self.running is not None:
            self.running.cancel()

    def result(self) -> InstalledEnv:
        if self.env is not None:
            return self.env
        if self.python is None or self.running is None:
            self.env = env_from_collected(pyenv.collect_distributions(self.paths))
            return self.env
        data = _collected(self.python, self.running.result(COLLECT_TIMEOUT_S))
        self.fingerprint = _fingerprint(self.python, data)
        if self.cache is not None:
            write_cache_file(self.cache, {"key": _collector_key(), "fingerprint": self.fingerprint, "data": data})
        self.env = env_from_collected(data)
        return self.env


def _collector_key() -> str:
    import hashlib

    from provision import __version__

    return __version__ + ":" + hashlib.sha256(Path(pyenv.__file__).read_bytes()).hexdigest()[:16]


def _fingerprint(python: str, data: dict[str, Any]) -> list[list[Any]]:
    """``mtime_ns`` of what the collector's answer depends on (None for a path that is gone)."""
    roots = {r for d in data.get("distributions", {}).values() for r in d.get("editable_roots", [])}
    out: list[list[Any]] = []
    for path in [python, *data.get("sys_path", []), *sorted(roots)]:
        try:
            out.append([path, os.stat(path).st_mtime_ns])
        except OSError:
            out.append([path, None])
    return out


def _same_interpreter(python: str) -> bool:
    """Only the very path we run as: a venv's ``bin/python`` is often a symlink to the same binary
    as ours (``samefile`` says yes) while its ``sys.prefix``, and so its packages, differ."""
    return os.path.abspath(python) == os.path.abspath(sys.executable)


#: how long another interpreter may take to describe its distributions (RECORDs of a big environment)
COLLECT_TIMEOUT_S = 120


def _collected(python: str, data: dict[str, Any]) -> dict[str, Any]:
    """The collector's answer, or its error as one line."""
    if "error" in data:
        raise UsageError(f"--python {data['error']}")
    if "distributions" not in data:
        raise UsageError(f"--python {python}: unexpected answer from its metadata collector")
    return data


def is_own_environment(env: InstalledEnv) -> bool:
    """Whether ``env`` is the environment gpuprov itself runs from (same ``sys.prefix``)."""
    return os.path.realpath(env.prefix) == os.path.realpath(sys.prefix)
