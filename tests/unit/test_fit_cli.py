"""gpuprov fit as a user runs it: JSON contract, exit codes, GPU sources, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_fit_gguf import ARCHS, write_gguf

SNAPSHOTS = Path(__file__).parent.parent / "data" / "snapshots"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "provision", "fit", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def gguf_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gguf(tmp_path_factory.mktemp("cli") / "qwen2.gguf", ARCHS["qwen2"])


def test_json_has_the_contract_fields_for_every_engine(gguf_path: Path) -> None:
    out = run(str(gguf_path), "--vram-gib", "8", "--json")
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    assert set(payload["engines"]) == {"llama.cpp", "ollama", "vllm"}
    for engine, stack in payload["engines"].items():
        model = stack["models"][0]
        for key in ("weights_bytes", "kv_bytes_per_token", "overhead_bytes", "fits", "flags"):
            assert key in model, (engine, key)
        assert model["fits"] is True
    assert "--n-gpu-layers" in payload["engines"]["llama.cpp"]["models"][0]["flags"]["args"]
    assert payload["engines"]["ollama"]["models"][0]["flags"]["env"]["OLLAMA_NUM_PARALLEL"] == "1"
    assert "--gpu-memory-utilization" in payload["engines"]["vllm"]["models"][0]["flags"]["args"]


def test_from_a_snapshot_and_by_gpu_name(gguf_path: Path) -> None:
    out = run(str(gguf_path), "--from", str(SNAPSHOTS / "rtx4090.constructed.json"), "--engine", "llama.cpp", "--json")
    assert out.returncode == 0, out.stderr
    gpus = json.loads(out.stdout)["gpus"]
    assert gpus[0]["name"] == "NVIDIA GeForce RTX 4090" and gpus[0]["free_bytes"] == 23912 * 1024 * 1024
    out = run(str(gguf_path), "--gpu", "RTX 4090 Laptop", "--engine", "ollama", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["gpus"][0]["total_bytes"] == 16384 * 1024 * 1024


def test_does_not_fit_exits_1(gguf_path: Path) -> None:
    out = run(str(gguf_path), "--vram-gib", "0.01", "--engine", "llama.cpp")
    assert out.returncode == 1
    assert "does not fit" in out.stdout


def test_people_output_has_the_split_and_the_command(gguf_path: Path) -> None:
    out = run(str(gguf_path), "--vram-gib", "12,24", "--engine", "llama.cpp", "--context", "2048", "--parallel", "2")
    assert out.returncode == 0, out.stderr
    assert "llama-server" in out.stdout and "--ctx-size 4096" in out.stdout and "--tensor-split" in out.stdout


def test_several_models_together(gguf_path: Path, tmp_path: Path) -> None:
    other = write_gguf(tmp_path / "llama.gguf", ARCHS["llama"])
    out = run(str(gguf_path), str(other), "--vram-gib", "4", "--engine", "ollama", "--json")
    assert out.returncode == 0, out.stderr
    stack = json.loads(out.stdout)["engines"]["ollama"]
    assert len(stack["models"]) == 2 and stack["fits"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--vram-gib", "-3"], "--vram-gib"),
        (["--vram-gib", "lots"], "--vram-gib"),
        (["--vram-gib", "8", "--gpu", "RTX 4090"], "one way"),
        (["--gpu", "Voodoo 5 6000"], "unknown GPU"),
        (["--vram-gib", "8", "--engine", "tgi"], "unknown engine"),
        (["--vram-gib", "8", "--kv-type", "q3_k"], "KV cache type"),
        (["--vram-gib", "8", "--engine", "vllm", "--kv-type", "q8_0"], "no KV cache type"),
        (["--vram-gib", "8", "--quant", "Q4_K_M"], "--quant"),
        (["--from", "/nonexistent/snap.json"], "no such file"),
        (["--vram-gib", "8", "--vllm-version", "banana"], "not a version"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(gguf_path: Path, args: list[str], message: str) -> None:
    out = run(str(gguf_path), *args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_missing_model_file() -> None:
    out = run("/nonexistent/model.gguf", "--vram-gib", "8")
    assert out.returncode == 2 and "no such file" in out.stderr


def test_reserve_is_reported_apart_from_overhead(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from provision.fit import FitRequest, fit_model, gpus_from_vram
    from tests.unit.test_fit_gguf import ARCHS, write_gguf

    path = tmp_path / "m.gguf"
    write_gguf(path, ARCHS["llama"])
    from provision.fit import read_model

    spec = read_model(path)
    plain = fit_model(spec, gpus_from_vram([8, 8]), FitRequest(engine="llama.cpp"))
    kept = fit_model(spec, gpus_from_vram([8, 8]), FitRequest(engine="llama.cpp", reserve_mib=1024))
    assert kept.overhead_bytes == plain.overhead_bytes
    assert kept.reserve_bytes == 2 * 1024 * 2**20 and plain.reserve_bytes == 0
    assert kept.to_dict()["reserve_bytes"] == kept.reserve_bytes


def test_context_beyond_any_engine_is_bad_usage(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from provision.errors import UsageError
    from provision.fit import FitRequest, fit_model, gpus_from_vram, read_model
    from tests.unit.test_fit_gguf import ARCHS, write_gguf

    path = tmp_path / "m.gguf"
    write_gguf(path, ARCHS["llama"])
    with pytest.raises(UsageError, match="more than any engine takes"):
        fit_model(read_model(path), gpus_from_vram([8]), FitRequest(context=99_999_999_999))


def test_swa_full_sizes_sliding_window_layers_in_full(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from provision.fit import FitRequest, fit_model, gpus_from_vram, read_model
    from tests.unit.test_fit_gguf import ARCHS, write_gguf

    path = tmp_path / "g.gguf"
    write_gguf(path, ARCHS["gemma3"])
    spec = read_model(path)
    assert any(layer.sliding_window for layer in spec.layers)
    window = fit_model(spec, gpus_from_vram([8]), FitRequest(context=16384))
    full = fit_model(spec, gpus_from_vram([8]), FitRequest(context=16384, swa_full=True))
    assert full.kv_bytes > window.kv_bytes
    assert "--swa-full" in full.to_dict()["flags"]["args"] and "--swa-full" not in window.to_dict()["flags"]["args"]


LLAMA31_8B = {
    "model_type": "llama",
    "num_hidden_layers": 32,
    "hidden_size": 4096,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "intermediate_size": 14336,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "torch_dtype": "bfloat16",
}


def test_vllm_verdict_and_log_lines_follow_the_release(tmp_path: Path) -> None:
    """Llama 3.1 8B on an RTX 3090 at --max-model-len 29000 (vllm#10517): vLLM 0.6.4 (V0) profiles the
    whole 29000-token prompt and refuses to start (KV cache of 23648 tokens); a V1 release profiles
    2048 tokens and starts. The user sees the lines vLLM will log."""
    model = tmp_path / "llama31"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(LLAMA31_8B))
    common = [str(model), "--engine", "vllm", "--vram-gib", "23.58", "--context", "29000"]
    common += ["--gpu-memory-utilization", "0.9"]
    old = run(*common, "--vllm-version", "0.6.4", "--json")
    assert old.returncode == 1, old.stderr
    fit = json.loads(old.stdout)["engines"]["vllm"]["models"][0]
    assert fit["verdict"] == "does_not_fit"
    assert 20000 < fit["kv_capacity_tokens"] < 29000 and fit["max_concurrency"] < 1
    assert any("refuses to start" in note for note in fit["notes"])
    new = run(*common, "--json")
    assert new.returncode == 0, new.stderr
    fit = json.loads(new.stdout)["engines"]["vllm"]["models"][0]
    assert fit["verdict"] == "fits" and fit["kv_capacity_tokens"] >= 29000
    people = run(*common, "--vllm-version", "0.6.4")
    tokens = json.loads(old.stdout)["engines"]["vllm"]["models"][0]["kv_capacity_tokens"]
    assert "vLLM 0.6.4 (V0)" in people.stdout
    assert f"GPU KV cache size: {tokens:,} tokens" in people.stdout
    assert "maximum concurrency for 29,000 tokens per request: 0.78x" in people.stdout
