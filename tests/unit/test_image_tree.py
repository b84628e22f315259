"""apply --root DIR to an image tree: no NVML call, no driver needed; the GPU settings go to the image's
boot unit, which applies them at first boot to the GPUs there that match the profile. And revert plans
that put back a link, an owner and a group."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from provision import applystate, gpusettings, nvml, probe
from provision.plan import (
    BOOT_UNIT,
    BOOT_UNIT_FILE,
    IMAGE_NOTE,
    SETTINGS_FILE,
    make_plan,
    make_revert_plan,
    revert_desired,
)
from provision.plantypes import FileState, HostState
from provision.profiles.loader import builtin_dir, load_profile
from provision.snapshot import NvmlStatus, Snapshot
from provision.systemd import UnitState
from tests.conftest import gathered, load_snapshot

PY = "/opt/gpuprov/bin/python"


def image_host(**kw) -> HostState:
    base = {
        "files": {p: FileState(None) for p in (SETTINGS_FILE, BOOT_UNIT_FILE)},
        "units": {BOOT_UNIT: UnitState(BOOT_UNIT, None, False)},
        "python": PY,
        "root": "/srv/images/node01",
        "image": True,
    }
    base.update(kw)
    return HostState(**base)


def ollama_image() -> HostState:
    """:func:`image_host` with Ollama installed in the image (its installer's unit): rtx4090 serves Ollama."""
    unit = UnitState("ollama.service", "/etc/systemd/system/ollama.service", True)
    return image_host(units={**image_host().units, "ollama.service": unit})


def no_driver() -> Snapshot:
    snap = Snapshot()
    snap.driver.nvml = NvmlStatus(ok=False, kind="driver_not_loaded", message="the NVIDIA kernel module is not loaded")
    return snap


def test_image_plan_needs_no_driver_and_sends_the_settings_to_the_boot_unit() -> None:
    profile = load_profile("rtx4090", [builtin_dir()])
    plan = make_plan(*gathered(no_driver(), profile, ollama_image()))
    assert plan.desired.gpus == []  # nothing for this machine's GPU
    assert IMAGE_NOTE in plan.desired.notes
    settings = json.loads(next(f.content for f in plan.desired.files if f.path == SETTINGS_FILE))
    assert settings["gpus"] == []
    assert settings["image"]["gpu"]["power_limit_w"] == 250.0
    assert settings["image"]["match"]["gpu_names"] == ["NVIDIA GeForce RTX 4090"]
    assert any(u.name == BOOT_UNIT and u.enabled for u in plan.desired.units)
    assert not [c for c in plan.changes if c.setting in gpusettings.SETTINGS]


def test_live_snapshot_of_an_image_makes_no_nvml_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_nvml() -> None:
        raise AssertionError("NVML called for an image tree")

    monkeypatch.setattr(nvml, "backend", no_nvml)
    monkeypatch.delenv("GPUPROV_NVML_REPLAY_ROOT", raising=False)
    assert probe.plan_snapshot(root=tmp_path).gpus == []


def test_revert_of_an_image_leaves_recorded_gpu_settings_alone() -> None:
    previous = {"gpus": {"GPU-1": {"index": 0, "name": "x", "settings": {"power_limit_w": 450.0}}}, "files": {}}
    plan = make_revert_plan(no_driver(), {"units": {}, **previous}, image_host())
    assert plan.desired.gpus == [] and any("left alone" in n for n in plan.desired.notes)


@pytest.mark.skipif(os.geteuid() != 0, reason="the replay's setters, like NVML's, need root")
@pytest.mark.parametrize(("snapshot", "calls"), [("rtx4090", 2), ("rtx4080", 0)])
def test_boot_unit_applies_the_image_settings_to_matching_gpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, snapshot: str, calls: int
) -> None:
    plan = make_plan(*gathered(no_driver(), load_profile("rtx4090", [builtin_dir()]), ollama_image()))
    settings_file = tmp_path / "gpu-settings.json"
    settings_file.write_text(next(f.content for f in plan.desired.files if f.path == SETTINGS_FILE))
    gpu = tmp_path / "gpu.json"
    gpu.write_text(json.dumps(load_snapshot(snapshot).to_dict()))
    monkeypatch.setenv(nvml.REPLAY_ENV, str(gpu))
    monkeypatch.delenv("GPUPROV_NVML_REPLAY_AS_USER", raising=False)
    state = tmp_path / "state"
    lines = gpusettings.reapply(settings_file, wait_s=0, state_dir=state)
    recorded = json.loads(gpu.read_text()).get("calls", [])
    assert len(recorded) == calls
    if calls:
        assert lines == ["GPU 0: power limit 250 W", "GPU 0: persistence mode on"]
        # what the booted machine had, for `gpuprov revert` there
        (item,) = applystate.load_previous(state)["gpus"].values()
        assert item["settings"] == {"persistence_mode": False, "power_limit_w": 450.0}
    else:
        assert lines == ["GPU 0 (NVIDIA GeForce RTX 4080) does not match profile rtx4090: left alone"]


def test_revert_puts_back_a_link_and_its_owner_old_records_as_before() -> None:
    previous = {
        "gpus": {},
        "units": {},
        "files": {
            "/etc/modprobe.d/x.conf": {
                "type": "symlink",
                "link_target": "/usr/lib/x.conf",
                "content": None,
                "mode": None,
                "uid": 0,
                "gid": 0,
                "created_dirs": [],
            },
            "/etc/systemd/system/ollama.service": {
                "type": "file",
                "content": "[Unit]\n",
                "mode": "0640",
                "uid": 65534,
                "gid": 65534,
                "created_dirs": [],
            },
            "/etc/gpuprov/old.json": {"content": "{}\n", "mode": "0644"},
            "/etc/gpuprov/new.json": {"content": None, "mode": None, "created_dirs": ["/etc/gpuprov"]},
        },
    }
    files = {f.path: f for f in revert_desired(previous).files}
    link = files["/etc/modprobe.d/x.conf"]
    assert (link.content, link.link_target, link.remove_dirs) == (None, "/usr/lib/x.conf", ())
    unit = files["/etc/systemd/system/ollama.service"]
    assert (unit.content, unit.mode, unit.uid, unit.gid) == ("[Unit]\n", "0640", 65534, 65534)
    old = files["/etc/gpuprov/old.json"]
    assert (old.content, old.link_target, old.uid) == ("{}\n", None, None)
    assert files["/etc/gpuprov/new.json"].remove_dirs == ("/etc/gpuprov",)

    # the plan sees a file where the link was, and the owner gpuprov's write gave the unit
    host = HostState(
        files={
            "/etc/modprobe.d/x.conf": FileState("options nvidia x=1\n", "0644", None, 0, 0),
            "/etc/systemd/system/ollama.service": FileState("[Unit]\n", "0640", None, 0, 0),
        }
    )
    plan = make_revert_plan(Snapshot(), previous, host)
    rows = {(c.subject, c.setting): c for c in plan.changes}
    assert rows[("/etc/modprobe.d/x.conf", "type")].desired == "symlink to /usr/lib/x.conf"
    assert rows[("/etc/modprobe.d/x.conf", "type")].action == "change"
    assert rows[("/etc/systemd/system/ollama.service", "owner")].desired == "65534:65534"
    assert rows[("/etc/systemd/system/ollama.service", "content")].action == "ok"


def test_boot_reapply_waits_for_a_running_apply_then_says_so(tmp_path: Path) -> None:
    settings_file = tmp_path / "gpu-settings.json"
    settings_file.write_text('{"profile": "rtx4090", "gpus": []}\n')
    state = tmp_path / "state"
    env = {**os.environ, "GPUPROV_STATE_DIR": str(state), nvml.REPLAY_ENV: str(tmp_path / "gpu.json")}
    with applystate.exclusive_lock(state):
        proc = subprocess.run(
            [sys.executable, "-m", "provision", "reapply-gpu-settings", "--wait-s", "0", str(settings_file)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    assert proc.returncode != 0
    (line,) = proc.stderr.strip().splitlines()
    assert f"another gpuprov apply is running (pid {os.getpid()})" in line
