"""gpuprov fit against published startup logs: tests/data/fit_logs/*.toml, one case per file.

Each case is a model's architecture (its config.json numbers, as the log prints them), the engine's
settings, the numbers the engine logged, and where the log was published. :func:`predict` rebuilds the
model from the architecture (a Hugging Face config in a temporary directory, weights from the parameter
count at the case's quantization), runs ``fit_model`` with the case's settings and returns predicted and
logged numbers side by side. ``tests/unit/test_fit_logs.py`` checks every case within :data:`TOLERANCE`;

    uv run python benchmarks/fit_logs.py

prints the table (logged, predicted, error %).
"""

from __future__ import annotations

import json
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "tests" / "data" / "fit_logs"
MIB = 1024 * 1024
GIB = 1024 * MIB

#: the stated tolerances, as fractions of the logged value (or absolute where said)
TOLERANCE = {
    # llama.cpp: KV cells are exact sizes; 1 % covers older builds' 32-cell padding
    "kv": 0.01,
    # llama.cpp: the compute buffer (graph allocator peak)
    "compute": 0.03,
    # weights from a bare parameter count at the quantization's average bits (K-quant mixes vary)
    "weights_estimated": 0.10,
    # weights of an unquantized model: the parameter count is exact
    "weights_exact": 0.02,
    # vLLM: the profile's activation peak, absolute (GiB); a case may widen it, with its reason
    "activation_gib": 0.5,
    # vLLM: tokens the KV cache holds, and the KV memory
    "kv_capacity": 0.10,
}


def cases() -> list[Path]:
    return sorted(CASES.glob("*.toml"))


def load(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text())


def _config(model: dict[str, Any]) -> dict[str, Any]:
    return {
        "model_type": model["architecture"],
        "num_hidden_layers": model["n_layer"],
        "hidden_size": model["n_embd"],
        "num_attention_heads": model["n_head"],
        "num_key_value_heads": model["n_head_kv"],
        "head_dim": model["head_dim"],
        "intermediate_size": model["n_ff"],
        "vocab_size": model["n_vocab"],
        "max_position_embeddings": model["context_length"],
        "tie_word_embeddings": model.get("tie_word_embeddings", False),
        "torch_dtype": model.get("dtype", "bfloat16"),
    }


def model_spec(case: dict[str, Any]):  # type: ignore[no-untyped-def]
    from provision.fit.hf_dir import read_hf_dir

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps(_config(case["model"])))
        return read_hf_dir(tmp, quantization=case["model"].get("quantization"))


def predict(case: dict[str, Any]) -> dict[str, Any]:
    """Logged and predicted numbers of one case (bytes, tokens), and which of them to compare."""
    from provision.fit import FitRequest, GpuBudget, fit_model

    spec = model_spec(case)
    st, logged = case["settings"], case["logged"]
    if case["engine"] == "llama.cpp":
        request = FitRequest(
            engine="llama.cpp",
            context=st["context"],
            parallel=st.get("parallel", 1),
            n_ubatch=st.get("n_ubatch", 512),
            flash_attention=st["flash_attention"],
            kv_type=st.get("kv_type", "f16"),
            kv_unified=st.get("kv_unified", False),
        )
        # a GPU large enough for everything: the log's run had every layer on one device
        result = fit_model(spec, [GpuBudget(0, case.get("device", "GPU"), 1 << 40)], request)
        share = result.gpus[0]
        rows = {
            "kv": (logged["kv_mib"] * MIB, result.kv_bytes, TOLERANCE["kv"]),
            "compute": (logged["compute_mib"] * MIB, share.compute_bytes, TOLERANCE["compute"]),
        }
        if "gpu_weights_mib" in logged:
            tol = TOLERANCE["weights_exact" if spec.weights_exact else "weights_estimated"]
            rows["weights"] = (logged["gpu_weights_mib"] * MIB, share.weights_bytes, tol)
        return {"rows": rows, "starts": None, "fits": result.fits}
    request = FitRequest(
        engine="vllm",
        context=st["max_model_len"],
        parallel=1,
        gpu_memory_utilization=st["gpu_memory_utilization"],
        vllm_version=st.get("vllm_version"),
    )
    total = int(st["total_gib"] * GIB)
    gpus = [GpuBudget(i, "GPU", total) for i in range(st.get("tensor_parallel_size", 1))]
    result = fit_model(spec, gpus, request)
    tp = result.tensor_parallel_size or 1
    quantized = spec.quantization not in (None, "BF16", "F16", "F32")
    rows = {
        "weights": (
            logged["weights_gib"] * GIB,
            result.gpu_weights_bytes // tp,
            TOLERANCE["weights_estimated" if quantized else "weights_exact"],
        ),
        "activation": (
            logged["activation_gib"] * GIB,
            result.compute_bytes // tp,
            ("abs", logged.get("activation_tolerance_gib", TOLERANCE["activation_gib"]) * GIB),
        ),
    }
    per_token_rank = -(-result.kv_bytes_per_token // tp)
    if "kv_cache_gib" in logged:
        rows["kv_cache"] = (
            logged["kv_cache_gib"] * GIB,
            (result.kv_capacity_tokens or 0) * per_token_rank,
            TOLERANCE["kv_capacity"],
        )
    if "kv_capacity_tokens" in logged:
        rows["kv_tokens"] = (logged["kv_capacity_tokens"], result.kv_capacity_tokens, TOLERANCE["kv_capacity"])
    if "max_concurrency" in logged:
        rows["concurrency"] = (logged["max_concurrency"], result.max_concurrency, TOLERANCE["kv_capacity"])
    return {"rows": rows, "starts": logged.get("starts"), "fits": result.fits}


def within(logged: float, predicted: float, tolerance: float | tuple[str, float]) -> bool:
    if isinstance(tolerance, tuple):
        return abs(predicted - logged) <= tolerance[1]
    return abs(predicted - logged) <= tolerance * abs(logged)


def _show(name: str, value: float) -> str:
    if name in ("kv_tokens",):
        return f"{int(value):,}"
    if name == "concurrency":
        return f"{value:.2f}x"
    return f"{value / MIB:,.2f} MiB"


def main() -> int:
    bad = 0
    print(f"{'case':58} {'what':12} {'logged':>14} {'predicted':>14} {'error':>8}")
    for path in cases():
        case = load(path)
        out = predict(case)
        for name, (logged, predicted, tol) in out["rows"].items():
            err = (predicted - logged) / logged * 100 if logged else float("nan")
            ok = within(logged, predicted, tol)
            bad += not ok
            print(
                f"{path.stem:58} {name:12} {_show(name, logged):>14} {_show(name, predicted):>14} "
                f"{err:+7.1f}%{'' if ok else '  OUT'}"
            )
        if out["starts"] is not None:
            agree = out["starts"] == out["fits"]
            bad += not agree
            mark = "" if agree else "  OUT"
            print(f"{path.stem:58} {'starts':12} {out['starts']!s:>14} {out['fits']!s:>14}{mark}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
