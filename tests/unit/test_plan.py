"""plan.make_plan on recorded/constructed snapshots: the same function apply runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from provision.bootfiles import BOOT_UNIT_HARDENING, PERSISTENCED
from provision.plan import BOOT_UNIT, BOOT_UNIT_FILE, MODPROBE_FILE, SETTINGS_FILE, make_plan, make_revert_plan
from provision.plantypes import FileState, HostState, PlanError
from provision.profiles.loader import ProfileSet, builtin_dir, load_profile
from provision.render import render
from provision.snapshot import NvmlStatus
from provision.systemd import UnitState
from tests.conftest import gathered, load_snapshot

PY = "/opt/gpuprov/bin/python"


def host(**kw) -> HostState:
    """A host with Ollama installed (its installer's unit): the built-in rtx4090 and rtx4080 serve Ollama."""
    base = {
        "files": {p: FileState(None) for p in (SETTINGS_FILE, BOOT_UNIT_FILE, MODPROBE_FILE)},
        "units": {
            BOOT_UNIT: UnitState(BOOT_UNIT, None, False),
            PERSISTENCED: UnitState(PERSISTENCED, None, False),
            "ollama.service": UnitState("ollama.service", "/etc/systemd/system/ollama.service", True),
        },
        "python": PY,
    }
    base.update(kw)
    return HostState(**base)


def builtin(name: str):
    return load_profile(name, [builtin_dir()])


def user_profile(tmp_path: Path, text: str, name: str = "mine"):
    (tmp_path / f"{name}.yaml").write_text(text)
    return ProfileSet([builtin_dir(), tmp_path]).load(name)


def by_key(plan) -> dict[tuple[str, str], object]:
    return {(c.subject, c.setting): c for c in plan.changes}


def test_rtx4090_power_limit_and_persistence() -> None:
    plan = make_plan(*gathered(load_snapshot("rtx4090"), builtin("rtx4090"), host()))
    c = by_key(plan)
    assert (c["gpu0", "power_limit_w"].current, c["gpu0", "power_limit_w"].desired) == (450.0, 250)
    assert c["gpu0", "persistence_mode"].action == "change"
    assert c[SETTINGS_FILE, "content"].action == "change"
    assert c[BOOT_UNIT, "enabled"].desired is True
    assert MODPROBE_FILE not in {ch.subject for ch in plan.changes}
    settings = json.loads(next(f.content for f in plan.desired.files if f.path == SETTINGS_FILE))
    assert settings["gpus"][0]["settings"] == {"power_limit_w": 250, "persistence_mode": True}
    assert any("systemd is not running" in n for n in plan.desired.notes)


def test_laptop_power_limit_not_supported_uses_locked_clock_fallback() -> None:
    snap = load_snapshot("rtx4090-laptop")
    plan = make_plan(*gathered(snap, builtin("rtx4090-laptop"), host()))
    c = by_key(plan)
    assert ("gpu0", "power_limit_w") not in c
    assert c["gpu0", "locked_clocks_mhz"].desired == [210, 1700]
    assert any("not supported" in n and "210-1700 MHz" in n for n in plan.desired.notes)
    assert c[MODPROBE_FILE, "content"].action == "change"
    assert "NVreg_PreserveVideoMemoryAllocations=1" in plan.desired.files[-1].content
    assert any("reboot" in f.note for f in plan.desired.files if f.path == MODPROBE_FILE)


def test_laptop_without_fallback_leaves_power_alone(tmp_path: Path) -> None:
    prof = user_profile(tmp_path, "match: {gpu_names: ['*Laptop*']}\ngpu: {power_limit_w: 110}\n")
    plan = make_plan(*gathered(load_snapshot("rtx4090-laptop"), prof, host()))
    assert plan.desired.gpus[0].settings == {}
    assert any("no fallback" in n for n in plan.desired.notes)
    assert plan.pending == []


def test_suspend_units_enabled_where_installed() -> None:
    units = {n: UnitState(n, f"/usr/lib/systemd/system/{n}", False) for n in ("nvidia-suspend.service",)}
    h = host(units={**host().units, **units})
    plan = make_plan(*gathered(load_snapshot("rtx4090-laptop"), builtin("rtx4090-laptop"), h))
    names = [u.name for u in plan.desired.units]
    assert "nvidia-suspend.service" in names and "nvidia-resume.service" not in names
    assert any("nvidia-resume.service is not installed" in n for n in plan.desired.notes)


def test_persistence_by_the_daemon_where_systemd_runs() -> None:
    units = {**host().units, PERSISTENCED: UnitState(PERSISTENCED, "/usr/lib/systemd/system/" + PERSISTENCED, False)}
    plan = make_plan(*gathered(load_snapshot("rtx4090"), builtin("rtx4090"), host(units=units, systemd_running=True)))
    unit = next(u for u in plan.desired.units if u.name == PERSISTENCED)
    assert unit.enabled and unit.now
    settings = json.loads(next(f.content for f in plan.desired.files if f.path == SETTINGS_FILE))
    assert "persistence_mode" not in settings["gpus"][0]["settings"]  # the daemon keeps it, not the boot unit
    assert by_key(plan)["gpu0", "persistence_mode"].note == f"by {PERSISTENCED}"
    # without systemd the daemon is enabled for the next boot and NVML sets persistence now
    plan = make_plan(*gathered(load_snapshot("rtx4090"), builtin("rtx4090"), host(units=units)))
    assert next(u for u in plan.desired.units if u.name == PERSISTENCED).now is False


def test_converged_host_has_nothing_pending() -> None:
    snap = load_snapshot("rtx4090")
    first = make_plan(*gathered(snap, builtin("rtx4090"), host()))
    gpu = snap.gpus[0]
    gpu.power_limit_w, gpu.persistence_mode = 250.0, True
    files = {f.path: FileState(f.content, f.mode) for f in [*first.desired.files, *first.desired.serving_files]}
    files[MODPROBE_FILE] = FileState(None)
    units = {**host().units, BOOT_UNIT: UnitState(BOOT_UNIT, BOOT_UNIT_FILE, True)}
    again = make_plan(*gathered(snap, builtin("rtx4090"), host(files=files, units=units)))
    assert again.pending == []


def test_percent_of_default_limit(tmp_path: Path) -> None:
    prof = user_profile(tmp_path, "extends: rtx4090\ngpu: {power_limit_percent: 55}\n")
    plan = make_plan(*gathered(load_snapshot("rtx4090"), prof, host()))
    assert by_key(plan)["gpu0", "power_limit_w"].desired == pytest.approx(247.5)


def test_default_power_needs_no_boot_unit(tmp_path: Path) -> None:
    # what the device-machine no-op apply uses: desired == current, nothing to write, no setter
    prof = user_profile(tmp_path, "match: {gpu_names: ['NVIDIA H100*']}\ngpu: {power_limit_percent: 100}\n")
    plan = make_plan(*gathered(load_snapshot("h100"), prof, host()))
    assert plan.pending == [] and plan.desired.files == []


@pytest.mark.parametrize(
    ("text", "snapshot", "message"),
    [
        (
            "extends: rtx4090\ngpu: {power_limit_w: 700}\n",
            "rtx4090",
            "700 W is outside what this GPU accepts (150-600 W",
        ),
        ("extends: rtx4090\ngpu: {power_limit_w: 100}\n", "rtx4090", "100 W is outside"),
        ("extends: rtx4080\ngpu: {power_limit_percent: 110}\n", "rtx4080", "352 W is outside"),
        (
            "extends: rtx4090-laptop\ngpu: {power_limit_fallback: {locked_clocks_mhz: [210, 4000]}}\n",
            "rtx4090-laptop",
            "4000 MHz is above the GPU's 3105 MHz",
        ),
    ],
)
def test_refusals_out_of_range(tmp_path: Path, text: str, snapshot: str, message: str) -> None:
    with pytest.raises(PlanError, match=re.escape(message)) as err:
        make_plan(*gathered(load_snapshot(snapshot), user_profile(tmp_path, text), host()))
    assert err.value.exit_code == 3


def test_refuses_a_profile_that_does_not_match_unless_forced() -> None:
    with pytest.raises(PlanError, match=r"profile rtx4090 is for NVIDIA GeForce RTX 4090.*or use --force"):
        make_plan(*gathered(load_snapshot("h100"), builtin("rtx4090"), host()))
    with pytest.raises(PlanError, match=re.escape("110 W is outside what this GPU accepts (200-700 W")):
        make_plan(*gathered(load_snapshot("h100"), builtin("rtx4090-laptop"), host()), force=True)
    plan = make_plan(*gathered(load_snapshot("rtx4080"), builtin("rtx4090"), host()), force=True)
    assert any(n.startswith("--force") for n in plan.desired.notes)


def test_refuses_without_a_driver() -> None:
    snap = load_snapshot("rtx4090")
    snap.driver.nvml = NvmlStatus(False, "library_not_found", "libnvidia-ml.so.1 not found")
    with pytest.raises(PlanError, match=r"no usable NVIDIA driver .*gpuprov never installs drivers"):
        make_plan(*gathered(snap, builtin("rtx4090"), host()))


def test_only_matching_gpus_are_touched() -> None:
    snap = load_snapshot("rtx4090")
    other = load_snapshot("rtx4080").gpus[0]
    other.index, other.uuid = 1, "GPU-other"
    snap.gpus.append(other)
    plan = make_plan(*gathered(snap, builtin("rtx4090"), host()))
    assert [g.index for g in plan.desired.gpus] == [0]
    assert any("GPU 1 (NVIDIA GeForce RTX 4080) does not match" in n for n in plan.desired.notes)


def test_clocks_locked_for_an_earlier_profile_are_unlocked() -> None:
    snap = load_snapshot("rtx4090")
    key = snap.gpus[0].uuid
    plan = make_plan(*gathered(snap, builtin("rtx4090"), host(locked_clocks_mhz={key: [210, 1700]})))
    assert by_key(plan)["gpu0", "locked_clocks_mhz"].desired is None


def test_from_another_host_marks_files_unknown() -> None:
    plan = make_plan(*gathered(load_snapshot("rtx4090"), builtin("rtx4090"), HostState(known=False, python=PY)))
    c = by_key(plan)
    assert c[SETTINGS_FILE, "content"].action == "skip"
    assert c["gpu0", "power_limit_w"].action == "change"


def test_file_diff_and_boot_unit_render() -> None:
    plan = make_plan(*gathered(load_snapshot("rtx4090"), builtin("rtx4090"), host()))
    diff = by_key(plan)[BOOT_UNIT_FILE, "content"].diff
    assert f"+ExecStart={PY} -m provision reapply-gpu-settings" in diff
    unit = next(f.content for f in plan.desired.files if f.path == BOOT_UNIT_FILE)
    assert "After=systemd-modules-load.service nvidia-persistenced.service" in unit
    assert "Restart=on-failure" in unit and "WantedBy=multi-user.target" in unit


def test_render_quotes_for_systemd() -> None:
    text = render(
        "gpuprov-gpu-settings.service.j2",
        {
            "profile": "p",
            "settings_path": "/etc/x.json",
            "python": "/opt/my env/$HOME%/py",
            "wait_s": 5,
            "restart_tries": 2,
            "restart_window_s": 60,
            "hardening": BOOT_UNIT_HARDENING,
        },
    )
    assert 'ExecStart="/opt/my env/$$HOME%%/py" -m provision' in text


def test_render_missing_variable_is_an_error() -> None:
    from provision.render import RenderError

    with pytest.raises(RenderError, match="undefined"):
        render("gpuprov-gpu-settings.service.j2", {"profile": "p"})


def test_revert_plan_from_the_record() -> None:
    snap = load_snapshot("rtx4090")
    gpu = snap.gpus[0]
    gpu.power_limit_w = 250.0
    previous = {
        "gpus": {gpu.uuid: {"index": 0, "name": gpu.name, "settings": {"power_limit_w": 450.0}}},
        "files": {SETTINGS_FILE: {"content": None, "mode": None, "created_dirs": ["/etc/gpuprov"]}},
        "units": {BOOT_UNIT: {"enabled": False}},
    }
    files = {**host().files, SETTINGS_FILE: FileState("{}\n", "0644")}
    units = {**host().units, BOOT_UNIT: UnitState(BOOT_UNIT, BOOT_UNIT_FILE, True)}
    plan = make_revert_plan(snap, previous, host(files=files, units=units))
    c = by_key(plan)
    assert (c["gpu0", "power_limit_w"].desired, c["gpu0", "power_limit_w"].action) == (450.0, "change")
    assert c[SETTINGS_FILE, "content"].desired == "absent"
    assert plan.desired.files[0].remove_dirs == ("/etc/gpuprov",)
    assert c[BOOT_UNIT, "enabled"].desired is False
    assert make_revert_plan(snap, {}, host()).desired.notes == ["nothing recorded: gpuprov has not changed this host"]


@pytest.mark.parametrize(
    "record, now",
    [
        ({"enabled": False, "active": False}, True),  # apply enabled and started it: revert stops it too
        ({"enabled": False, "active": True}, False),  # it ran before (started by hand): leave it running
        ({"enabled": True, "active": True}, True),  # apply disabled and stopped it: revert starts it again
        ({"enabled": False, "active": None}, False),  # recorded offline: only the enablement is restored
        ({"enabled": False}, False),  # records written before "active" was kept
    ],
)
def test_revert_restores_whether_a_unit_ran(record: dict, now: bool) -> None:
    plan = make_revert_plan(load_snapshot("rtx4090"), {"units": {PERSISTENCED: record}}, host())
    [unit] = plan.desired.units
    assert (unit.name, unit.enabled, unit.now) == (PERSISTENCED, record["enabled"], now)


def test_percent_without_a_default_limit_uses_the_fallback(tmp_path: Path) -> None:
    """A percentage of a default NVML does not report cannot be set: the profile's clock lock is used instead
    (before, the plan refused); without a fallback the power limit is left alone."""
    snap = load_snapshot("rtx4090-laptop")
    snap.gpus[0].power_default_limit_w = None
    text = "extends: rtx4090-laptop\ngpu: {power_limit_w: null, power_limit_percent: 80}\n"
    plan = make_plan(*gathered(snap, user_profile(tmp_path, text), host()))
    assert plan.desired.gpus[0].settings["locked_clocks_mhz"] == [210, 1700]
    assert any("80 % of the default limit" in n and "210-1700 MHz" in n for n in plan.desired.notes)
    bare = user_profile(tmp_path, "match: {gpu_names: ['*Laptop*']}\ngpu: {power_limit_percent: 80}\n", "bare")
    plan = make_plan(*gathered(snap, bare, host()))
    assert "power_limit_w" not in plan.desired.gpus[0].settings
    assert any("no fallback" in n for n in plan.desired.notes)


def test_percent_on_a_settable_gpu_without_a_default(tmp_path: Path) -> None:
    snap = load_snapshot("rtx4090")  # NVML reports the range, not the default
    snap.gpus[0].power_default_limit_w = None
    text = (
        "match: {gpu_names: ['*4090*']}\n"
        "gpu: {power_limit_percent: 60, power_limit_fallback: {locked_clocks_mhz: [210, 2000]}}\n"
    )
    plan = make_plan(*gathered(snap, user_profile(tmp_path, text), host()))
    assert plan.desired.gpus[0].settings == {"locked_clocks_mhz": [210, 2000]}
    assert any("no default power limit" in n for n in plan.desired.notes)
