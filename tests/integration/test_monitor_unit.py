"""The ``monitoring`` profile section: the exporter's unit, rendered through the plan (what apply writes),
passes ``systemd-analyze verify``, scores 2.0 or lower in ``systemd-analyze security --offline=true``,
listens on loopback by default and waits for the GPUs like the serving units; a profile without the
section removes a unit an earlier one installed."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from provision.monitor.section import UNIT, UNIT_FILE
from provision.plantypes import FileState, HostState
from provision.profiles import ProfileError
from provision.profiles.loader import ProfileSet, builtin_dir
from provision.render import render
from provision.snapshot import Snapshot
from provision.systemd import UnitState
from tests.conftest import SNAPSHOTS, gathered
from tests.integration import unit_analysis

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not unit_analysis.available(), reason="systemd-analyze not installed (Debian package systemd)"),
]

PY = "/usr/bin/python3"
MAX_EXPOSURE = 2.0


def _profiles(tmp_path: Path, monitoring: str) -> ProfileSet:
    user = tmp_path / "profiles"
    user.mkdir(exist_ok=True)
    (user / "mon.yaml").write_text("schema_version: 1\ndescription: exporter\nextends: rtx4090\n" + monitoring)
    return ProfileSet([builtin_dir(), user])


def _plan(profiles: ProfileSet, host: HostState):
    from provision.plan import make_plan

    snap = Snapshot.load(SNAPSHOTS / "rtx4090.constructed.json")
    return make_plan(*gathered(snap, profiles.load("mon"), host))


def test_exporter_unit_verifies_scores_ok_and_waits_for_the_gpu(tmp_path: Path) -> None:
    plan = _plan(_profiles(tmp_path, "monitoring: {exporter: {port: 9835}}\n"), HostState(known=False, python=PY))
    unit = next(f.content for f in plan.desired.files if f.path == UNIT_FILE)
    assert any(u.name == UNIT and u.enabled for u in plan.desired.units)
    root = tmp_path / "root"
    root.mkdir()
    unit_analysis.analysis_root(root, {UNIT_FILE: unit})
    assert unit_analysis.verify(root, UNIT_FILE) == ""
    exposure = unit_analysis.security(root, UNIT)
    print("exposure:", exposure.score)
    assert exposure.score <= MAX_EXPOSURE and exposure.verdict == "OK", exposure.table
    assert f"ExecStart={PY} -m provision exporter --address 127.0.0.1 --port 9835\n" in unit
    assert f"ExecStartPre={PY} -m provision wait-gpu --timeout-s 120\n" in unit
    # the same GPU-ready head as the serving units: one include, rendered by the one renderer
    assert render("gpuprov-serving-unit-head.inc.j2", {}) in unit
    assert "DynamicUser=yes" in unit and "DeviceAllow=char-nvidia-frontend rw" in unit
    assert not any("other hosts can read" in n for n in plan.desired.notes)


def test_a_non_loopback_address_is_said(tmp_path: Path) -> None:
    profiles = _profiles(tmp_path, "monitoring: {exporter: {port: 9100, address: 0.0.0.0}}\n")
    plan = _plan(profiles, HostState(known=False, python=PY))
    assert any("0.0.0.0: other hosts can read" in n for n in plan.desired.notes)


@pytest.mark.parametrize(
    ("monitoring", "message"),
    [
        ("monitoring: {exporter: {port: 0}}\n", "monitoring.exporter.port"),
        ("monitoring: {exporter: {address: localhost}}\n", "expected an IP address"),
        ("monitoring: {exporter: {prot: 1}}\n", "prot"),
    ],
)
def test_bad_section_is_a_profile_error(tmp_path: Path, monitoring: str, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        _profiles(tmp_path, monitoring).load("mon")


def test_a_profile_without_the_section_removes_the_exporter(tmp_path: Path) -> None:
    host = HostState(
        known=True,
        python=PY,
        files={UNIT_FILE: FileState("[Unit]\n", "0644", None, 0, 0)},
        # Ollama installed (its installer's unit): the profile extends rtx4090, which serves Ollama
        units={
            UNIT: UnitState(UNIT, UNIT_FILE, True),
            "ollama.service": UnitState("ollama.service", "/etc/systemd/system/ollama.service", True),
        },
    )
    plan = _plan(_profiles(tmp_path, ""), host)
    assert any(f.path == UNIT_FILE and f.content is None for f in plan.desired.files)
    assert any(u.name == UNIT and not u.enabled and u.now for u in plan.desired.units)


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="the replay's NVML setters, like the real ones, need root")
def test_the_fleet_variable_installs_the_exporter_through_the_role(tmp_path: Path) -> None:
    """ansible-playbook with the role's gpuprov_gpu_exporter_port (what a fleet's group_vars set) writes the
    exporter's unit although the built-in rtx4090 profile has no monitoring section."""
    from provision.ansiblerun import run_playbook

    root = tmp_path / "root"
    (root / "usr/local/bin").mkdir(parents=True)
    (root / "usr/local/bin/ollama").write_text("#!/bin/sh\n")  # rtx4090 serves Ollama: plans only where it is
    gpu = tmp_path / "gpu.json"
    shutil.copy(SNAPSHOTS / "rtx4090.constructed.json", gpu)
    env = {"GPUPROV_NVML_REPLAY": str(gpu), "GPUPROV_NVML_REPLAY_ROOT": str(root)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        result = run_playbook(
            "local.yml",
            {
                "gpuprov_gpu_action": "apply",
                "gpuprov_gpu_profile": "rtx4090",
                "gpuprov_gpu_root": str(root),
                "gpuprov_gpu_state_dir": str(tmp_path / "state"),
                "gpuprov_gpu_python": sys.executable,
                "gpuprov_gpu_exporter_port": 9100,
            },
        )
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert result.returncode == 0 and not result.failed, result.output[-3000:]
    unit = (root / UNIT_FILE.lstrip("/")).read_text()
    assert f"ExecStart={sys.executable} -m provision exporter --address 127.0.0.1 --port 9100\n" in unit
    assert (root / "etc/systemd/system/multi-user.target.wants" / UNIT).is_symlink()


def test_an_interpreter_in_a_home_directory_is_bound_past_protect_home(tmp_path: Path) -> None:
    """gpuprov run from a virtualenv under /root: the unit binds it read-only (ProtectHome=tmpfs) and still
    scores OK, as the boot unit does."""
    from provision.serving.sandbox import SandboxFacts

    python = "/root/venvs/gpuprov/bin/python"
    facts = SandboxFacts({python: ("/root/venvs/gpuprov", "/usr/lib/python3.11")}, None)
    plan = _plan(
        _profiles(tmp_path, "monitoring: {exporter: {port: 9835}}\n"),
        HostState(known=False, python=python, sandbox=facts),
    )
    unit = next(f.content for f in plan.desired.files if f.path == UNIT_FILE)
    assert "ProtectHome=tmpfs\n" in unit and "BindReadOnlyPaths=/root/venvs/gpuprov\n" in unit
    root = tmp_path / "root"
    root.mkdir()
    unit_analysis.analysis_root(root, {UNIT_FILE: unit})
    assert unit_analysis.verify(root, UNIT_FILE) == ""
    exposure = unit_analysis.security(root, UNIT)
    assert exposure.score <= MAX_EXPOSURE and exposure.verdict == "OK", exposure.table
