"""What tests check on a constructed snapshot holds on the published snapshots of the same class too
(tests/data/snapshots/*.published.json, read from readings written from published values)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from provision import applystate, gpudecisions, gpusettings
from provision.gpuready import check
from provision.replay import ReplayNvml
from provision.snapshot import Snapshot
from tests.conftest import SNAPSHOTS
from tests.unit.test_fit_gguf import ARCHS, write_gguf

#: constructed snapshot → the published ones of the same class
CLASSES = {
    "rtx4090-laptop": ["rtx4070-laptop", "rtx3060-laptop"],
    "rtx4090": ["rtx4090", "rtx4090x8"],
    "rtx4080": ["rtx4080super"],
    "rtx3090ti": ["rtx3090", "rtx3090-lowered"],
    "a100x2": ["a100", "a100-mig"],
    "l4": ["l4", "l40s"],
    "h100": ["h100", "h100-mig"],
}
EVERY = [f"{c}.constructed.json" for c in CLASSES] + sorted(
    {f"{p}.published.json" for ps in CLASSES.values() for p in ps}
)
LAPTOPS = ["rtx4090-laptop.constructed.json", "rtx4070-laptop.published.json"]


def gpuprov(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "COLUMNS": "200"}
    env.pop("GPUPROV_NVML_REPLAY", None)
    return subprocess.run(
        [sys.executable, "-m", "provision", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_every_published_snapshot_has_a_class():
    published = {p.name.removesuffix(".published.json") for p in SNAPSHOTS.glob("*.published.json")}
    assert published - {p for ps in CLASSES.values() for p in ps} == {"rtx2080x2"}  # no constructed Turing


@pytest.mark.parametrize("name", EVERY)
def test_doctor_report_shows_the_gpu_as_the_snapshot_has_it(name, tmp_path):
    snap = Snapshot.load(SNAPSHOTS / name)
    proc = gpuprov("doctor", "--from", str(SNAPSHOTS / name), tmp_path=tmp_path)
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr
    g = snap.gpus[0]
    assert g.name in proc.stdout and f"compute capability {g.compute_capability}" in proc.stdout
    assert f"{g.vram_total_mib} MiB" in proc.stdout
    if g.power_min_limit_w is not None and g.power_max_limit_w is not None:
        assert f"settable {g.power_min_limit_w:.0f} W–{g.power_max_limit_w:.0f} W" in proc.stdout
    assert f"gen {g.pcie_generation_current} of {g.pcie_generation_max}" in proc.stdout


@pytest.mark.parametrize("name", EVERY)
def test_save_redact_drops_identifiers(name, tmp_path):
    out = tmp_path / "mine.json"
    proc = gpuprov("doctor", "--from", str(SNAPSHOTS / name), "--save", str(out), "--redact", tmp_path=tmp_path)
    assert proc.returncode in (0, 1), proc.stderr
    saved, original = Snapshot.load(out), Snapshot.load(SNAPSHOTS / name)
    assert saved.host.hostname is None and all(g.uuid is None and g.serial is None for g in saved.gpus)
    assert [g.power_enforced_limit_w for g in saved.gpus] == [g.power_enforced_limit_w for g in original.gpus]


@pytest.mark.parametrize("name", EVERY)
def test_gpu_ready_check_over_the_replay_names_every_gpu(name, tmp_path):
    snap = Snapshot.load(SNAPSHOTS / name)
    result = check(ReplayNvml(snap), (), root=tmp_path)
    assert result.ready and len(re.findall(r"GPU \d+ \(", result.detail)) == len(snap.gpus)


@pytest.mark.parametrize("name", ["rtx4090.constructed.json", "rtx4090.published.json", "rtx4090x8.published.json"])
def test_fit_and_render_for_the_rtx4090_class(name, tmp_path):
    gguf = write_gguf(tmp_path / "qwen2.gguf", ARCHS["qwen2"])
    fit = gpuprov(
        "fit", str(gguf), "--from", str(SNAPSHOTS / name), "--engine", "llama.cpp", "--json", tmp_path=tmp_path
    )
    assert fit.returncode == 0, fit.stderr
    render = gpuprov(
        "render", "rtx4090", "--out", str(tmp_path / "out"), "--from", str(SNAPSHOTS / name), tmp_path=tmp_path
    )
    assert render.returncode == 0, render.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the replay's setters, like NVML's, need root")
@pytest.mark.parametrize("name", LAPTOPS)
def test_laptop_refuses_the_power_limit_and_the_clock_lock_is_used(name, tmp_path):
    nv = ReplayNvml(Snapshot.load(SNAPSHOTS / name), calls=[])
    gpu = nv.snapshot.gpus[0]
    assert gpu.power_min_limit_w is not None and gpu.power_max_limit_w is not None, "real laptops report a range"
    nv.nvmlInit()
    lines = gpusettings.apply_settings(
        nv, gpu, {"power_limit_w": 50.0}, state_dir=tmp_path, fallback_locked_clocks_mhz=[210, 1700]
    )
    assert lines == ["power limit refused by the driver (not supported): GPU clocks locked to 210-1700 MHz instead"]
    assert [c["fn"] for c in nv.calls] == ["nvmlDeviceSetGpuLockedClocks"]
    assert applystate.power_limit_refused(tmp_path) == {gpudecisions.gpu_key(gpu)}
