"""A real llama-cpp-python build through `gpuprov build llama-cpp`, verified, with one real completion."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.network]


def test_cpu_build_is_made_and_verified_by_gpuprov(llama_cpp_env):
    report = llama_cpp_env.report
    assert report["ok"] is True
    plan = report["plan"]
    assert plan["cpu"] is True and plan["archs"] == []
    assert "-DGGML_CUDA=off" in plan["env"]["CMAKE_ARGS"]
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["installed"]["ok"]
    assert checks["no CUDA linkage (CPU build)"]["ok"]
    assert checks["llama_supports_gpu_offload()"]["ok"]
    assert checks["llama_supports_gpu_offload()"]["detail"].startswith("False")
    completion = checks["one completion"]
    assert completion["ok"], completion
    assert report["result"]["duration_s"] > 0


def test_doctor_sees_the_cpu_build(llama_cpp_env):
    import json

    out = subprocess.run(
        [sys.executable, "-m", "provision", "doctor", "--json", "--python", str(llama_cpp_env.python)],
        capture_output=True,
        text=True,
    )
    py = json.loads(out.stdout)["snapshot"]["python"]
    assert py["packages"]["llama-cpp-python"]["version"] == "0.3.36"
    assert py["llama_cpp_cuda"] is False


def test_a_failed_build_names_the_step_and_the_error(tmp_path):
    """A CUDA build with a bogus nvcc fails at configure; gpuprov says so in a few lines, not the whole log."""
    bogus = tmp_path / "cuda/bin/nvcc"
    bogus.parent.mkdir(parents=True)
    bogus.write_text("#!/bin/sh\necho 'nvcc fatal   : this is not a compiler' >&2\nexit 1\n")
    bogus.chmod(0o755)
    (tmp_path / "cuda/version.json").write_text('{"cuda_nvcc": {"version": "12.4.131"}}')
    from tests.integration.llama_cpp_env import sdist, uv

    venv = tmp_path / "venv"
    subprocess.run([uv(), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "provision",
            "build",
            "llama-cpp",
            "--arch",
            "89",
            "--nvcc",
            str(bogus),
            "--source",
            str(sdist()),
            "--python",
            str(venv / "bin/python"),
            "--log",
            str(tmp_path / "b.log"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "CUDA_HOME": str(tmp_path / "cuda")},
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    out = proc.stdout
    assert "build failed at configure (cmake)" in out, out
    assert "full log: " in out
    assert len(out.splitlines()) < 30
