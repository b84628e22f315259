"""The CLI contract of gpuprov profiles / plan: JSON shape, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import SNAPSHOTS

LAPTOP = str(SNAPSHOTS / "rtx4090-laptop.constructed.json")


def gpuprov(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "COLUMNS": "200"}
    env.pop("GPUPROV_NVML_REPLAY", None)
    return subprocess.run(
        [sys.executable, "-m", "provision", *args], env=env, capture_output=True, text=True, check=False, timeout=60
    )


def test_profiles_json_says_which_fit(tmp_path: Path) -> None:
    proc = gpuprov("profiles", "--from", LAPTOP, "--json", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    fits = {p["name"]: p["fits_this_host"] for p in data["profiles"]}
    assert fits["rtx4090-laptop"] == "yes" and fits["rtx4090"] == "no"
    assert data["errors"] == []


def test_profiles_lists_a_broken_user_profile_and_exits_1(tmp_path: Path) -> None:
    d = tmp_path / "config/gpuprov/profiles"
    d.mkdir(parents=True)
    (d / "broken.yaml").write_text("gpu: {power_limit_w: lots}\n")
    proc = gpuprov("profiles", "--from", LAPTOP, tmp_path=tmp_path)
    assert proc.returncode == 1
    assert "broken.yaml: key gpu.power_limit_w: expected a power limit in watts, got 'lots'" in proc.stdout


def test_profiles_show_prints_the_resolved_profile(tmp_path: Path) -> None:
    proc = gpuprov("profiles", "show", "h100", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = yaml.safe_load(proc.stdout)
    assert data["gpu"] == {"power_limit_percent": 100.0, "persistence": True}
    assert [Path(p).name for p in data["chain"]] == ["datacenter.yaml", "h100.yaml"]


def test_plan_from_snapshot_json(tmp_path: Path) -> None:
    proc = gpuprov("plan", "rtx4090-laptop", "--from", LAPTOP, "--json", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    settings = {(c["subject"], c["setting"]): c for c in data["changes"]}
    assert settings["gpu0", "locked_clocks_mhz"]["desired"] == [210, 1700]
    assert data["pending"] == 2  # the GPU settings; files of another host are "skip"
    assert any("not supported" in n for n in data["notes"])


def test_plan_table(tmp_path: Path) -> None:
    proc = gpuprov("plan", "rtx4090-laptop", "--from", LAPTOP, tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "210-1700 MHz" in proc.stdout and "2 changes to make" in proc.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("plan", "rtx4090", "--from", LAPTOP), 3, "profile rtx4090 is for NVIDIA GeForce RTX 4090"),
        (("plan", "nosuch", "--from", LAPTOP), 2, "no profile named 'nosuch'"),
        (("plan", "rtx4090", "--from", "/nonexistent.json"), 2, "/nonexistent.json: no such file"),
        (("profiles", "show", "Bad/Name"), 2, "is not a profile name"),
    ],
)
def test_errors_are_one_line_with_an_exit_code(tmp_path: Path, args: tuple, code: int, message: str) -> None:
    proc = gpuprov(*args, tmp_path=tmp_path)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert message in proc.stderr and proc.stderr.count("\n") == 1


def test_plan_from_snapshot_keeps_what_each_row_says(tmp_path: Path) -> None:
    """Another host's files are unknown, but 'takes effect after a reboot' and the suspend units still hold."""
    proc = gpuprov("plan", "rtx4090-laptop", "--from", LAPTOP, "--json", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = {c["subject"]: c for c in json.loads(proc.stdout)["changes"]}
    modprobe = rows["/etc/modprobe.d/gpuprov-nvidia-preserve-vram.conf"]
    assert modprobe["action"] == "skip"
    assert modprobe["note"].startswith("not this host: takes effect after a reboot")
    for unit in ("nvidia-suspend.service", "nvidia-resume.service", "nvidia-hibernate.service"):
        assert rows[unit]["note"] == "not this host: the driver's suspend/resume helper, where installed"
