"""The memory model: every constant ``gpuprov fit`` uses, where it comes from, and the formulas.

Three parts make up what an engine needs on a GPU:

- **weights**: exact from the model file's tensors (GGUF tensor infos, safetensors headers) or, for a
  bare parameter count, parameters × bits per weight of the quantization (:data:`WEIGHT_BITS`);
- **KV cache**: per layer ``n_head_kv × (head_dim_k + head_dim_v) × bytes of the cache type`` per
  token, times the tokens the engine allocates cells for (:func:`llama_cpp_kv_cells`,
  :func:`vllm_kv_tokens`); sliding-window layers hold only their window;
- **overhead**: what is not weights or KV — the CUDA context, the engine's compute/activation
  buffers, and reserves the engines keep on purpose (:class:`EngineOverhead`).

Sources are named next to each value. Values marked *estimate* are not read from an engine's source:
they are starting points that ``benchmarks/fit_accuracy.py`` measures on a real GPU (NVML used
memory before/after a load) so they can be replaced by measurements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from provision.engineflags import LLAMA_CPP_ENGINE, LLAMA_SERVER_UBATCH, OLLAMA_ENGINE, VLLM_ENGINE

MIB = 1024 * 1024
GIB = 1024 * MIB

# -- KV cache element types --------------------------------------------------------------------

#: cache types by engine, as each engine's flag spells them. Bytes per element come from ggml's
#: block layout (``GGML_QUANT_SIZES`` of the ``gguf`` package: block of 32 values = 34 bytes for
#: q8_0, 18 for q4_0...). vLLM: ``--kv-cache-dtype auto`` stores the model dtype; ``fp8``
#: (fp8_e4m3/fp8_e5m2) one byte (vLLM docs, "Quantized KV Cache").
KV_CACHE_TYPES: dict[str, tuple[str, ...]] = {
    # llama.cpp --cache-type-k/-v: common/arg.cpp kv_cache_types
    LLAMA_CPP_ENGINE: ("f16", "bf16", "f32", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"),
    # Ollama OLLAMA_KV_CACHE_TYPE: docs/faq.md "How can I set the quantization type for the K/V cache?"
    OLLAMA_ENGINE: ("f16", "q8_0", "q4_0"),
    VLLM_ENGINE: ("auto", "fp8", "fp8_e4m3", "fp8_e5m2"),
}

#: the cache type each engine uses when none is given
DEFAULT_KV_CACHE_TYPE = {LLAMA_CPP_ENGINE: "f16", OLLAMA_ENGINE: "f16", VLLM_ENGINE: "auto"}


def kv_bytes_per_element(kv_type: str, *, model_dtype_bytes: int = 2) -> float:
    """Bytes one cached K or V value takes (a fraction for block-quantized types)."""
    if kv_type == "auto":
        return float(model_dtype_bytes)
    if kv_type.startswith("fp8"):
        return 1.0
    qtype = GGMLQuantizationType[kv_type.upper()]
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    return type_size / block_size


def kv_row_bytes(elements: int, kv_type: str, *, model_dtype_bytes: int = 2) -> int:
    """Bytes of one token's row of ``elements`` values (ggml rows are whole blocks)."""
    if kv_type in ("auto",) or kv_type.startswith("fp8"):
        return int(elements * kv_bytes_per_element(kv_type, model_dtype_bytes=model_dtype_bytes))
    qtype = GGMLQuantizationType[kv_type.upper()]
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    return math.ceil(elements / block_size) * type_size


#: llama.cpp quantizes the V cache only with flash attention (llama-context.cpp: "V cache
#: quantization requires flash_attn"); Ollama likewise needs OLLAMA_FLASH_ATTENTION=1 for a
#: quantized cache (docs/faq.md).
QUANTIZED_KV_NEEDS_FLASH_ATTENTION = True

# -- weight quantizations (for a parameter count without a file) --------------------------------

#: Bits per weight, averaged over a whole model. K-quant "mixes" (Q4_K_M...) quantize some tensors
#: with more bits, so their average is above the base block's: the averages are llama.cpp's own
#: reference sizes (tools/quantize/quantize.cpp QUANT_OPTIONS: "Q4_K_M: 4.58G @ Llama-3-8B" etc.,
#: GiB over Llama-3-8B's 8.03e9 parameters). Single-type formats use ggml's block size exactly.
#: AWQ/GPTQ int4 (group size 128): 4 bits + a 16-bit scale and a 4-bit zero point per 128 weights
#: (AutoAWQ/GPTQ packing); embeddings and the head stay 16-bit (SIXTEEN_BIT_EMBEDDINGS, hf_dir.read_hf_dir).
WEIGHT_BITS: dict[str, float] = {
    "F32": 32.0,
    "F16": 16.0,
    "BF16": 16.0,
    "FP8": 8.0,
    "Q8_0": 8.0 * 34 / 32,
    "Q6_K": 8.0 * 210 / 256,
    "Q5_K_M": 5.33 * GIB * 8 / 8.03e9,
    "Q5_K_S": 5.21 * GIB * 8 / 8.03e9,
    "Q4_K_M": 4.58 * GIB * 8 / 8.03e9,
    "Q4_K_S": 4.37 * GIB * 8 / 8.03e9,
    "Q4_0": 4.34 * GIB * 8 / 8.03e9,
    "Q3_K_M": 3.74 * GIB * 8 / 8.03e9,
    "Q2_K": 2.96 * GIB * 8 / 8.03e9,
    "AWQ": 4.0 + 20.0 / 128,
    "GPTQ": 4.0 + 20.0 / 128,
}

#: other spellings users type for the same thing (after upper-casing and "-" → "_")
WEIGHT_ALIASES = {
    "FP16": "F16",
    "FP32": "F32",
    "INT8": "Q8_0",
    "INT4": "AWQ",
    "AWQ_INT4": "AWQ",
    "GPTQ_INT4": "GPTQ",
    "Q4_K": "Q4_K_M",
    "Q5_K": "Q5_K_M",
    "FP8_E4M3": "FP8",
}

#: quantizations that keep the embedding table and head in 16 bit (vLLM/transformers formats)
SIXTEEN_BIT_EMBEDDINGS = frozenset({"FP8", "AWQ", "GPTQ"})


def normalize_quantization(name: str) -> str | None:
    """The canonical name (``Q4_K_M``) for what a user typed (``q4_k_m``, ``awq-int4``), or None."""
    key = name.strip().upper().replace("-", "_")
    key = WEIGHT_ALIASES.get(key, key)
    return key if key in WEIGHT_BITS else None


# -- llama.cpp (also what Ollama runs) ----------------------------------------------------------

#: llama.cpp pads the context to a multiple of 256 cells (llama-context.cpp:
#: ``cparams.n_ctx = GGML_PAD(cparams.n_ctx, 256)``, and per sequence ``n_ctx_seq`` likewise when the
#: cache is not unified); the sliding-window cache is padded to 256 as well (llama-kv-cache-iswa.cpp).
LLAMA_CPP_CTX_PAD = 256

#: llama-server / llama-cpp-python default physical batch (provision.engineflags owns the engines' defaults)
LLAMA_CPP_UBATCH = LLAMA_SERVER_UBATCH
#: the longest context a request may ask for: above every trained context (Llama 4 Scout: 10M tokens);
#: llama.cpp and vLLM keep context sizes in 32-bit integers
MAX_CONTEXT = 1 << 24

#: Ollama's scheduler never plans into the last 457 MiB of a CUDA GPU (discover/gpu.go
#: ``cudaMinimumMemory = 457 * format.MebiByte``); OLLAMA_GPU_OVERHEAD adds to it (envconfig:
#: "Reserve a portion of VRAM per GPU (bytes)", default 0).
OLLAMA_MINIMUM_MIB = 457


def pad(value: int, multiple: int) -> int:
    return ((value + multiple - 1) // multiple) * multiple


def llama_cpp_kv_cells(
    ctx_per_seq: int,
    parallel: int,
    *,
    sliding_window: int | None,
    n_ubatch: int = LLAMA_CPP_UBATCH,
) -> int:
    """KV cells llama.cpp allocates for one layer, over all sequences.

    llama-server's ``--ctx-size`` is the total over ``--parallel`` slots; with the (default)
    non-unified cache every slot is a stream of ``pad(ctx/parallel, 256)`` cells (llama-context.cpp).
    A sliding-window layer keeps ``pad(min(cells, window + n_ubatch), 256)`` per stream
    (llama-kv-cache-iswa.cpp ``size_swa``).
    """
    per_stream = pad(max(ctx_per_seq, 1), LLAMA_CPP_CTX_PAD)
    if sliding_window is not None:
        per_stream = pad(min(per_stream, sliding_window + n_ubatch), LLAMA_CPP_CTX_PAD)
    return per_stream * parallel


@dataclass(frozen=True)
class LlamaCppCompute:
    """The compute buffer llama.cpp reserves on one device: the graph allocator's *peak* over the
    worst-case graph of ``n_ubatch`` tokens (ggml-alloc.c ``ggml_gallocr``: a tensor's memory is
    reused as soon as its last consumer has run), so the size is that of the largest set of tensors
    alive at one point, not the sum of all intermediates. Three points compete, all tensors f32:

    - **attention** without flash attention: the scores ``KQ`` (``n_head × n_kv × n_ubatch``,
      softmaxed in place), the mask (``n_kv × n_ubatch``, alive through every layer) and
      :attr:`ATTENTION_ROWS` hidden-state rows (``n_embd × n_ubatch``); with flash attention the
      scores are never materialised and the mask is f16;
    - **feed-forward**: gate and up (``2 × n_ff × n_ubatch``), the mask and two rows;
    - **output** (only on the device of the output layer): the logits (``n_vocab × n_ubatch``, the
      reserve graph outputs every token) and :attr:`OUTPUT_ROWS` rows; the mask is freed by then.

    Checked against published startup logs (tests/data/fit_logs/: Mistral 7B at 2k/32k, Llama 3.2
    3B at 8k, and a CPU run, all within 0.1 MiB) and the Gemma 3 270M measurement (output-bound,
    tests/data/fit/accuracy-cpu.json). The old sum (scores or FFN, plus logits) was 30-44 % high.
    """

    ATTENTION_ROWS = 4
    FFN_ROWS = 2
    OUTPUT_ROWS = 2

    @staticmethod
    def device_bytes(
        *,
        n_embd: int,
        n_head: int,
        n_ff: int,
        n_kv: int,
        n_ubatch: int,
        flash_attention: bool,
    ) -> int:
        """Peak on a device that holds layers but not the output."""
        row = n_embd * n_ubatch * 4
        if flash_attention:
            mask = n_kv * n_ubatch * 2
            attention = mask + LlamaCppCompute.ATTENTION_ROWS * row
        else:
            mask = n_kv * n_ubatch * 4
            attention = n_head * n_kv * n_ubatch * 4 + mask + LlamaCppCompute.ATTENTION_ROWS * row
        ffn = 2 * n_ff * n_ubatch * 4 + mask + LlamaCppCompute.FFN_ROWS * row
        return max(attention, ffn)

    @staticmethod
    def output_bytes(*, n_vocab: int, n_embd: int, n_ubatch: int) -> int:
        """Peak at the output: the logits and the rows they are computed from."""
        return n_vocab * n_ubatch * 4 + LlamaCppCompute.OUTPUT_ROWS * n_embd * n_ubatch * 4


# -- vLLM ---------------------------------------------------------------------------------------

#: ``--gpu-memory-utilization`` default (vLLM engine args: "The fraction of GPU memory to be used for
#: the model executor ... default 0.9"; a per-instance limit). vLLM's worker computes
#: ``requested = total × utilization``, refuses to start when free memory is below it, and gives the
#: KV cache ``requested − (weights + activation peak + non-torch memory)``
#: (worker.py / v1/worker/gpu_worker.py ``determine_available_memory``; CUDA graphs come later).
VLLM_DEFAULT_UTILIZATION = 0.9

#: KV cache is handed out in blocks of 16 tokens (vLLM ``--block-size`` default on CUDA)
VLLM_BLOCK_TOKENS = 16

#: vLLM V1's scheduler defaults for the OpenAI server (engine/arg_utils.py ``_set_default_args``):
#: on GPUs with at least 70 GiB, 8192 batched tokens and 1024 sequences; below, 2048 and 256.
VLLM_LARGE_GPU_MIB = 70 * 1024


def vllm_scheduler_defaults(total_mib: int) -> tuple[int, int]:
    """(max_num_batched_tokens, max_num_seqs) vLLM's server uses by default on this GPU."""
    return (8192, 1024) if total_mib >= VLLM_LARGE_GPU_MIB else (2048, 256)


#: non-torch memory (CUDA context, cuBLAS/NCCL workspaces) per GPU — estimate (vLLM logs it as
#: "non-torch memory" at start-up; 0.2-0.5 GiB on a single GPU)
VLLM_NON_TORCH_MIB = 512
#: tensor parallel adds NCCL's and custom all-reduce buffers per rank — estimate: vLLM 0.19.0 on NVLink
#: H100s logs 2.06-2.13 GiB at TP 2-4 (llm-d-planner; fit_logs/vllm-v1-llama3.3-70b-fp8-tp2-*). Pessimistic
#: on PCIe GPUs without peer access (custom all-reduce off): 0.25 GiB on an RTX 4090 rank (vllm#13061).
VLLM_NON_TORCH_TP_MIB = 2150


def vllm_non_torch_bytes(tp: int) -> int:
    """vLLM's non-torch memory per GPU: CUDA context, workspaces, all-reduce buffers under TP."""
    return (VLLM_NON_TORCH_MIB if tp <= 1 else VLLM_NON_TORCH_TP_MIB) * MIB


#: CUDA graphs for decode batch sizes — estimate ("Graph capturing finished ... took 0.2-0.6 GiB" for 7-8B
#: models, 0.9 GiB for 0.19's 102 graphs on an H100); 0 with ``--enforce-eager``. Captured after the KV cache
#: is allocated (``compile_or_warm_up_model``): before :data:`VLLM_GRAPHS_IN_BUDGET_SINCE` above the limit.
VLLM_CUDA_GRAPH_MIB = 512

#: from 0.21.0 vLLM estimates the graphs before sizing the KV cache and keeps them inside the limit: "CUDA
#: graph memory profiling is enabled (default since v0.21.0). The current --gpu-memory-utilization=U is
#: equivalent to ...=U' without", U' = U - graphs/total (LMCache#3430: 0.9764 is 0.9543 with 0.52 GiB)
VLLM_GRAPHS_IN_BUDGET_SINCE = "0.21.0"

#: vLLM 0.8.0 made the V1 engine the default (``VLLM_USE_V1=1``); V0 was removed in 0.11.0.
VLLM_V1_DEFAULT_SINCE = "0.8.0"

#: V0's server turns chunked prefill on by itself only above 32K max-model-len (engine/arg_utils.py:
#: "Chunked prefill is enabled by default for models with max_model_len > 32K"); without it a batch
#: must hold a whole prompt, so ``max_num_batched_tokens = max(max_model_len, 2048)``
#: (config.py SchedulerConfig) and the profile run pushes that many tokens.
VLLM_V0_CHUNKED_ABOVE = 32768
VLLM_V0_MIN_BATCHED_TOKENS = 2048
#: V0's chunked-prefill batch for the OpenAI server (arg_utils ``max_num_batched_tokens = 512``);
#: confirmed by a published V0 log: Llama 3.1 8B at 35k profiled at 0.06 GiB (vllm#10517)
VLLM_V0_CHUNKED_BATCHED_TOKENS = 512


def _vllm_at_least(version: str | None, since: str) -> bool:
    """Whether ``version`` is ``since`` or later (None or not a version: a current release)."""
    if version is None:
        return True
    from packaging.version import InvalidVersion, Version

    try:
        return Version(version) >= Version(since)
    except InvalidVersion:
        return True


def vllm_is_v1(version: str | None) -> bool:
    """Whether this vLLM release runs the V1 engine by default (None: a current release)."""
    return _vllm_at_least(version, VLLM_V1_DEFAULT_SINCE)


def vllm_graphs_in_budget(version: str | None) -> bool:
    """Whether this vLLM release keeps its CUDA graphs inside ``--gpu-memory-utilization`` (None: a
    current release)."""
    return _vllm_at_least(version, VLLM_GRAPHS_IN_BUDGET_SINCE)


def vllm_profile_tokens(*, version: str | None, max_model_len: int, total_mib: int) -> tuple[int, int]:
    """(tokens, sequences) vLLM's memory-profiling run pushes through the model.

    V1 (gpu_model_runner.py ``profile_run``): the scheduler's ``max_num_batched_tokens``
    (:func:`vllm_scheduler_defaults`; chunked prefill is always on). V0 (worker.py
    ``determine_num_available_blocks``): ``max(max_model_len, 2048)`` tokens without chunked
    prefill, 512 with it (above 32K).
    """
    tokens, seqs = vllm_scheduler_defaults(total_mib)
    if vllm_is_v1(version):
        return tokens, seqs
    if max_model_len > VLLM_V0_CHUNKED_ABOVE:
        return VLLM_V0_CHUNKED_BATCHED_TOKENS, 256
    return max(max_model_len, VLLM_V0_MIN_BATCHED_TOKENS), 256


#: hidden-state rows (``n_embd`` per batched token, model dtype) alive at the forward's peak besides the
#: MLP's: hidden, residual, attention output (V0, vllm#10517: 2.06 / 2.99 GiB at 20k / 29k, 2.07 / 2.99 logged)
VLLM_FORWARD_ROWS = 3
#: V1 keeps one more row per batched token throughout: the runner's persistent ``inputs_embeds`` buffer
#: (gpu_model_runner.py); in the sampler run it and the dummy run's hidden states are left of the forward
VLLM_V1_EXTRA_ROWS = 1
VLLM_V1_SAMPLER_ROWS = 2
#: bytes per logit of V1's ``_dummy_sampler_run`` over ``max_num_seqs`` rows of the vocabulary (sampler.py,
#: topk_topp_sampler.py): model-dtype logits (2), their f32 copy (4), f32 softmax probabilities (4) and
#: the f32 exponential noise of ``random_sample`` (4), all alive at once
VLLM_V1_SAMPLER_BYTES_PER_LOGIT = 2 + 4 + 4 + 4


def vllm_activation_bytes(
    *,
    n_embd: int,
    n_ff: int,
    n_vocab: int,
    total_mib: int,
    tp: int,
    max_model_len: int,
    version: str | None = None,
) -> int:
    """Peak activation memory of vLLM's profile run (what it logs as "PyTorch activation peak
    memory", V1 0.19+: "... GiB for peak activation").

    The forward pass peaks inside an MLP, in the model dtype (2 bytes): the merged gate/up output
    (``2 × n_ff / tp``), the activation's output (``n_ff / tp``) and :data:`VLLM_FORWARD_ROWS`
    hidden-state rows per token of :func:`vllm_profile_tokens`. V1 then runs the sampler on
    ``max_num_seqs`` rows of logits after the forward's intermediates are freed: the peak is the
    larger of the two (not their sum), :data:`VLLM_V1_SAMPLER_BYTES_PER_LOGIT` per logit on top of
    :data:`VLLM_V1_SAMPLER_ROWS` rows. Against vLLM 0.19.0 logs on an H100 (tests/data/fit_logs/
    vllm-v1-*): Llama 3.1 8B 1.84 GiB predicted, 1.89 logged (the sampler's peak); CodeLlama 7B 0.75 /
    0.77 and Granite 3.1 8B 0.84 / 0.85 (the forward's: small vocabularies). Logits are gathered
    whole on every tensor-parallel rank, so the sampler's part does not shrink with ``tp``.
    """
    tokens, seqs = vllm_profile_tokens(version=version, max_model_len=max_model_len, total_mib=total_mib)
    row = tokens * n_embd * 2
    if not vllm_is_v1(version):
        return tokens * (3 * n_ff // tp) * 2 + VLLM_FORWARD_ROWS * row
    forward = tokens * (3 * n_ff // tp) * 2 + (VLLM_FORWARD_ROWS + VLLM_V1_EXTRA_ROWS) * row
    sampler = seqs * n_vocab * VLLM_V1_SAMPLER_BYTES_PER_LOGIT + VLLM_V1_SAMPLER_ROWS * row
    return max(forward, sampler)


def vllm_kv_capacity_tokens(kv_bytes_per_rank: int, bytes_per_token_per_rank: int) -> int:
    """Tokens vLLM's KV cache holds (its "GPU KV cache size: N tokens"): whole blocks of
    :data:`VLLM_BLOCK_TOKENS` in the memory left for the cache on each rank."""
    if bytes_per_token_per_rank <= 0 or kv_bytes_per_rank <= 0:
        return 0
    blocks = kv_bytes_per_rank // (bytes_per_token_per_rank * VLLM_BLOCK_TOKENS)
    return blocks * VLLM_BLOCK_TOKENS


def vllm_kv_tokens(context: int) -> int:
    """Tokens of cache one sequence of ``context`` takes (whole blocks)."""
    return pad(max(context, 1), VLLM_BLOCK_TOKENS)


# -- the CUDA context, for every engine ----------------------------------------------------------


@dataclass(frozen=True)
class EngineOverhead:
    """What one engine process costs on each GPU it uses, besides weights, KV and compute."""

    #: CUDA context + cuBLAS workspace + loaded kernels — estimate; NVML "used" grows by this when a
    #: CUDA process starts before any tensor is allocated (CUDA 12 lazy module loading). Measured
    #: by benchmarks/fit_accuracy.py on the device machine.
    cuda_context_mib: int
    #: memory the engine leaves unused on purpose (Ollama's minimum), per GPU
    reserve_mib: int = 0


ENGINE_OVERHEAD = {
    LLAMA_CPP_ENGINE: EngineOverhead(cuda_context_mib=300),
    OLLAMA_ENGINE: EngineOverhead(cuda_context_mib=300, reserve_mib=OLLAMA_MINIMUM_MIB),
    VLLM_ENGINE: EngineOverhead(cuda_context_mib=VLLM_NON_TORCH_MIB),
}

ENGINES = tuple(ENGINE_OVERHEAD)
