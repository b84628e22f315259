"""gpuprov's per-user cache directory: ``$XDG_CACHE_HOME/gpuprov``, ``~/.cache/gpuprov`` when that is
unset or not absolute (the XDG Base Directory spec ignores relative paths)."""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or ""
    base = Path(cache) if Path(cache).is_absolute() else Path.home() / ".cache"
    return base / "gpuprov"
