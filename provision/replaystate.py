"""The replay's state file (``GPUPROV_NVML_REPLAY=/path/state.json``): the simulated GPU that separate processes
(the CLI, an Ansible module, a boot-time unit, the monitor) share.

Either a plain snapshot, or ``{"snapshot": {...}, "calls": [...], "xid_events": [...]}``: the setters'
accepted calls in order, and the Xid events a test plays (``{"gpu": 0, "xid": 79}``). A write replaces
the file whole (a reader never sees half of one) and keeps its mode.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.errors import SnapshotError
from provision.snapshot import Snapshot


@dataclass
class ReplayState:
    snapshot: Snapshot
    #: the setters' accepted calls: {"fn": NVML function, "gpu": index, its arguments...}
    calls: list[dict[str, Any]] = field(default_factory=list)
    xid_events: list[dict[str, int]] = field(default_factory=list)


def read_state(path: Path) -> ReplayState:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise SnapshotError(f"replay state {path}: cannot read: {exc}") from None
    calls: list[dict[str, Any]] = []
    events: list[dict[str, int]] = []
    if isinstance(data, dict) and "snapshot" in data:
        calls = list(data.get("calls") or [])
        events = _xid_events(data.get("xid_events"), path)
        data = data["snapshot"]
    return ReplayState(Snapshot.from_dict(data), calls, events)


def write_state(path: Path, state: ReplayState) -> None:
    data: dict[str, Any] = {"snapshot": state.snapshot.to_dict(), "calls": state.calls}
    if state.xid_events:
        data["xid_events"] = state.xid_events
    payload = json.dumps(data, indent=2)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".replay-")
    # keep the state file's mode: the GPU it plays is readable by every user (servers run as their own)
    try:
        os.fchmod(fd, stat.S_IMODE(path.stat().st_mode))
    except FileNotFoundError:
        os.fchmod(fd, 0o644)
    with os.fdopen(fd, "w") as fh:
        fh.write(payload)
    os.replace(tmp, path)


def file_stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when another process writes the state: mtime, size and the inode (a writer that replaces
    the file, as :func:`write_state` does, is seen even within one clock tick)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def _xid_events(value: Any, path: Path) -> list[dict[str, int]]:
    if value is None:
        return []
    ok = isinstance(value, list) and all(
        isinstance(e, dict) and set(e) == {"gpu", "xid"} and all(type(v) is int and 0 <= v < 2**32 for v in e.values())
        for e in value
    )
    if not ok:
        raise SnapshotError(f"replay state {path}: xid_events must be a list of {{gpu: N, xid: N}}")
    return [dict(e) for e in value]
