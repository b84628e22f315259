"""scripts/device/verify --dry-run against a replayed GPU (what the device run will do, known to work before
a GPU is lent), and scripts/device/import of its results."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from provision.snapshot import Snapshot
from tests.conftest import SNAPSHOTS
from tests.unit.test_bench_server import Script, ServerProcess
from tests.unit.test_fit_gguf import ARCHS, write_gguf

ROOT = Path(__file__).resolve().parents[2]
VERIFY = ROOT / "scripts/device/verify"
IMPORT = ROOT / "scripts/device/import"

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # ansible-playbook runs apply --check and the no-op apply


def verify(out: Path, replay: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GPUPROV_NVML_REPLAY": str(replay)}
    return subprocess.run(
        [sys.executable, str(VERIFY), "--dry-run", "--out", str(out), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=480,
        check=False,
        cwd=ROOT,
    )


@pytest.mark.parametrize("snapshot", ["h100.published.json", "rtx4090-laptop.constructed.json"])
def test_dry_run_writes_one_result_per_step_and_changes_no_gpu_setting(snapshot, tmp_path):
    replay = tmp_path / "gpu.json"
    shutil.copy(SNAPSHOTS / snapshot, replay)
    before = replay.read_bytes()
    gguf = write_gguf(tmp_path / "qwen2.gguf", ARCHS["qwen2"])
    out = tmp_path / "out"
    with ServerProcess(Script()) as url:
        proc = verify(out, replay, "--model", str(gguf), "--url", url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{s}.json" for s in ("doctor", "timing", "plan", "stack", "llama", "fit", "bench", "summary")
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dry_run"] and summary["ok"]
    assert summary["steps"]["llama"]["skipped"] == "dry run"
    doctor = json.loads((out / "doctor.json").read_text())
    assert doctor["findings"] == doctor["replayed_findings"]
    assert doctor["snapshot"]["host"]["hostname"] is None, "--redact"
    plan = json.loads((out / "plan.json").read_text())
    if snapshot.startswith("rtx4090-laptop"):  # the laptop profile locks clocks: no apply is run at all
        assert plan["gpu_settings_pending"] and plan["noop_apply"].startswith("not run")
    else:
        assert plan["profile"] == "h100" and plan["gpu_settings_pending"] == [] and plan["noop_apply_rc"] == 0
    stack = json.loads((out / "stack.json").read_text())  # the plan's vLLM set is compat plan's, installed nothing
    assert stack["ok"] and stack["stack_pins"] == stack["compat_pins"] and stack["state"] == "create"
    assert not (tmp_path / "envs").exists()
    assert json.loads((out / "fit.json").read_text())["fit"]
    assert json.loads((out / "bench.json").read_text())["result"]
    assert replay.read_bytes() == before, "the replayed GPU was changed"

    # a dry run records no real machine: import refuses it, in one line
    refused = subprocess.run([sys.executable, str(IMPORT), str(out)], capture_output=True, text=True, check=False)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "dry-run" in refused.stderr

    # the same folder as a GPU run would leave it imports as a recorded snapshot and figures
    summary["dry_run"] = False
    (out / "summary.json").write_text(json.dumps(summary))
    snaps, figures = tmp_path / "snapshots", tmp_path / "figures"
    args = [sys.executable, str(IMPORT), str(out), "--snapshots", str(snaps), "--figures", str(figures)]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    (recorded,) = snaps.glob("*.recorded.json")
    snap = Snapshot.load(recorded)
    assert snap.origin == "recorded" and "scripts/device/verify" in snap.note
    assert all(g.uuid is None for g in snap.gpus)
    (fig,) = figures.glob("device-verify-*.json")
    assert json.loads(fig.read_text())["plan"]["profile"] == plan["profile"]
    again = subprocess.run(args, capture_output=True, text=True, check=False)
    assert again.returncode == 2 and "--force" in again.stderr


def test_dry_run_without_a_replayed_gpu_is_refused(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "GPUPROV_NVML_REPLAY"}
    proc = subprocess.run(
        [sys.executable, str(VERIFY), "--dry-run", "--out", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "GPUPROV_NVML_REPLAY" in proc.stderr and not list(tmp_path.iterdir())
