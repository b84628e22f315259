"""Writes the *published* snapshots in this folder: each is gpuprov's reading of one file in ../readings/,
which was written from the values of a reading someone published (the address is in the snapshot's note).

Run: `python tests/data/snapshots/publish.py` after `python tests/data/readings/write.py`.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import importlib.util

from provision import smireading

HERE = Path(__file__).resolve().parent
READINGS = HERE.parent / "readings"
_spec = importlib.util.spec_from_file_location("readings_write", READINGS / "write.py")
assert _spec is not None and _spec.loader is not None
_write = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_write)
SOURCES: dict[str, str] = _write.SOURCES

#: snapshot name → the reading it is made from
PUBLISHED = {
    "rtx4090": "rtx4090-535.qx.xml",
    "rtx4090x8": "rtx4090x8-550.q.txt",
    "rtx4080super": "rtx4080super-595.q.txt",
    "rtx4070-laptop": "rtx4070laptop-566.q.txt",
    "rtx3060-laptop": "rtx3060laptop-515.qx.xml",
    "h100": "h100-590.q.txt",
    "h100-mig": "h100mig-590.q.txt",
    "a100-mig": "a100mig-510.qx.xml",
    "a100": "a100-535.qx.xml",
    "l40s": "l40s-595.q.txt",
    "l4": "l4-550.q.txt",
    "rtx3090-lowered": "rtx3090-525.qx.xml",
    "rtx3090": "rtx3090-590.qx.xml",
    "rtx2080x2": "rtx2080x2-590.qx.xml",
}


def published(name: str):
    reading = PUBLISHED[name]
    snap = smireading.read((READINGS / reading).read_text(encoding="utf-8"), source=reading).snapshot
    snap.origin = "published"
    snap.note = f"published: values of https://{SOURCES[reading]} (tests/data/readings/{reading}); {snap.note}"
    snap.gpuprov_version = "0.1.0"
    return snap


if __name__ == "__main__":
    for name in PUBLISHED:
        (HERE / f"{name}.published.json").write_text(published(name).to_json() + "\n", encoding="utf-8")
        print(f"wrote {name}.published.json")
