"""Lenient version parsing shared by diagnosis, compat and build: bad text is None, never an exception."""

from __future__ import annotations

from packaging.version import InvalidVersion, Version


def version_or_none(text: str | None) -> Version | None:
    if not text:
        return None
    try:
        return Version(text)
    except InvalidVersion:
        return None


def major_minor(text: str | None) -> tuple[int, int] | None:
    """'12.4.131' → (12, 4); None for text that is not a version."""
    v = version_or_none(text)
    return (v.major, v.minor) if v else None
