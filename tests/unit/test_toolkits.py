from __future__ import annotations

import json
import os

from provision.toolkits import find_toolkits, parse_nvcc_version

NVCC_124 = """nvcc: NVIDIA (R) Cuda compiler driver
Copyright (c) 2005-2024 NVIDIA Corporation
Built on Thu_Mar_28_02:18:24_PDT_2024
Cuda compilation tools, release 12.4, V12.4.131
Build cuda_12.4.r12.4/compiler.34097967_0
"""
NVCC_118 = """nvcc: NVIDIA (R) Cuda compiler driver
Cuda compilation tools, release 11.8, V11.8.89
Build cuda_11.8.r11.8/compiler.31833905_0
"""


def test_parse_nvcc_version():
    assert parse_nvcc_version(NVCC_124) == "12.4.131"
    assert parse_nvcc_version(NVCC_118) == "11.8.89"
    assert parse_nvcc_version("Cuda compilation tools, release 13.0") == "13.0"
    assert parse_nvcc_version("command not found") is None


def _toolkit(root, name, *, version_json=None, nvcc_output=None):
    bin_dir = root / "usr/local" / name / "bin"
    bin_dir.mkdir(parents=True)
    nvcc = bin_dir / "nvcc"
    out = nvcc_output or "no version"
    nvcc.write_text(f"#!/bin/sh\ncat <<'EOF'\n{out}EOF\n")
    nvcc.chmod(0o755)
    if version_json:
        (root / "usr/local" / name / "version.json").write_text(json.dumps(version_json))
    return nvcc


def test_finds_every_toolkit_and_merges_symlinks(tmp_path):
    _toolkit(
        tmp_path,
        "cuda-12.4",
        version_json={
            "cuda": {"name": "CUDA SDK", "version": "12.4.1"},
            "cuda_nvcc": {"version": "12.4.131"},
        },
    )
    _toolkit(tmp_path, "cuda-11.8", nvcc_output=NVCC_118)
    os.symlink("cuda-12.4", tmp_path / "usr/local/cuda")
    env = {"PATH": "/usr/local/cuda-11.8/bin:/usr/bin", "CUDA_HOME": "/usr/local/cuda"}
    tks = find_toolkits(env, root=tmp_path)
    by_version = {t.version: t for t in tks}
    assert set(by_version) == {"12.4.131", "11.8.89"}
    assert by_version["11.8.89"].found_via == ["PATH", "/usr/local/cuda-11.8"]
    assert by_version["12.4.131"].found_via == ["CUDA_HOME", "/usr/local/cuda", "/usr/local/cuda-12.4"]
    assert by_version["11.8.89"].nvcc == "/usr/local/cuda-11.8/bin/nvcc"


def test_no_toolkit(tmp_path):
    assert find_toolkits({"PATH": "/usr/bin"}, root=tmp_path) == []


def test_non_executable_nvcc_is_ignored(tmp_path):
    nvcc = _toolkit(tmp_path, "cuda-12.1", nvcc_output=NVCC_124)
    nvcc.chmod(0o644)
    assert find_toolkits({}, root=tmp_path) == []
