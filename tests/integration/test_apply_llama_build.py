"""A profile's `llama_cpp:` section through `gpuprov plan` / `gpuprov apply` (the real ansible-playbook):
the same planner as `gpuprov build llama-cpp`, and no rebuild when the environment already holds it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SNAPSHOTS

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.network,
    pytest.mark.skipif(os.geteuid() != 0, reason="apply needs root (the replay's setters, like NVML's)"),
]


def _env(tmp_path: Path, profile: str, snapshot: str = "rtx4080") -> dict[str, str]:
    gpu = tmp_path / "gpu.json"
    shutil.copy(SNAPSHOTS / f"{snapshot}.constructed.json", gpu)
    (tmp_path / "config/gpuprov/profiles").mkdir(parents=True)
    (tmp_path / "config/gpuprov/profiles/lcpp.yaml").write_text(profile)
    env = {
        **os.environ,
        "GPUPROV_NVML_REPLAY": str(gpu),
        "GPUPROV_STATE_DIR": str(tmp_path / "state"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "COLUMNS": "200",
        "GPUPROV_NVML_REPLAY_ROOT": str(tmp_path / "root"),
    }  # the replayed host's /, not an image
    env.pop("GPUPROV_NVML_REPLAY_AS_USER", None)
    return env


def _gpuprov(env, *args):
    return subprocess.run(
        [sys.executable, "-m", "provision", *args], env=env, capture_output=True, text=True, timeout=900
    )


def test_profile_build_section_plans_and_applies_without_rebuilding(llama_cpp_env, tmp_path):
    python = str(llama_cpp_env.python)
    env = _env(tmp_path, f"extends: rtx4080\nllama_cpp:\n  build: true\n  cpu: true\n  python: {python}\n")
    root = tmp_path / "root"
    (root / "usr/local/bin").mkdir(parents=True)
    (root / "usr/local/bin/ollama").write_text("#!/bin/sh\n")  # rtx4080 serves Ollama: it plans only where it is

    plan = _gpuprov(env, "plan", "lcpp", "--root", str(root), "--json")
    assert plan.returncode == 0, plan.stderr
    data = json.loads(plan.stdout)
    build = data["desired"]["llama_cpp"]
    assert build["cpu"] is True and build["python"] == python and "-DGGML_CUDA=off" in build["env"]["CMAKE_ARGS"]
    change = next(c for c in data["changes"] if c["setting"] == "build")
    assert change["action"] == "ok", change  # the session's build was made and recorded by gpuprov build

    applied = _gpuprov(env, "apply", "lcpp", "--root", str(root), "--json")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    items = json.loads(applied.stdout)
    text = json.dumps(items)
    assert "already built as asked" in text, text[-3000:]


def test_profile_asking_for_another_build_would_rebuild_in_check_mode(llama_cpp_env, tmp_path):
    """A CUDA build for the H100 snapshot, where the CPU build is installed: plan says it would rebuild,
    `apply --check` compiles nothing. Where this machine has no nvcc the H100's driver can run, the same
    commands refuse in one line (exit 3) instead."""
    python = str(llama_cpp_env.python)
    env = _env(tmp_path, f"extends: h100\nllama_cpp:\n  build: true\n  python: {python}\n", snapshot="h100")
    root = tmp_path / "root"
    (root / "usr/local/bin").mkdir(parents=True)
    (root / "usr/local/bin/ollama").write_text("#!/bin/sh\n")  # rtx4080 serves Ollama: it plans only where it is
    proc = _gpuprov(env, "plan", "lcpp", "--root", str(root), "--json")
    if proc.returncode == 3:
        assert "nvcc" in proc.stderr or "CUDA toolkit" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    change = next(c for c in plan["changes"] if c["setting"] == "build")
    assert change["action"] == "change" and "a CPU build is installed" in change["current"]
    assert change["desired"] == "CUDA sm_90"
    before = (Path(python).parent.parent / "lib").stat().st_mtime
    check = _gpuprov(env, "apply", "lcpp", "--root", str(root), "--check", "--json")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "would build: a CPU build is installed" in check.stdout
    assert (Path(python).parent.parent / "lib").stat().st_mtime == before
