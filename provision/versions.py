"""Lenient version parsing shared by diagnosis, compat and build: bad text is None, never an exception."""

from __future__ import annotations

import re

from packaging.version import InvalidVersion, Version

#: an NVIDIA driver version: 560.35.03, 550.120, 570 (what nvidia-smi and /proc/driver/nvidia/version say)
_DRIVER_VERSION = re.compile(r"[0-9]{3}(\.[0-9]{1,3}){0,2}")


def is_driver_version(text: str) -> bool:
    """The one check of a driver version, for ``--driver`` and for a snapshot's driver fields."""
    return _DRIVER_VERSION.fullmatch(text) is not None


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
