"""The user's matrix overlay: rows ``gpuprov compat refresh --user`` read from the index's metadata after the
shipped matrix was made, read on top of it — newer releases get a verdict without a gpuprov release.

The overlay holds only what refresh can read from the packages' own metadata: the ``[vllm]``, ``[xformers]``
and ``[flashinfer_pins]`` rows (each marked as the overlay's). Facts that are not in any metadata (torch's CUDA
variants and compute capabilities, vLLM's CUDA and kernels) stay the shipped matrix's; a vLLM release newer
than its build table is given the newest build range's facts, and the check's source says so. The shipped
rows win where both have a version: they were reviewed.

Where: ``$GPUPROV_COMPAT_OVERLAY`` (a file; ``none`` turns the overlay off), else
``$XDG_CACHE_HOME/gpuprov/compat-overlay.toml`` (``~/.cache`` when unset).
"""

from __future__ import annotations

import datetime
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from provision.errors import GpuprovError

#: the tables the overlay may add rows to (refresh's output)
TABLES = ("vllm", "xformers", "flashinfer_pins")
_TABLE_OF = {"vllm": "vllm", "xformers": "xformers", "flashinfer-python": "flashinfer_pins"}
_COVERAGE_KEY = {"vllm": "vllm", "xformers": "xformers", "flashinfer_pins": "flashinfer"}


class OverlayError(GpuprovError):
    """The overlay file cannot be read or written."""


def overlay_path() -> Path | None:
    """The overlay file (None: turned off with ``GPUPROV_COMPAT_OVERLAY=none``)."""
    explicit = os.environ.get("GPUPROV_COMPAT_OVERLAY")
    if explicit is not None:
        return None if explicit.strip().lower() in ("", "none", "off") else Path(explicit)
    cache = os.environ.get("XDG_CACHE_HOME") or ""
    base = Path(cache) if Path(cache).is_absolute() else Path.home() / ".cache"  # the XDG spec ignores relative paths
    return base / "gpuprov" / "compat-overlay.toml"


@dataclass(frozen=True)
class Overlay:
    path: Path
    #: the day refresh read the index ("2026-12-04")
    refreshed: str
    index: str
    #: table → rows, as refresh renders them
    tables: dict[str, list[dict[str, Any]]]

    @property
    def rows(self) -> int:
        return sum(len(rows) for rows in self.tables.values())


def read_overlay(path: Path | None = None) -> Overlay | None:
    """The overlay at ``path`` (default: :func:`overlay_path`); None when there is none. A file that is not an
    overlay raises OverlayError naming it."""
    path = path if path is not None else overlay_path()
    if path is None or not path.is_file():
        return None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        refreshed = str(data["refreshed"])
        datetime.date.fromisoformat(refreshed)
        tables = {t: [dict(r) for r in data[t]["releases"]] for t in TABLES if t in data}
        for rows in tables.values():
            for row in rows:
                _check_row(row)
    except (
        OSError,
        UnicodeDecodeError,
        tomllib.TOMLDecodeError,
        KeyError,
        TypeError,
        ValueError,
        InvalidVersion,
        InvalidSpecifier,
    ):
        raise OverlayError(
            f"{path} is not a gpuprov compat overlay: remove it, or write it again with gpuprov compat refresh --user"
        ) from None
    return Overlay(path, refreshed, str(data.get("index", "")), tables)


def _check_row(row: dict[str, Any]) -> None:
    """A row as refresh writes it, or ValueError/TypeError/InvalidVersion: nothing else reaches the matrix."""
    for key, value in row.items():
        if key in ("version", "torch", "xformers", "flashinfer"):
            if not isinstance(value, str):
                raise TypeError(key)
            Version(value)
        elif key == "torch_range":
            if not isinstance(value, str):
                raise TypeError(key)
            SpecifierSet(value)
        elif key == "torch_extras":
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise TypeError(key)
            for spec in value.values():
                SpecifierSet(spec)
        elif key == "flashinfer_extra":
            if not isinstance(value, bool):
                raise TypeError(key)
        elif key == "source":
            if not isinstance(value, str):
                raise TypeError(key)
        else:
            raise KeyError(key)
    if "version" not in row or "source" not in row:
        raise KeyError("version")


def merge(data: dict[str, Any], overlay: Overlay) -> dict[str, Any]:
    """The shipped matrix document with the overlay's rows for versions it lacks (a new document)."""
    out = dict(data)
    added: dict[str, list[str]] = {}
    for table, rows in overlay.tables.items():
        have = {Version(str(r["version"])) for r in data[table]["releases"]}
        new = [
            {**r, "source": f"{r['source']} (user overlay {overlay.path}, read {overlay.refreshed})", "overlay": True}
            for r in rows
            if Version(str(r["version"])) not in have
        ]
        if new:
            out[table] = {**data[table], "releases": [*data[table]["releases"], *new]}
            added[table] = [str(r["version"]) for r in new]
            key = _COVERAGE_KEY[table]
            top = max((Version(v) for v in added[table]), key=lambda v: v)
            out["coverage"] = {**out["coverage"], key: f"{data['coverage'][key]}, your overlay up to {top}"}
    out["overlay"] = {"path": str(overlay.path), "refreshed": overlay.refreshed, "added": added}
    return out


def write_overlay(
    rows_by_package: dict[str, list[Any]],
    render: Callable[[str, list[Any]], str],
    *,
    index: str,
    path: Path,
    today: datetime.date | None = None,
) -> None:
    """Write the overlay atomically (a reader never sees half a file)."""
    day = (today or datetime.date.today()).isoformat()
    parts = [
        "# gpuprov compat overlay: written by `gpuprov compat refresh --user` from the index's wheel METADATA;",
        "# read on top of the shipped matrix (its rows win where both have a version). Safe to delete.",
        f'refreshed = "{day}"',
        f"index = {_quote(index)}",
        "",
    ]
    for package, rows in rows_by_package.items():
        parts.append(render(package, rows))
    text = "\n".join(parts)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise OverlayError(f"cannot write {path}: {exc.strerror or exc}") from None


def _quote(value: str) -> str:
    import json

    return json.dumps(value)


def table_of(package: str) -> str:
    return _TABLE_OF[canonicalize_name(package)]
