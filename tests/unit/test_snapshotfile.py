"""A ``--from FILE`` (provision.snapshotfile): a gpuprov snapshot or an nvidia-smi reading, told apart by what
the file holds, for every command that takes one; ``Snapshot.load`` reads snapshot files only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from provision import smireading, snapshotfile
from provision.errors import SnapshotError
from provision.snapshot import Snapshot
from tests.conftest import SNAPSHOTS

READINGS = SNAPSHOTS.parent / "readings"


@pytest.mark.parametrize("name", ["rtx3090-525.qx.xml", "l4-550.q.txt"])
def test_a_reading_loads_as_the_reader_reads_it(name: str) -> None:
    text = (READINGS / name).read_text(encoding="utf-8")
    assert snapshotfile.load(READINGS / name) == smireading.read(text, source=name).snapshot


def test_a_snapshot_file_loads_as_snapshot_load() -> None:
    path = SNAPSHOTS / "rtx4090.constructed.json"
    assert snapshotfile.load(path) == Snapshot.load(path)


def test_snapshot_load_takes_no_reading() -> None:
    with pytest.raises(SnapshotError, match="not valid JSON"):
        Snapshot.load(READINGS / "rtx3090-525.qx.xml")


def test_a_refused_reading_names_its_file(tmp_path: Path) -> None:
    bad = tmp_path / "gpu.xml"
    bad.write_text('<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY a "b">]>\n<nvidia_smi_log></nvidia_smi_log>\n')
    with pytest.raises(SnapshotError, match=r"gpu\.xml: the XML declares a DOCTYPE"):
        snapshotfile.load(bad)


@pytest.mark.parametrize(
    "args",
    [
        (
            "render",
            "rtx4090",
            "--force",
            "--out",
            "{tmp}/out",
        ),  # doctor, plan, profiles, compat, fit: test_published_findings
        ("build", "llama-cpp", "--cpu"),
    ],
)
def test_commands_take_a_reading_as_from(args: tuple[str, ...], tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    env.pop("GPUPROV_NVML_REPLAY", None)
    argv = [a.format(tmp=tmp_path) for a in args]
    proc = subprocess.run(
        [sys.executable, "-m", "provision", *argv, "--from", str(READINGS / "rtx3090-525.qx.xml")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
