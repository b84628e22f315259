"""What gpuprov says about each reading written from published values (tests/data/readings/): doctor's
findings, the built-in profiles that match, their plans (incl. the locked-clock fallback on laptops),
compat check and fit. One row per reading: a change in any answer shows here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATA, SNAPSHOTS
from tests.unit.test_fit_gguf import ARCHS, write_gguf

READINGS = DATA / "readings"
LAPTOP_FALLBACK = "GPU clocks locked to 210-1700 MHz"

# reading → (doctor's non-ok finding ids, matching built-in profiles, {profile: pending GPU changes},
#            laptop fallback reason or None)
TABLE = {
    "rtx4090-535.qx.xml": ([], ["rtx4090"], {"rtx4090": 1}, None),
    "rtx4090x8-550.q.txt": ([], ["rtx4090"], {"rtx4090": 8}, None),
    "rtx4080super-595.q.txt": (["gpu.persistence_off"], [], {}, None),
    "rtx4070laptop-566.q.txt": ([], [], {}, "the driver refuses power-limit changes"),
    "rtx3060laptop-515.qx.xml": (["gpu.persistence_off"], [], {}, "NVML reports no power-limit range"),
    "h100-590.q.txt": ([], ["datacenter", "h100"], {"datacenter": 0, "h100": 0}, None),
    "h100mig-590.q.txt": (["gpu.mig_enabled"], ["datacenter", "h100"], {"datacenter": 0, "h100": 0}, None),
    "h100-580-device.q.txt": ([], ["datacenter", "h100"], {"datacenter": 0, "h100": 0}, None),
    "a100mig-510.qx.xml": (["gpu.mig_enabled", "gpu.persistence_off"], ["datacenter"], {"datacenter": 1}, None),
    "a100-535.qx.xml": (["gpu.mig_enabled", "gpu.persistence_off"], ["datacenter"], {"datacenter": 1}, None),
    "l40s-595.q.txt": (["gpu.persistence_off"], [], {}, None),
    "l4-550.q.txt": ([], [], {}, None),
    "rtx3090-525.qx.xml": (["gpu.power_limit_lowered"], [], {}, None),
    "rtx3090-590.qx.xml": ([], [], {}, None),
    "rtx2080x2-590.qx.xml": ([], [], {}, None),
}


def gpuprov(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "COLUMNS": "200"}
    env.pop("GPUPROV_NVML_REPLAY", None)
    return subprocess.run(
        [sys.executable, "-m", "provision", *args], env=env, capture_output=True, text=True, check=False, timeout=60
    )


#: readings whose driver no vLLM release gpuprov knows runs on: the laptop profile's stack is refused (exit 3)
STACK_REFUSED = {"rtx3060laptop-515.qx.xml", "rtx3060-laptop.published.json"}


def plan_laptop(path: str, name: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """`plan rtx4090-laptop --force --from path`; where the reading's driver is too old for the profile's vLLM
    stack, that refusal is checked and the GPU part is planned with the stack left out (a child: stack: null)."""
    plan = gpuprov("plan", "rtx4090-laptop", "--force", "--from", path, "--json", tmp_path=tmp_path)
    if name not in STACK_REFUSED:
        return plan
    assert plan.returncode == 3 and "upgrade the driver" in plan.stderr and plan.stderr.count("\n") == 1, plan.stderr
    profiles = tmp_path / "config/gpuprov/profiles"
    profiles.mkdir(parents=True, exist_ok=True)
    (profiles / "laptop-no-stack.yaml").write_text("extends: rtx4090-laptop\nstack: null\n")
    return gpuprov("plan", "laptop-no-stack", "--force", "--from", path, "--json", tmp_path=tmp_path)


@pytest.fixture(scope="module")
def gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gguf(tmp_path_factory.mktemp("fit") / "qwen2.gguf", ARCHS["qwen2"])


def test_table_covers_every_reading():
    assert set(TABLE) == {p.name for p in READINGS.iterdir() if p.suffix in (".txt", ".xml")}


@pytest.mark.parametrize("name", sorted(TABLE))
def test_findings_profiles_plans_compat_fit(name, tmp_path, gguf):
    findings, profiles, plans, fallback = TABLE[name]
    path = str(READINGS / name)
    doctor = gpuprov("doctor", "--from", path, "--json", tmp_path=tmp_path)
    assert doctor.returncode == 0, doctor.stderr
    out = json.loads(doctor.stdout)
    assert sorted(f["id"] for f in out["findings"] if f["severity"] != "ok") == findings
    fits = json.loads(gpuprov("profiles", "--from", path, "--json", tmp_path=tmp_path).stdout)
    assert [p["name"] for p in fits["profiles"] if p["fits_this_host"] == "yes" and p["builtin"]] == profiles
    for profile, pending in plans.items():
        plan = gpuprov("plan", profile, "--from", path, "--json", tmp_path=tmp_path)
        assert plan.returncode == 0, plan.stderr
        changes = json.loads(plan.stdout)["changes"]
        gpu_changes = [
            c for c in changes if c.get("setting") in ("power_limit_w", "persistence_mode") and c["action"] != "ok"
        ]
        assert len(gpu_changes) == pending, changes
    if fallback is not None:  # the laptop profile on this laptop: the clock lock instead of the power limit
        plan = plan_laptop(path, name, tmp_path)
        assert plan.returncode == 0, plan.stderr
        notes = json.loads(plan.stdout)["notes"]
        assert any(fallback in n and LAPTOP_FALLBACK in n for n in notes), notes
    # no Python stack in a reading: compat has nothing to check (exit 3), never an error
    compat = gpuprov("compat", "check", "--from", path, tmp_path=tmp_path)
    assert compat.returncode == 3 and "nothing to check" in compat.stdout
    fit = gpuprov("fit", str(gguf), "--from", path, "--engine", "llama.cpp", "--json", tmp_path=tmp_path)
    assert fit.returncode == 0, fit.stderr


@pytest.mark.parametrize(
    "snapshot", ["rtx4090-laptop.constructed.json", "rtx4070-laptop.published.json", "rtx3060-laptop.published.json"]
)
def test_laptop_profile_falls_back_to_locked_clocks_on_constructed_and_published_laptops(snapshot, tmp_path):
    if "published" in snapshot:
        plan = plan_laptop(str(SNAPSHOTS / snapshot), snapshot, tmp_path)
    else:
        plan = gpuprov("plan", "rtx4090-laptop", "--from", str(SNAPSHOTS / snapshot), "--json", tmp_path=tmp_path)
    assert plan.returncode == 0, plan.stderr
    data = json.loads(plan.stdout)
    assert any(LAPTOP_FALLBACK in n for n in data["notes"])
    assert not any(c.get("setting") == "power_limit_w" and c["action"] != "ok" for c in data["changes"])
