"""The locked-clock fallback when the driver refuses a power limit it reported a range for (many laptops)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from provision import applystate, gpudecisions
from provision.gpudecisions import pending
from provision.gpusettings import GpuSettingsError, apply_settings
from provision.replay import ReplayNvml
from tests.conftest import load_snapshot

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the replay's setters, like NVML's, need root")

LOCK = [210, 1700]


def _laptop_refusing_setter() -> ReplayNvml:
    snap = load_snapshot("rtx4090-laptop")
    gpu = snap.gpus[0]
    snap.gpus[0] = dataclasses.replace(
        gpu,
        power_min_limit_w=5.0,
        power_max_limit_w=175.0,
        unavailable={k: v for k, v in gpu.unavailable.items() if k != "power_constraints_w"},
    )
    assert snap.gpus[0].unavailable.get("set_power_limit") == "not_supported"
    return ReplayNvml(snap, calls=[])


def test_refused_power_limit_locks_clocks_once(tmp_path: Path) -> None:
    nv = _laptop_refusing_setter()
    gpu = nv.snapshot.gpus[0]
    nv.nvmlInit()
    lines = apply_settings(nv, gpu, {"power_limit_w": 110.0}, state_dir=tmp_path, fallback_locked_clocks_mhz=LOCK)
    assert lines == ["power limit refused by the driver (not supported): GPU clocks locked to 210-1700 MHz instead"]
    assert [c["fn"] for c in nv.calls] == ["nvmlDeviceSetGpuLockedClocks"]
    key = gpudecisions.gpu_key(gpu)
    assert applystate.power_limit_refused(tmp_path) == {key}
    assert applystate.recorded_locked_clocks(tmp_path) == {key: LOCK}
    # converged: nothing pending, so no setter is tried again
    current = gpudecisions.current_settings(gpu, applystate.recorded_locked_clocks(tmp_path))
    todo = pending(current, {"power_limit_w": 110.0}, fallback_locked_clocks_mhz=LOCK, power_limit_refused=True)
    assert todo == {}
    # and asked again anyway, it changes nothing
    assert apply_settings(nv, gpu, {"power_limit_w": 110.0}, state_dir=tmp_path, fallback_locked_clocks_mhz=LOCK) == []
    assert len(nv.calls) == 1


def test_without_a_fallback_the_refusal_is_an_error(tmp_path: Path) -> None:
    nv = _laptop_refusing_setter()
    nv.nvmlInit()
    with pytest.raises(GpuSettingsError, match="the driver does not support setting power limit"):
        apply_settings(nv, nv.snapshot.gpus[0], {"power_limit_w": 110.0}, state_dir=tmp_path)
    assert nv.calls == []


def test_other_errors_are_not_swallowed_by_the_fallback(tmp_path: Path) -> None:
    nv = ReplayNvml(load_snapshot("rtx4090"), calls=[])
    nv.nvmlInit()
    with pytest.raises(GpuSettingsError, match="out of range"):
        apply_settings(
            nv, nv.snapshot.gpus[0], {"power_limit_w": 9999.0}, state_dir=tmp_path, fallback_locked_clocks_mhz=LOCK
        )
    assert nv.calls == []


def test_a_lock_not_in_place_keeps_the_power_limit_pending() -> None:
    current = {"power_limit_w": 150.0, "locked_clocks_mhz": None}
    assert pending(current, {"power_limit_w": 110.0}, fallback_locked_clocks_mhz=LOCK, power_limit_refused=True) == {
        "power_limit_w": 110.0
    }


def test_revert_of_a_power_limit_nvml_could_not_read_leaves_it_alone(tmp_path: Path) -> None:
    """A laptop whose power limit NVML cannot read: recorded as None before the fallback lock, reverted
    by resetting the lock only (it was float(None) in the setter: the revert failed)."""
    nv = _laptop_refusing_setter()
    gpu = nv.snapshot.gpus[0]
    recorded = {"power_limit_w": None, "persistence_mode": None, "locked_clocks_mhz": None}
    current = {"power_limit_w": None, "persistence_mode": True, "locked_clocks_mhz": LOCK}
    assert pending(current, recorded) == {"locked_clocks_mhz": None}
    nv.nvmlInit()
    assert apply_settings(nv, gpu, pending(current, recorded), state_dir=tmp_path) == ["GPU clock lock reset"]
