"""scripts/wheelhouse's second mode (issue 16): an engine's planned set (or any requirements) resolved with
uv pip compile for the hosts' Python and platform, exactly those wheels downloaded, and an install from the
folder that works with no index, no cache and uv offline. The download test uses a small set (requests and
its four dependencies, one of them a manylinux wheel); the vLLM set, GBs, is resolved only (--resolve-only).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name, parse_wheel_filename

from tests.integration.test_compat_uv_compile import _uv
from tests.integration.test_stack_resolution import CASES, assert_plan_resolved, compat_plan, compiled_set

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "wheelhouse"
ENV = {**os.environ, "PYTHON": sys.executable}
THIS_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def wheelhouse(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=ENV, timeout=timeout)


@pytest.mark.integration
@pytest.mark.network
@pytest.mark.slow
def test_a_small_set_downloads_and_installs_offline(tmp_path: Path) -> None:
    """CI cost: one resolution and five small wheels (~1 MB), a venv, an offline install: ~5 s."""
    (tmp_path / "small.in").write_text("requests\n", encoding="utf-8")
    (tmp_path / "small.txt").write_text("urllib3<2.3\n", encoding="utf-8")
    out = tmp_path / "wheels"
    # no --platform: this machine's glibc, newer than the manylinux_2_28 of charset-normalizer's wheel, so the
    # download must take every older manylinux tag too (pip matches only the tags it is given)
    proc = wheelhouse(
        "--requirements",
        str(tmp_path / "small.in"),
        "--constraints",
        str(tmp_path / "small.txt"),
        "--python-version",
        THIS_PYTHON,
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    compiled = {name: versions[0][0] for name, versions in compiled_set((out / "requirements.txt").read_text()).items()}
    assert set(compiled) == {"requests", "urllib3", "idna", "certifi", "charset-normalizer"}, compiled
    assert compiled["urllib3"].startswith("2.2."), compiled  # the constraint held
    wheels = {canonicalize_name(w.name.split("-")[0]): str(parse_wheel_filename(w.name)[1]) for w in out.glob("*.whl")}
    assert wheels == compiled, "exactly the compiled set, one wheel each"
    assert any("manylinux" in w.name for w in out.glob("*.whl"))

    venv = tmp_path / "venv"
    subprocess.run([*_uv(), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    offline = {**os.environ, "UV_CACHE_DIR": str(tmp_path / "empty-cache"), "UV_OFFLINE": "1"}
    install = subprocess.run(
        [
            *_uv(),
            "pip",
            "install",
            "--python",
            str(venv / "bin/python"),
            "--no-index",
            "--find-links",
            str(out),
            "-r",
            str(out / "requirements.txt"),
        ],
        capture_output=True,
        text=True,
        env=offline,
    )
    assert install.returncode == 0, install.stderr
    freeze = subprocess.run(
        [*_uv(), "pip", "freeze", "--python", str(venv / "bin/python")], capture_output=True, text=True, check=True
    ).stdout
    assert dict(line.split("==") for line in freeze.split()) == compiled
    ok = subprocess.run([str(venv / "bin/python"), "-c", "import requests, charset_normalizer"], capture_output=True)
    assert ok.returncode == 0, ok.stderr


@pytest.mark.integration
@pytest.mark.network
@pytest.mark.slow
def test_the_engine_set_resolves_without_downloading(tmp_path: Path) -> None:
    """--engine vllm for the RTX 4090 Laptop on 570 (the first case of test_stack_resolution): DIR gets the
    plan, its inputs and the compiled set holding every pin (one torch), and no wheel. CI cost: ~15 s."""
    args = CASES["rtx4090-laptop-570"]
    out = tmp_path / "vllm"
    proc = wheelhouse(
        "--engine",
        "vllm",
        *args,
        "--python-version",
        "3.12",
        "--platform",
        "x86_64-manylinux_2_35",
        "--resolve-only",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan, constraints = compat_plan(args)
    assert json.loads((out / "plan.json").read_text()) == plan
    assert (out / "constraints.txt").read_text() == constraints
    assert (out / "requirements.in").read_text().split() == plan["install"]
    assert_plan_resolved(plan, compiled_set((out / "requirements.txt").read_text()))
    assert not list(out.glob("*.whl"))


@pytest.mark.integration
@pytest.mark.parametrize(
    ("args", "rc", "message"),
    [
        (["--engine", "vllm", "--cc", "6.1"], 1, "no vllm release in the matrix supports compute capability 6.1"),
        (["--engine", "ollama", "--cc", "8.9"], 1, "the ollama plan installs no Python package"),
        (["--engine", "nosuch", "--cc", "8.9"], 2, "nosuch"),
        (["--engine", "vllm", "--platform", "win_amd64"], 2, "--platform win_amd64: give ARCH-manylinux_2_N"),
        (["--engine", "vllm", "--python-version", "3"], 2, "--python-version 3: give X.Y"),
        (["--engine", "vllm", "--requirements", "r.in"], 2, "give one of --engine ENGINE and --requirements FILE"),
        (["--requirements", "no-such.in"], 2, "no-such.in: no such file"),
        (["--engine", "vllm", "--bogus"], 2, "unknown argument '--bogus'"),
        (["--engine"], 2, "--engine needs a value"),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_folder(tmp_path: Path, args: list[str], rc: int, message: str) -> None:
    out = tmp_path / "out"
    proc = wheelhouse(*args, *(["--out", str(out)] if args != ["--engine"] else []), timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == rc and len(lines) == 1 and message in lines[0], (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert not out.exists()
