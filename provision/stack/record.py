"""What gpuprov remembers about the environments it made, in its state directory (``/var/lib/gpuprov/stack/``):
per server path, a record (the link, the directories gpuprov built, the digest of the one in use, the set
installed) and the lock file — the exact installed set in ``uv pip freeze`` form — that ``plan`` compares
and ``revert`` uses to remove what gpuprov made, and only that."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

from provision.applystate import StateError, _read, _write

SUBDIR = "stack"


def _slug(link: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", link.strip("/")) or "root"


def record_path(directory: Path, link: str) -> Path:
    return directory / SUBDIR / f"{_slug(link)}.json"


def lock_path(directory: Path, link: str) -> Path:
    return directory / SUBDIR / f"{_slug(link)}.lock.txt"


def read_record(directory: Path, link: str) -> dict[str, Any] | None:
    """The record of the environment at ``link`` (None: gpuprov made none there)."""
    data = _read(record_path(directory, link))
    return data if data.get("link") == link else None


def all_records(directory: Path) -> list[dict[str, Any]]:
    base = directory / SUBDIR
    try:
        paths = sorted(base.glob("*.json"))
    except OSError:
        return []
    return [r for r in (_read(p) for p in paths) if isinstance(r.get("link"), str)]


def write_record(directory: Path, record: dict[str, Any], freeze: str) -> None:
    """The record and the lock file, each replaced atomically."""
    _write(record_path(directory, record["link"]), record)
    path = lock_path(directory, record["link"])
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(freeze)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        raise StateError(f"cannot write gpuprov's state in {path.parent}: {exc.strerror or exc}") from None


def remove_record(directory: Path, link: str) -> None:
    for path in (record_path(directory, link), lock_path(directory, link)):
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StateError(f"cannot remove {path}: {exc.strerror or exc}") from None
