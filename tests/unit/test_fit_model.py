"""The memory model and the fit: KV cache formula, llama.cpp's cell counts and layer placement,
--tensor-split exactness, vLLM utilization, multi-model stacks, and user input never a traceback."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provision.errors import GpuprovError, UsageError
from provision.fit import FitRequest, GpuBudget, fit_model, fit_stack, gpus_from_vram, parse_vram_gib, read_model
from provision.fit import memory_model as mm
from provision.fit.kv import kv_bytes_per_token
from provision.fit.layers import llama_cpp_output_extra
from provision.fit.tensor_parallel import vllm_kv_bytes
from tests.unit.test_fit_gguf import ARCHS, Arch, write_gguf

GIB = 1024**3
Q = gguf.GGMLQuantizationType


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("fit-models")
    return {name: write_gguf(base / f"{name}.gguf", arch) for name, arch in ARCHS.items()}


# -- KV cache ---------------------------------------------------------------------------------------


def test_kv_bytes_per_token_is_two_times_layers_heads_dim_bytes(models: dict[str, Path]) -> None:
    arch = ARCHS["llama"]
    spec = read_model(models["llama"])
    head_dim = arch.n_embd // arch.n_head
    assert kv_bytes_per_token(spec, "f16") == 2 * arch.n_layer * arch.n_head_kv * head_dim * 2
    # q8_0: 34 bytes per 32 values; q4_0: 18 per 32 (ggml blocks)
    assert kv_bytes_per_token(spec, "q8_0") == 2 * arch.n_layer * (arch.n_head_kv * head_dim // 32) * 34
    assert kv_bytes_per_token(spec, "q4_0") == 2 * arch.n_layer * (arch.n_head_kv * head_dim // 32) * 18
    assert kv_bytes_per_token(spec, "fp8") == 2 * arch.n_layer * arch.n_head_kv * head_dim


def test_llama_cpp_pads_the_context_per_slot() -> None:
    # --ctx-size is the total; each of --parallel slots gets pad(ctx/parallel, 256) cells
    assert mm.llama_cpp_kv_cells(4096, 1, sliding_window=None) == 4096
    assert mm.llama_cpp_kv_cells(1000, 1, sliding_window=None) == 1024
    assert mm.llama_cpp_kv_cells(1000, 4, sliding_window=None) == 4 * 1024


def test_sliding_window_layers_keep_window_plus_ubatch() -> None:
    # llama-kv-cache-iswa.cpp: pad(min(size, n_swa + n_ubatch), 256) per stream
    assert mm.llama_cpp_kv_cells(32768, 1, sliding_window=512) == 1024
    assert mm.llama_cpp_kv_cells(32768, 2, sliding_window=512) == 2048
    assert mm.llama_cpp_kv_cells(300, 1, sliding_window=512) == 512


def test_gemma3_kv_is_mostly_window(models: dict[str, Path]) -> None:
    spec = read_model(models["gemma3"])
    result = fit_model(spec, gpus_from_vram([24]), FitRequest(context=32768))
    per_token = kv_bytes_per_token(spec, "f16") // spec.n_layer
    # 6 sliding layers at 1024 cells, 1 global at 32768
    assert result.kv_bytes == per_token * (6 * 1024 + 32768)
    assert result.kv_bytes_per_token == per_token * spec.n_layer


def test_vllm_kv_is_whole_blocks_per_sequence(models: dict[str, Path]) -> None:
    spec = read_model(models["llama"])
    row = kv_bytes_per_token(spec, "auto")
    assert vllm_kv_bytes(spec, "auto", 1000, 3) == row * 1008 * 3  # 63 blocks of 16


# -- placement (llama.cpp) ------------------------------------------------------------------------------


def _llama_cpp_assignment(split: list[int], n_gpu_layers: int, n_layer: int) -> list[int | None]:
    """What llama.cpp does with --tensor-split and --n-gpu-layers (llama-model.cpp load_tensors):
    cumulative float proportions, ``upper_bound(splits, float(il - i_gpu_start) / act_gpu_layers)``.
    Returns the GPU of each layer and of the output layer (None: CPU)."""
    splits = np.cumsum(np.array(split, dtype=np.float32), dtype=np.float32)
    splits = (splits / splits[-1]).astype(np.float32)
    i_gpu_start = max(n_layer - n_gpu_layers, 0)
    act = min(n_gpu_layers, n_layer + 1)
    out: list[int | None] = []
    for il in range(n_layer + 1):
        if il < i_gpu_start or il - i_gpu_start >= act:
            out.append(None)
            continue
        ratio = np.float32(il - i_gpu_start) / np.float32(act)
        out.append(int(np.searchsorted(splits, ratio, side="right")))
    return out


def _plan_assignment(result) -> list[int | None]:  # type: ignore[no-untyped-def]
    where: list[int | None] = [None] * (result.model.n_layer + 1)
    for g, share in enumerate(result.gpus):
        for il in share.layers:
            where[il] = g
        if share.holds_output:
            where[-1] = g
    return where


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.floats(min_value=0.03, max_value=1.0), min_size=2, max_size=4),
    context=st.sampled_from([256, 1024, 4096]),
)
def test_tensor_split_reproduces_the_plan_in_llama_cpp(sizes: list[float], context: int) -> None:
    arch = Arch("llama", n_layer=40, n_embd=512, n_head=8, n_head_kv=8, n_ff=1024, n_vocab=2048, context=8192)
    spec = _SPEC_CACHE.get("big") or _SPEC_CACHE.setdefault("big", _spec_for(arch))
    result = fit_model(spec, gpus_from_vram(sizes), FitRequest(context=context))
    if result.tensor_split is None or not result.n_gpu_layers:
        return
    assert _llama_cpp_assignment(result.tensor_split, result.n_gpu_layers, spec.n_layer) == _plan_assignment(result)


_SPEC_CACHE: dict[str, object] = {}


def _spec_for(arch: Arch):  # type: ignore[no-untyped-def]
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="fit-spec-"))
    return read_model(write_gguf(directory / "m.gguf", arch, weight_type=Q.F16))


def test_partial_offload_keeps_the_first_layers_on_the_cpu(models: dict[str, Path]) -> None:
    spec = read_model(models["llama"])
    whole = fit_model(spec, gpus_from_vram([24]), FitRequest(context=256))
    assert whole.verdict == "fits" and whole.n_gpu_layers == spec.n_layer + 1
    # a GPU that holds the fixed costs and two layers: the head goes first to the CPU, then layer 0, 1
    fixed = (
        whole.gpus[0].compute_bytes
        + whole.gpus[0].overhead_bytes
        - llama_cpp_output_extra(spec, FitRequest(context=256).resolved(spec))
    )
    layer = spec.layers[0].weight_bytes + whole.gpus[0].kv_bytes // spec.n_layer
    budget = fixed + 2 * layer + 1000
    part = fit_model(spec, [GpuBudget(0, "small", budget)], FitRequest(context=256))
    assert part.verdict == "partial_offload"
    assert part.n_gpu_layers == 2
    assert part.gpus[0].layers == [spec.n_layer - 2, spec.n_layer - 1]
    assert not part.gpus[0].holds_output
    assert part.cpu_layers == spec.n_layer + 1 - 2
    assert part.cpu_kv_bytes > 0
    none = fit_model(spec, [GpuBudget(0, "tiny", 1024)], FitRequest(context=256))
    assert none.verdict == "does_not_fit" and none.n_gpu_layers == 0


def test_the_output_layer_goes_to_the_last_gpu_with_its_logits(models: dict[str, Path]) -> None:
    spec = read_model(models["llama"])
    result = fit_model(spec, gpus_from_vram([24, 24]), FitRequest(context=4096))
    assert result.fits
    holders = [g for g in result.gpus if g.holds_output]
    assert len(holders) == 1 and holders[0] is result.gpus[-1]
    # the allocator's peak on the output GPU is the logits' when they outgrow the layers' peak
    req = FitRequest(context=4096).resolved(spec)
    output = mm.LlamaCppCompute.output_bytes(n_vocab=spec.n_vocab, n_embd=spec.n_embd, n_ubatch=512)
    assert result.gpus[-1].compute_bytes == max(result.gpus[0].compute_bytes, output)
    assert result.gpus[-1].compute_bytes - result.gpus[0].compute_bytes == llama_cpp_output_extra(spec, req)
    # every weight is somewhere exactly once; the token embedding stays on the CPU
    assert result.gpu_weights_bytes + result.cpu_weights_bytes == spec.weights_bytes
    assert result.cpu_weights_bytes == spec.input_bytes


def test_the_three_gpu_rig_of_the_field_notes(models: dict[str, Path]) -> None:
    """12 GB laptop GPU beside two 24 GB cards (seed 002): all layers placed, reserve honoured,
    the split is what llama.cpp would do with it."""
    arch = Arch("llama", n_layer=80, n_embd=8192, n_head=64, n_head_kv=8, n_ff=28672, n_vocab=128256, context=131072)
    import tempfile

    path = write_gguf(Path(tempfile.mkdtemp()) / "70b.gguf", arch, weight_type=Q.Q4_K, sparse=True)
    spec = read_model(path)
    gpus = gpus_from_vram([12, 24, 24])
    result = fit_model(spec, gpus, FitRequest(context=2048, reserve_mib=1024))
    assert result.verdict == "fits"
    assert sum(result.tensor_split or []) == spec.n_layer + 1
    assert all(g.free_after_bytes >= 0 for g in result.gpus)
    assert all(g.budget_bytes == g.total_bytes - 1024 * 1024 * 1024 for g in result.gpus)
    assert _llama_cpp_assignment(result.tensor_split or [], result.n_gpu_layers or 0, 80) == _plan_assignment(result)
    # the 12 GiB card takes fewer layers than each 24 GiB card
    assert result.tensor_split[0] < result.tensor_split[1]  # type: ignore[index]


def test_largest_context_and_parallelism_are_the_edges(models: dict[str, Path]) -> None:
    spec = read_model(models["llama"])
    gpus = [GpuBudget(0, "gpu", int(0.9 * GIB))]
    result = fit_model(spec, gpus, FitRequest(context=1024))
    assert result.max_context is not None
    assert fit_model(spec, gpus, FitRequest(context=result.max_context)).fits
    if result.max_context < spec.context_length:
        assert not fit_model(spec, gpus, FitRequest(context=result.max_context + 256)).fits
    assert result.max_parallel is not None
    assert fit_model(spec, gpus, FitRequest(context=1024, parallel=result.max_parallel)).fits
    if result.max_parallel < 256:
        assert not fit_model(spec, gpus, FitRequest(context=1024, parallel=result.max_parallel + 1)).fits


def test_ollama_reserves_its_minimum_and_packs_one_gpu(models: dict[str, Path]) -> None:
    spec = read_model(models["qwen2"])
    result = fit_model(spec, gpus_from_vram([16, 16]), FitRequest(engine="ollama", reserve_mib=512))
    assert result.fits
    assert result.gpus[0].budget_bytes == 16 * GIB - (457 + 512) * 1024 * 1024
    assert result.gpus[1].used_bytes == 0
    env = result.to_dict()["flags"]["env"]  # type: ignore[index]
    assert env["OLLAMA_GPU_OVERHEAD"] == str(512 * 1024 * 1024)
    assert env["OLLAMA_CONTEXT_LENGTH"] == "4096"


# -- vLLM ---------------------------------------------------------------------------------------------


def test_vllm_utilization_is_the_smallest_that_holds_the_plan(models: dict[str, Path]) -> None:
    spec = read_model(models["llama"])
    result = fit_model(spec, gpus_from_vram([24]), FitRequest(engine="vllm", context=4096, parallel=4))
    assert result.fits and result.gpu_memory_utilization is not None
    util = result.gpu_memory_utilization
    share = result.gpus[0]
    assert share.used_bytes <= util * share.total_bytes
    assert share.used_bytes > (util - 0.01) * share.total_bytes
    too_small = fit_model(
        spec, gpus_from_vram([24]), FitRequest(engine="vllm", context=4096, parallel=4, gpu_memory_utilization=0.01)
    )
    assert not too_small.fits


def test_vllm_splits_over_gpus_the_heads_divide_into(models: dict[str, Path]) -> None:
    spec = read_model(models["llama"])  # 8 heads, 2 KV heads
    result = fit_model(spec, gpus_from_vram([24, 24, 24]), FitRequest(engine="vllm"))
    assert result.tensor_parallel_size == 2
    flags = result.to_dict()["flags"]
    assert "--tensor-parallel-size" in flags["args"]  # type: ignore[index]


# -- several models ----------------------------------------------------------------------------------------


def test_the_development_stack_of_the_rtx4090_guide(tmp_path: Path) -> None:
    """Seed 000: deepseek-r1:7b + qwen2.5-coder:7b (both Qwen2-7B shaped, Q4_K_M) + phi3.5 3.8B Q4_0
    on 24 GB. The guide adds 8 + 6.3 + 3 = 17.3 GB of weights; the files hold far less."""
    qwen7b = Arch("qwen2", n_layer=28, n_embd=3584, n_head=28, n_head_kv=4, n_ff=18944, n_vocab=152064, context=32768)
    phi35 = Arch("phi3", n_layer=32, n_embd=3072, n_head=32, n_head_kv=32, n_ff=8192, n_vocab=32064, context=131072)
    paths = [
        write_gguf(tmp_path / "r1.gguf", qwen7b, weight_type=Q.Q4_K, sparse=True),
        write_gguf(tmp_path / "coder.gguf", qwen7b, weight_type=Q.Q4_K, sparse=True),
        write_gguf(tmp_path / "phi.gguf", phi35, weight_type=Q.Q4_0, sparse=True),
    ]
    specs = [read_model(p) for p in paths]
    weights = sum(s.weights_bytes for s in specs)
    assert weights < 12 * 10**9 < 17.3 * 10**9
    stack = fit_stack(specs, gpus_from_vram([24]), FitRequest(engine="ollama", context=4096))
    assert stack.fits
    # the guide's "leaves 6.7GB" comes from its 17.3 GB of weights; with the files' real sizes, weights, three
    # 4K KV caches, compute buffers and CUDA overhead included, more is left
    assert stack.free_after_bytes[0] > 6.7 * 10**9
    # phi3.5 has no GQA: its KV cache is 32 heads × 96 dims, 12× a 7B Qwen's per token
    assert stack.results[2].kv_bytes_per_token > 5 * stack.results[0].kv_bytes_per_token
    # the same three with 16 parallel 8K requests each do not fit on one 24 GB card
    crowded = fit_stack(specs, gpus_from_vram([24]), FitRequest(engine="ollama", context=8192, parallel=16))
    assert not crowded.fits


# -- user input: never a traceback ------------------------------------------------------------------


@given(st.lists(st.text(max_size=12), min_size=1, max_size=3))
def test_vram_gib_values_are_parsed_or_refused(values: list[str]) -> None:
    try:
        sizes = parse_vram_gib(values)
    except UsageError:
        return
    assert sizes and all(0 < s <= 4096 for s in sizes)


@given(st.text(max_size=16))
def test_quantization_names_never_raise(name: str) -> None:
    canonical = mm.normalize_quantization(name)
    assert canonical is None or canonical in mm.WEIGHT_BITS


@pytest.mark.parametrize("name", ["q4_k_m", "Q4_K_M", "q8_0", "awq-int4", "GPTQ", "bf16", "fp8", "Q6_K", "Q5_K_M"])
def test_quantization_names_people_type(name: str) -> None:
    assert mm.normalize_quantization(name) is not None


@settings(max_examples=80, deadline=None)
@given(
    engine=st.sampled_from(["llama.cpp", "ollama", "vllm", "tgi", ""]),
    context=st.one_of(st.none(), st.integers(-5, 300_000)),
    parallel=st.integers(-2, 5000),
    kv=st.one_of(st.none(), st.sampled_from(["f16", "q8_0", "q4_0", "fp8", "auto", "q3_k", "F16"])),
    vram=st.floats(min_value=0.01, max_value=200),
    flash=st.one_of(st.none(), st.booleans()),
)
def test_fit_requests_fit_or_refuse(
    engine: str, context: int | None, parallel: int, kv: str | None, vram: float, flash: bool | None
) -> None:
    spec = _SPEC_CACHE.get("small") or _SPEC_CACHE.setdefault("small", _spec_for(ARCHS["gemma3"]))
    request = FitRequest(engine=engine, context=context, parallel=parallel, kv_type=kv, flash_attention=flash)
    try:
        result = fit_model(spec, gpus_from_vram([vram]), request)  # type: ignore[arg-type]
    except GpuprovError:
        return
    assert result.verdict in ("fits", "partial_offload", "does_not_fit")
    assert all(g.free_after_bytes >= 0 for g in result.gpus) or result.request.engine == "vllm"


@given(st.text(max_size=30))
@settings(max_examples=200, deadline=None)
def test_any_vllm_version_text_is_a_version_or_one_usage_error(text: str) -> None:
    """--vllm-version is user input: a version picks V0 or V1, anything else is a UsageError."""
    from packaging.version import InvalidVersion, Version

    from provision.fit.model import LayerSpec, ModelSpec

    layer = LayerSpec(index=0, weight_bytes=1 << 20, n_head_kv=2, head_dim_k=64, head_dim_v=64)
    spec = ModelSpec(
        name="m",
        source="m",
        format="hf",
        architecture="llama",
        n_embd=256,
        n_head=4,
        n_ff=512,
        n_vocab=1000,
        context_length=4096,
        layers=(layer,),
        input_bytes=0,
        output_bytes=0,
    )
    try:
        Version(text)
        valid = True
    except InvalidVersion:
        valid = False
    request = FitRequest(engine="vllm", context=1024, vllm_version=text)
    if valid:
        result = fit_model(spec, gpus_from_vram([8]), request)
        assert result.kv_capacity_tokens is not None
    else:
        with pytest.raises(UsageError, match="is not a version"):
            fit_model(spec, gpus_from_vram([8]), request)


def test_vllm_v0_profiles_the_whole_prompt_and_v1_the_scheduler_batch() -> None:
    """V0 (before 0.8.0): max(max-model-len, 2048) tokens, 512 with chunked prefill above 32K; V1: the
    scheduler's batch whatever the context (vllm#10517 logs: 2.07 GiB at 20k, 0.06 GiB at 35k on V0)."""
    assert mm.vllm_profile_tokens(version="0.6.4", max_model_len=20000, total_mib=24000) == (20000, 256)
    assert mm.vllm_profile_tokens(version="0.6.4", max_model_len=1024, total_mib=24000) == (2048, 256)
    assert mm.vllm_profile_tokens(version="0.7.3", max_model_len=35000, total_mib=24000)[0] == 512
    assert mm.vllm_profile_tokens(version="0.8.0", max_model_len=20000, total_mib=24000) == (2048, 256)
    assert mm.vllm_profile_tokens(version=None, max_model_len=20000, total_mib=80000) == (8192, 1024)
    llama8b = {"n_embd": 4096, "n_ff": 14336, "n_vocab": 128256, "total_mib": 24146, "tp": 1}
    v0 = mm.vllm_activation_bytes(**llama8b, max_model_len=20000, version="0.6.4")
    assert abs(v0 / mm.GIB - 2.07) < 0.05
    assert mm.vllm_activation_bytes(**llama8b, max_model_len=20000, version="0.9.2") < v0 / 4


def test_vllm_v1_activation_is_the_larger_of_the_forward_and_the_sampler() -> None:
    """vLLM 0.19.0 on an H100 (llm-d-planner's published logs): Llama 3.1 8B logs 1.89 GiB, the
    sampler's 1024 rows of its 128256-token vocabulary; CodeLlama 7B (32016 tokens) logs 0.77 GiB, the
    forward pass's. The old sum (forward + f32 logits) gave 1.33 and 0.81."""
    h100 = {"total_mib": 81090, "tp": 1, "max_model_len": 8192, "version": "0.19.0"}
    llama = mm.vllm_activation_bytes(n_embd=4096, n_ff=14336, n_vocab=128256, **h100)
    codellama = mm.vllm_activation_bytes(n_embd=4096, n_ff=11008, n_vocab=32016, **h100)
    assert abs(llama / mm.GIB - 1.89) < 0.1
    assert abs(codellama / mm.GIB - 0.77) < 0.05
    # tensor parallel shrinks the MLP's part, not the sampler's (every rank gathers the whole vocabulary)
    assert mm.vllm_activation_bytes(n_embd=4096, n_ff=14336, n_vocab=128256, **{**h100, "tp": 2}) == llama


def test_vllm_tensor_parallel_ranks_hold_all_reduce_buffers(tmp_path: Path) -> None:
    """Llama 3.3 70B FP8 over two H100s at 0.95 on vLLM 0.19.0 logs 2.1 GiB of non-torch memory per rank
    and 15269 KV blocks (244,304 tokens, llm-d-planner's published log); with a single GPU's 0.5 GiB
    the fit said 255,152 (+4.4 %)."""
    import json

    from provision.fit.hf_dir import read_hf_dir

    config = {
        "model_type": "llama",
        "num_hidden_layers": 80,
        "hidden_size": 8192,
        "num_attention_heads": 64,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "intermediate_size": 28672,
        "vocab_size": 128256,
        "max_position_embeddings": 131072,
        "torch_dtype": "bfloat16",
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    spec = read_hf_dir(tmp_path, quantization="FP8")
    h100 = int(79.19 * mm.GIB)
    request = FitRequest(engine="vllm", context=8192, gpu_memory_utilization=0.95, vllm_version="0.19.0")
    result = fit_model(spec, [GpuBudget(0, "H100", h100), GpuBudget(1, "H100", h100)], request)
    assert result.tensor_parallel_size == 2
    assert result.kv_capacity_tokens is not None
    assert abs(result.kv_capacity_tokens - 244304) <= 0.01 * 244304, result.kv_capacity_tokens


def test_vllm_from_0_21_keeps_its_cuda_graphs_inside_the_utilization(tmp_path: Path) -> None:
    """vLLM 0.21+ logs "The current --gpu-memory-utilization=U is equivalent to
    --gpu-memory-utilization=U' without CUDA graph memory profiling", U' = U - graphs / total
    (LMCache#3430: 0.9764 and 0.9543 with 0.52 GiB on an RTX A5000): the KV cache 0.21 sizes at U is
    the one 0.20 sized at U'."""
    import json

    from provision.fit.hf_dir import read_hf_dir

    config = {  # Qwen3-8B's shapes
        "model_type": "qwen3",
        "num_hidden_layers": 36,
        "hidden_size": 4096,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "intermediate_size": 12288,
        "vocab_size": 151936,
        "max_position_embeddings": 40960,
        "torch_dtype": "bfloat16",
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    spec = read_hf_dir(tmp_path)
    total = int(23.55 * mm.GIB)
    gpus = [GpuBudget(0, "RTX A5000", total)]

    def capacity(version: str, util: float) -> int:
        request = FitRequest(engine="vllm", context=16384, gpu_memory_utilization=util, vllm_version=version)
        tokens = fit_model(spec, gpus, request).kv_capacity_tokens
        assert tokens is not None
        return tokens

    graphs_share = mm.VLLM_CUDA_GRAPH_MIB * mm.MIB / total
    assert abs(capacity("0.21.0", 0.9764) - capacity("0.20.2", 0.9764 - graphs_share)) <= 32
    # and the releases before 0.21 put them above the limit: the same U gives them a larger cache
    assert capacity("0.20.2", 0.9764) > capacity("0.21.0", 0.9764) + 3000


def test_llama_cpp_compute_is_the_allocator_peak_not_the_sum() -> None:
    """Mistral 7B at 2048 tokens without flash attention: llama.cpp logs 164.00 MiB (logdetective#106);
    the sum of scores, FFN and logits was 222.5 MiB."""
    shape = {"n_embd": 4096, "n_head": 32, "n_ff": 14336, "n_ubatch": 512}
    layers = mm.LlamaCppCompute.device_bytes(**shape, n_kv=2048, flash_attention=False)
    output = mm.LlamaCppCompute.output_bytes(n_vocab=32000, n_embd=4096, n_ubatch=512)
    assert max(layers, output) == 164 * mm.MIB
    # with flash attention the scores are not materialised: the FFN or the logits set the peak
    flash = mm.LlamaCppCompute.device_bytes(**shape, n_kv=2048, flash_attention=True)
    assert flash < layers / 2
