"""The CLI contract of `gpuprov build llama-cpp`: the dry-run plan (text and JSON) and exit codes 1 and 2,
each a single line on stderr, never a traceback, nothing built."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from provision import llama_build as lb
from provision.llama_build import verify as lb_verify
from tests.conftest import SNAPSHOTS


def snap(name: str) -> str:
    return str(SNAPSHOTS / f"{name}.constructed.json")


def gpuprov(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "COLUMNS": "200"}
    env.pop("GPUPROV_NVML_REPLAY", None)
    return subprocess.run(
        [sys.executable, "-m", "provision", "build", "llama-cpp", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    err = proc.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("gpuprov: error: ")
    return err


def test_dry_run_prints_the_exact_environment_and_command(tmp_path):
    proc = gpuprov("--from", snap("h100"), "--python", sys.executable, tmp_path=tmp_path)  # --from implies --dry-run
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "architectures: sm_90 (detected: sm_90 for GPU 0 NVIDIA H100 80GB HBM3)" in out
    assert "nvcc: /usr/local/cuda/bin/nvcc (CUDA 13.0)" in out
    assert "CMAKE_ARGS: -DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90" in out
    shell = out.strip().splitlines()[-1]
    assert shell.startswith(
        "CMAKE_ARGS='-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90' CUDACXX=/usr/local/cuda/bin/nvcc"
    )
    assert "CMAKE_BUILD_PARALLEL_LEVEL=16 uv pip install --python " + sys.executable in shell
    assert shell.endswith(
        "--no-binary llama-cpp-python --reinstall-package llama-cpp-python --no-cache --verbose llama-cpp-python"
    )
    assert not (tmp_path / "state").exists()  # a dry run writes no log


def test_dry_run_json_is_the_plan(tmp_path):
    proc = gpuprov("--from", snap("rtx4080"), "--arch", "86,89", "--version", "0.2.77", "--json", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)["plan"]
    assert plan["archs"] == ["86", "89"] and plan["arch_reason"] == "--arch"
    assert plan["cmake_args"] == ["-DLLAMA_CUDA=on", "-DCMAKE_CUDA_ARCHITECTURES=86;89"]
    assert plan["cuda_version"] == "12.4.131" and plan["spec"] == "llama-cpp-python==0.2.77"
    assert plan["jobs"] == 12  # 12 cores, 32 GiB: memory allows 12 nvcc jobs
    assert plan["shell"].startswith("CMAKE_ARGS='-DLLAMA_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=86;89' ")


def test_cpu_dry_run_needs_no_toolkit(tmp_path):
    proc = gpuprov("--from", snap("rtx5090"), "--cpu", "--json", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)["plan"]
    assert plan["cpu"] is True and plan["cmake_args"] == ["-DGGML_CUDA=off"] and "CUDACXX" not in plan["env"]


@pytest.mark.parametrize(
    "snapshot, message",
    [
        ("rtx5090", "no CUDA toolkit (nvcc) found"),  # Blackwell, no toolkit installed
        ("a100x2", "no CUDA toolkit (nvcc) found"),
    ],
)
def test_refusals_exit_1(tmp_path, snapshot, message):
    proc = gpuprov("--from", snap(snapshot), tmp_path=tmp_path)
    assert proc.returncode == 1
    assert message in one_line_error(proc)
    assert proc.stdout == ""


def test_nvcc_newer_than_the_driver_exits_1(tmp_path):
    nvcc = tmp_path / "cuda-13.0/bin/nvcc"
    nvcc.parent.mkdir(parents=True)
    nvcc.write_text("#!/bin/sh\necho 'Cuda compilation tools, release 13.0, V13.0.88'\n")
    nvcc.chmod(0o755)
    proc = gpuprov("--from", snap("rtx4080"), "--nvcc", str(nvcc), tmp_path=tmp_path)  # driver: CUDA 12.4
    assert proc.returncode == 1
    assert "newer than the CUDA 12.4 this driver supports" in one_line_error(proc)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--arch", "99"], "--arch '99': not a CUDA architecture"),
        (["--cpu", "--arch", "89"], "--cpu and --arch do not go together"),
        (["--version", "latest"], "--version 'latest' is not a version"),
        (["--source", "/nonexistent/llama.tar.gz"], "--source /nonexistent/llama.tar.gz: no such file"),
        (["--python", "/nonexistent/python"], "--python /nonexistent/python: no such file"),
        (["--nvcc", "/nonexistent/nvcc"], "--nvcc /nonexistent/nvcc: no such executable file"),
        (["--jobs", "0"], None),
    ],
)
def test_bad_usage_exits_2(tmp_path, args, message):
    proc = gpuprov("--from", snap("h100"), *args, tmp_path=tmp_path)
    assert proc.returncode == 2, proc.stderr
    if message is not None:
        assert message in one_line_error(proc)
    assert "Traceback" not in proc.stderr


def test_source_that_is_no_sdist_exits_2(tmp_path):
    wheel = tmp_path / "llama_cpp_python-0.3.36-py3-none-any.whl"
    wheel.write_bytes(b"PK")
    proc = gpuprov("--from", snap("h100"), "--source", str(wheel), tmp_path=tmp_path)
    assert proc.returncode == 2
    assert "neither an sdist" in one_line_error(proc)


def _bad_log_paths(tmp_path: Path) -> list[tuple[Path, str]]:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    return [(tmp_path, "it is a directory"), (a_file / "sub" / "build.log", "is not a directory")]


def test_unwritable_log_exits_2_before_anything_runs(tmp_path):
    """A real build (no --dry-run): the log is checked before the host is probed or uv is started. The
    empty wheelhouse keeps even a broken check from reaching an index."""
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    for log, message in _bad_log_paths(tmp_path):
        proc = gpuprov(
            "--cpu", "--python", sys.executable, "--wheelhouse", str(wheelhouse), "--log", str(log), tmp_path=tmp_path
        )
        assert proc.returncode == 2, proc.stdout + proc.stderr
        err = one_line_error(proc)
        assert f"cannot write the build log {log}: " in err and message in err
        assert proc.stdout == ""


def test_run_build_refuses_an_unwritable_log_with_a_usage_error(tmp_path):
    from provision.errors import UsageError
    from tests.conftest import load_snapshot

    wheelhouse = tmp_path / "wheelhouse"  # offline and empty: even a broken check could not install anything
    wheelhouse.mkdir()
    plan = lb.plan_build(load_snapshot("h100"), python=sys.executable, cpu=True, environ={}, wheelhouse=str(wheelhouse))
    for log, message in _bad_log_paths(tmp_path):
        with pytest.raises(UsageError, match=message):
            lb.run_build(plan, log)


def test_a_real_build_without_any_cxx_compiler_is_refused_before_it_starts(tmp_path):
    wheelhouse = tmp_path / "wheelhouse"  # offline and empty, in case the refusal did not happen
    wheelhouse.mkdir()
    env = {**os.environ, "PATH": str(tmp_path / "empty-bin"), "XDG_STATE_HOME": str(tmp_path / "state")}
    for var in ("CXX", "CUDAHOSTCXX", "GPUPROV_NVML_REPLAY"):
        env.pop(var, None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "provision",
            "build",
            "llama-cpp",
            "--cpu",
            "--python",
            sys.executable,
            "--wheelhouse",
            str(wheelhouse),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "no C++ compiler found" in one_line_error(proc) and "apt install g++" in proc.stderr
    assert not (tmp_path / "state").exists()  # no log: nothing ran


def test_portable_cpu_build_turns_off_the_native_instruction_set(tmp_path):
    args = ("--cpu", "--portable", "--from", snap("h100"), "--python", sys.executable, "--json")
    proc = gpuprov(*args, tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)["plan"]
    assert plan["cmake_args"] == ["-DGGML_CUDA=off", "-DGGML_NATIVE=off"]
    assert "-DGGML_NATIVE=off" in plan["env"]["CMAKE_ARGS"]
    native = json.loads(
        gpuprov("--cpu", "--from", snap("h100"), "--python", sys.executable, "--json", tmp_path=tmp_path).stdout
    )["plan"]
    assert "GGML_NATIVE" not in native["env"]["CMAKE_ARGS"]


def test_a_smoke_completion_killed_by_a_signal_says_so_and_how_to_avoid_it():
    # the crash seen when a VM advertises instructions (AMX) it does not enable: llama.cpp's last log line
    # ("using full-size SWA cache") said nothing of it
    code = "import os, signal, sys; print('llama_kv_cache: a log line', file=sys.stderr); os.kill(os.getpid(), 11)"
    out, err = lb_verify._run_json(sys.executable, code)
    assert out is None
    assert err.startswith("crashed with SIGSEGV") and "--portable" in err and "a log line" in err
