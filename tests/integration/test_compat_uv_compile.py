"""The vLLM + flashinfer plan for the RTX 4090 Laptop of seed 003 resolves with the real uv against PyPI.

The target host (tests/data/snapshots/rtx4090-laptop.constructed.json) has driver 560.35.03 (CUDA
12.6): CUDA 13 builds (vLLM ≥ 0.20, torch ≥ 2.11 from PyPI) cannot run there, so the plan is vLLM
0.19.1 + torch 2.10.0 (the plain PyPI wheel, CUDA 12.8, which runs on 560 through minor-version
compatibility) + flashinfer-python 0.6.6. Every pin is on PyPI, so no PyTorch index is needed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from provision.compat.plan import plan
from provision.compat.target import target_from_snapshot
from provision.snapshot import Snapshot

pytestmark = [pytest.mark.integration, pytest.mark.network, pytest.mark.slow]

SNAPSHOT = Path(__file__).parent.parent / "data" / "snapshots" / "rtx4090-laptop.constructed.json"


def _uv() -> list[str]:
    if shutil.which("uv"):
        return ["uv"]
    return [sys.executable, "-m", "uv"]


def test_rtx4090_laptop_vllm_flashinfer_plan_resolves(tmp_path: Path) -> None:
    result = plan(target_from_snapshot(Snapshot.load(SNAPSHOT)), "vllm", flashinfer=True)
    assert result.report is not None and result.report.verdict == "ok"
    assert all(p.index is None for p in result.pins), "this plan must be installable from PyPI alone"
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(result.constraints(), encoding="utf-8")
    requirements = tmp_path / "requirements.in"
    requirements.write_text("vllm[flashinfer]\ntorch\nflashinfer-python\n", encoding="utf-8")
    proc = subprocess.run(
        [
            *_uv(),
            "pip",
            "compile",
            str(requirements),
            "-c",
            str(constraints),
            "--python-version",
            "3.12",
            # glibc 2.35 (Ubuntu 22.04, Debian 12 has 2.36): vLLM 0.19.1 ships manylinux_2_31 wheels only,
            # and --only-binary makes the resolution use the wheels a host installs, not sdist metadata
            "--python-platform",
            "x86_64-manylinux_2_35",
            "--only-binary",
            ":all:",
            "--no-header",
            "--quiet",
            "--index-url",
            "https://pypi.org/simple",
        ],
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    resolved = {
        line.split("==")[0]: line.split("==")[1].split()[0]
        for line in proc.stdout.splitlines()
        if "==" in line and not line.startswith(("#", " "))
    }
    for pin in result.pins:
        assert resolved.get(pin.name) == pin.version, (pin, proc.stdout[-2000:])
