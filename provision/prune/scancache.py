"""The per-file cache of ``prune``'s source scan, as ruff keeps one: what each Python file imports,
keyed by its path, size and modification time, so a re-run on an unchanged tree parses nothing.
The same directory keeps another interpreter's collected metadata
(:func:`provision.prune.installed.read_environment`).

Where: ``$GPUPROV_PRUNE_CACHE`` (a directory; ``none`` turns the cache off), else
``$XDG_CACHE_HOME/gpuprov/prune`` (``~/.cache/gpuprov/prune``), one JSON file per project directory
(named by a hash of its resolved path) — nothing is written into the project.

Invalidated: a file whose size or ``mtime_ns`` changed is scanned again; the whole cache of a project
is dropped when gpuprov's version or the scanner's source (``imports.py``, ``sourcescan.py``, ``scanresult.py``,
``lexscan.py``, this file) differ from those that wrote it, so a fixed scanner never serves an old
answer. A cache that cannot be read or written is ignored (the scan runs in full), never an error.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from provision import __version__
from provision.usercache import user_cache_dir

ENV_VAR = "GPUPROV_PRUNE_CACHE"


def cache_dir() -> Path | None:
    """The cache directory (None: turned off with ``GPUPROV_PRUNE_CACHE=none``)."""
    explicit = os.environ.get(ENV_VAR)
    if explicit is not None:
        return None if explicit.strip().lower() in ("", "none", "off") else Path(explicit)
    return user_cache_dir() / "prune"


def sources_key(sources: list[Path], extra: str = "") -> str:
    """A hash of gpuprov's version, ``extra`` and these source files: a change to any is a new cache."""
    import hashlib  # here and below, not at import: a run served from the report cache neither hashes nor writes

    digest = hashlib.sha256(f"{__version__}\0{extra}".encode())
    for path in sources:
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(path.name.encode())
    return digest.hexdigest()[:32]


def _scanner_key() -> str:
    """gpuprov's version and a hash of the scanner's own source."""
    names = ("imports.py", "sourcescan.py", "lexscan.py", "scanresult.py", "scancache.py")
    return sources_key([Path(__file__).parent / name for name in names])


class ScanCache:
    """The cached per-file results of one project: :meth:`get` before scanning a file, :meth:`put`
    after; :meth:`save` writes what this run saw (files gone from the tree leave the cache)."""

    def __init__(self, directory: Path, project: Path) -> None:
        root = os.path.realpath(project)
        import hashlib

        self.path = directory / (hashlib.sha256(root.encode()).hexdigest()[:24] + ".json")
        self.key = _scanner_key()
        self.old: dict[str, list[Any]] = {}
        self.new: dict[str, list[Any]] = {}
        self.hits = 0
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and data.get("key") == self.key and data.get("root") == root:
                files = data.get("files")
                self.old = files if isinstance(files, dict) else {}
        except (OSError, ValueError):
            pass
        self.root = root

    def get(self, rel: str, size: int, mtime_ns: int) -> dict[str, Any] | None:
        entry = self.old.get(rel)
        if isinstance(entry, list) and len(entry) == 3 and entry[0] == size and entry[1] == mtime_ns:
            self.new[rel] = entry
            self.hits += 1
            return entry[2] if isinstance(entry[2], dict) else None
        return None

    def put(self, rel: str, size: int, mtime_ns: int, payload: dict[str, Any]) -> None:
        self.new[rel] = [size, mtime_ns, payload]

    def save(self) -> None:
        """Write the cache (atomically) unless nothing changed since it was read."""
        if self.new == self.old:
            return
        write_cache_file(self.path, {"key": self.key, "root": self.root, "files": self.new})


def write_cache_file(path: Path, payload: dict[str, Any]) -> None:
    """Write one cache file atomically; a cache that cannot be written is skipped, never an error."""
    import tempfile

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".prune-", suffix=".tmp", dir=path.parent)
    except OSError:
        return
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(payload, separators=(",", ":")))  # dumps: all in C; dump() iterates in Python
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
