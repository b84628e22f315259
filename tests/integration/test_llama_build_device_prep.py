"""The device check's inputs, made from the real cached sdist and run through the real CPU build:
the trimmed sdist still configures and stays far below what travels; the tiny GGUF completes."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from provision import llama_build as lb
from provision.llama_build import verify as lb_verify
from tests.integration.llama_cpp_env import LLAMA_CPP_VERSION, sdist

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _prepare():
    spec = importlib.util.spec_from_file_location("llama_build_prepare", BENCHMARKS / "llama_build_prepare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_trimmed_real_sdist_is_small_complete_and_configures(tmp_path):
    cached = sdist()
    trimmed = _prepare().trim_sdist(cached, tmp_path / "out")
    assert trimmed.stat().st_size < 20 * 2**20 < cached.stat().st_size
    with tarfile.open(trimmed) as tf:
        names = tf.getnames()
        tf.extractall(tmp_path / "src", filter="data")
    top = f"llama_cpp_python-{LLAMA_CPP_VERSION}"
    assert not any("/.git/" in n or n.endswith("/.git") for n in names)
    assert not any(n.startswith(f"{top}/vendor/llama.cpp/models/") and n.endswith(".gguf") for n in names)
    assert f"{top}/vendor/llama.cpp/ggml/src/ggml-cuda/CMakeLists.txt" in names
    assert lb.source_version(str(trimmed)) == lb.source_version(str(tmp_path / "src" / top)) == LLAMA_CPP_VERSION
    assert shutil.which("cmake"), "cmake is not installed (scripts/test installs the Debian package)"
    proc = subprocess.run(
        ["cmake", "-S", str(tmp_path / "src" / top), "-B", str(tmp_path / "build"), "-DGGML_CUDA=off"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Configuring done" in proc.stdout


def test_tiny_gguf_completes_with_the_real_cpu_build(tmp_path, llama_cpp_env):
    python = llama_cpp_env.python
    model = _prepare().write_tiny_gguf(tmp_path / "tiny.gguf")
    done, err = lb_verify._run_json(str(python), lb_verify._COMPLETE, str(model), "0")
    assert done is not None, err
    assert done["tokens"] >= 8  # max_tokens=8, and the end token is never the greedy choice
