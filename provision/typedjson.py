"""Dataclasses rebuilt from JSON, strictly: every field typed as its annotation says, nothing unknown, and
bounded (texts, lists, numbers), so a hostile file is refused in one line instead of read on for minutes.

:func:`build` is what :meth:`provision.snapshot.Snapshot.from_dict` runs; the bounds are the snapshot
file's (a real one is tens of KiB).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import TYPE_CHECKING, Any, TypeVar

from provision.console import printable
from provision.errors import SnapshotError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_Record = TypeVar("_Record", bound="DataclassInstance")

#: bounds on what one file may hold: beyond them it is not a snapshot, and reading it on would take minutes
#: (a 100 MB GPU name) or crash (JSON nested 100000 deep)
MAX_STRING_CHARS = 64 * 1024
MAX_ITEMS = 10_000
#: every number in a snapshot (MiB, W, MHz, °C, counts, a bit mask) is a finite count from 0 to 2**53
MAX_NUMBER = 2**53


def shown(value: Any) -> str:
    """A value from a snapshot inside an error line: a text quoted, escaped and cut to a readable length; a
    list or an object by its kind (its repr may be megabytes, or nested too deep to make)."""
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:60] + "…")
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return repr(value)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def build(cls: type[_Record], data: Any, where: str) -> _Record:
    if not isinstance(data, dict):
        raise SnapshotError(f"{where}: expected an object, got {type(data).__name__}")
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in data.items():
        if key not in known:
            raise SnapshotError(f"{where}: unknown field {shown(key)}")
        kwargs[key] = _convert(hints[key], value, f"{where}.{key}")
    missing = [
        name
        for name, f in known.items()
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise SnapshotError(f"{where}: missing field(s) {', '.join(missing)}")
    return cls(**kwargs)


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _convert(non_none[0], value, where)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return build(hint, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise SnapshotError(f"{where}: expected a list")
        if len(value) > MAX_ITEMS:
            raise SnapshotError(f"{where}: {len(value)} items, more than the {MAX_ITEMS} a snapshot may hold")
        return [_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise SnapshotError(f"{where}: expected an object")
        if len(value) > MAX_ITEMS:
            raise SnapshotError(f"{where}: {len(value)} entries, more than the {MAX_ITEMS} a snapshot may hold")
        out = {}
        for k, v in value.items():
            key = _convert(str, k, f"{where} (a name)")
            out[key] = _convert(args[1], v, f"{where}.{key}")
        return out
    if hint is Any:
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SnapshotError(f"{where}: expected a number, got {shown(value)}")
        if not (math.isfinite(value) and 0 <= value <= MAX_NUMBER):
            raise SnapshotError(f"{where}: {shown(value)} is not a number from 0 to 2**53")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SnapshotError(f"{where}: expected an integer, got {shown(value)}")
        if not 0 <= value <= MAX_NUMBER:
            raise SnapshotError(f"{where}: {shown(value)} is not a number from 0 to 2**53")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise SnapshotError(f"{where}: expected true or false, got {shown(value)}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise SnapshotError(f"{where}: expected a string, got {shown(value)}")
        if len(value) > MAX_STRING_CHARS:
            raise SnapshotError(
                f"{where}: a text of {len(value)} characters, more than the {MAX_STRING_CHARS} a snapshot field "
                "may hold"
            )
        return printable(value)
    raise SnapshotError(f"{where}: cannot read a value of type {hint!r}")  # pragma: no cover
