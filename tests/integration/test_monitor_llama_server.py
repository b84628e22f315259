"""``gpuprov monitor`` against the real llama-cpp-python server the suite builds (a CPU build serving the
Gemma 3 270M GGUF from PyPI): the server side of a sample names the served model, a soak record counts
its reads, and a server that is not there is a reading (down, and why), not a failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_bench_llama_server import MODEL_ALIAS, _free_port, llama_server  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.network]

SNAPSHOT = Path(__file__).resolve().parents[1] / "data/snapshots/rtx4090.constructed.json"


def _gpuprov(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GPUPROV_NVML_REPLAY": str(SNAPSHOT), "GPUPROV_STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.run(
        [sys.executable, "-m", "provision", *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return proc


def test_monitor_reads_the_real_llama_cpp_python_server(llama_server: str, tmp_path: Path) -> None:  # noqa: F811
    dead = f"http://127.0.0.1:{_free_port()}"
    proc = _gpuprov(
        tmp_path,
        "monitor",
        "--once",
        "--json",
        "--no-installed",
        "--server",
        f"llama_cpp_python={llama_server}",
        "--server",
        f"llama_cpp_python={dead}",
        "--server",
        f"llama_cpp={llama_server}",
    )
    sample = json.loads(proc.stdout)
    up, down, auto = sample["servers"]
    assert up == {
        "url": llama_server,
        "engine": "llama_cpp_python",
        "up": True,
        "error": None,
        "models_loaded": [{"model": MODEL_ALIAS}],
    }
    assert down["up"] is False and down["error"].startswith("not answering")
    # what a serving.llama_cpp unit is read with: no /metrics nor /slots there, its /v1/models answers
    assert auto == up | {"engine": "llama_cpp"}
    assert sample["gpus"][0]["name"] == "NVIDIA GeForce RTX 4090"


def test_soak_record_counts_the_server_reads(llama_server: str, tmp_path: Path) -> None:  # noqa: F811
    db = tmp_path / "h.db"
    _gpuprov(
        tmp_path,
        "monitor",
        "--record",
        "--duration",
        "2s",
        "--interval",
        "0.5",
        "--no-installed",
        "--server",
        f"llama_cpp_python={llama_server}",
        "--db",
        str(db),
    )
    report = json.loads(_gpuprov(tmp_path, "monitor", "report", "--json", "--db", str(db)).stdout)
    (server,) = report["servers"]
    assert server["url"] == llama_server and server["failed_reads"] == 0
    assert server["reads"] == report["gpus"][0]["samples"] >= 4
