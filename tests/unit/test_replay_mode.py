"""The replay backend's state file stays readable by the users that could read it: the GPU it plays is
readable by every process (servers run as their own users and read NVML too)."""

from __future__ import annotations

import os
import stat

import pytest

from provision.gpuarch import NVML_ARCHITECTURES
from provision.probe import probe_gpus
from provision.replay import ReplayNvml
from tests.conftest import load_snapshot


@pytest.mark.parametrize("mode", [0o644, 0o600])
def test_setter_keeps_the_state_file_mode(snapshot_copy, mode: int) -> None:
    path = snapshot_copy("rtx4090")
    path.chmod(mode)
    nvml = ReplayNvml.from_state_file(path)
    nvml.nvmlInit()
    if os.geteuid() != 0:
        pytest.skip("the replayed setters are root-only, like NVML's")
    nvml.nvmlDeviceSetPersistenceMode(nvml.nvmlDeviceGetHandleByIndex(0), 1)
    assert ReplayNvml.from_state_file(path).calls == [{"fn": "nvmlDeviceSetPersistenceMode", "gpu": 0, "mode": 1}]
    assert stat.S_IMODE(path.stat().st_mode) == mode


@pytest.mark.parametrize(("code", "name"), sorted(NVML_ARCHITECTURES.items()))
def test_the_probe_reads_back_every_architecture_the_replay_plays(code: int, name: str) -> None:
    """The replay answers nvmlDeviceGetArchitecture with NVML's code for the snapshot's architecture (one
    table, provision.gpuarch): Rubin came back as an unknown code while the replay kept its own copy."""
    snap = load_snapshot("rtx4090")
    snap.gpus[0].architecture = name
    nvml = ReplayNvml(snap)
    nvml.nvmlInit()
    assert nvml.nvmlDeviceGetArchitecture(nvml.nvmlDeviceGetHandleByIndex(0)) == code
    _, gpus = probe_gpus(nvml)
    assert gpus[0].architecture == name
