from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from provision.snapshot import Snapshot

# The suite starts hundreds of `python -m provision` subprocesses. With PYTHONDONTWRITEBYTECODE set (as on
# these machines) each of them would compile typer, rich and pynvml from source again: let them cache.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False
# A developer's own compat overlay (gpuprov compat refresh --user) must not change what the suite sees: the
# overlay's tests name theirs.
os.environ["GPUPROV_COMPAT_OVERLAY"] = "none"
# Nor prune's per-file scan cache in the developer's ~/.cache: the cache's own tests name a directory.
os.environ["GPUPROV_PRUNE_CACHE"] = "none"

DATA = Path(__file__).parent / "data"
SNAPSHOTS = DATA / "snapshots"


def snapshot_files() -> list[Path]:
    return sorted(SNAPSHOTS.glob("*.json"))


def gathered(snapshot, profile, host):
    """(snapshot, profile, host) with what the profile's sections read on the host gathered into ``host``
    (provision.hoststate.gather_sections): the arguments of provision.plan.make_plan, which reads nothing."""
    from provision.hoststate import gather_sections

    return snapshot, profile, gather_sections(host, snapshot, profile)


def load_snapshot(name: str) -> Snapshot:
    """`name` without the suffix: 'rtx4090' finds rtx4090.recorded.json, else rtx4090.constructed.json."""
    for kind in ("recorded", "constructed"):
        path = SNAPSHOTS / f"{name}.{kind}.json"
        if path.exists():
            return Snapshot.load(path)
    raise FileNotFoundError(name)


@pytest.fixture
def snapshot_copy(tmp_path):
    """Copy a snapshot JSON into tmp_path (e.g. as a replay state file) and return its path."""

    def make(name: str) -> Path:
        snap = load_snapshot(name)
        dest = tmp_path / f"{name}.json"
        dest.write_text(json.dumps(snap.to_dict()))
        return dest

    return make
