"""gpuprov fit against published startup logs (tests/data/fit_logs/, one case per file): weights, KV,
compute/activation, KV capacity and whether the engine started, each within benchmarks/fit_logs.py's
stated TOLERANCE. ``uv run python benchmarks/fit_logs.py`` prints the same comparison as a table."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from provision.fit import memory_model as mm

ROOT = Path(__file__).resolve().parents[2]


def _bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("fit_logs", ROOT / "benchmarks" / "fit_logs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BENCH = _bench()
CASES = BENCH.cases()


def test_the_corpus_has_both_engines_and_every_case_names_its_source() -> None:
    engines = [BENCH.load(p)["engine"] for p in CASES]
    assert engines.count("llama.cpp") >= 6, engines
    assert engines.count("vllm") >= 4, engines
    # the V1 engine (vLLM 0.8.0 on) as well as V0: each sizes its profile run differently
    versions = [BENCH.load(p)["settings"].get("vllm_version") for p in CASES if BENCH.load(p)["engine"] == "vllm"]
    assert sum(1 for v in versions if v and mm.vllm_is_v1(v)) >= 2, versions
    assert sum(1 for v in versions if v and not mm.vllm_is_v1(v)) >= 2, versions
    for path in CASES:
        case = BENCH.load(path)
        assert case["source"].startswith("https://github.com/"), path
        assert case["logged"], path


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_prediction_matches_the_log(path: Path) -> None:
    case = BENCH.load(path)
    out = BENCH.predict(case)
    assert out["rows"], path
    off = {
        name: (logged, predicted)
        for name, (logged, predicted, tolerance) in out["rows"].items()
        if not BENCH.within(logged, predicted, tolerance)
    }
    assert not off, off
    if out["starts"] is not None:
        assert out["fits"] == out["starts"], "the verdict is not what the engine did"
