"""Does a model fit on these GPUs, with which context, parallelism and engine settings.

:func:`fit_model` is the pure core (``gpuprov fit``, and ``plan``/``apply`` to check a profile's
serving settings): a :class:`~provision.fit.model.ModelSpec`, a list of :class:`GpuBudget` and a
:class:`FitRequest` in, a :class:`FitResult` out. :func:`fit_stack` checks several models that are
to be resident together.

Two ways of using several GPUs, as the engines do:

- **layers** (llama.cpp, Ollama): whole layers go to one GPU each, in order, with their KV cache;
  llama.cpp keeps the token embedding on the CPU and puts the output head on the device of "layer
  n_layer" (llama-model.cpp ``load_tensors``). ``--n-gpu-layers N`` offloads the *last* N layers
  (the head counts as one more); layers that do not fit stay on the CPU with their KV cache.
- **tensor parallel** (vLLM): every layer is split over ``--tensor-parallel-size`` GPUs; each GPU
  holds 1/tp of the weights and KV cache; the smallest GPU sets the budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from provision.errors import UsageError
from provision.fit import memory_model as mm
from provision.fit.model import ModelSpec

LAYER_ENGINES = ("llama.cpp", "ollama")

#: the largest parallelism the searches try
MAX_PARALLEL = 256
#: the smallest context worth serving
MIN_CONTEXT = 256


@dataclass(frozen=True)
class GpuBudget:
    """One GPU as the fit sees it."""

    index: int
    name: str
    total_bytes: int
    #: memory free right now (from a live snapshot); None when planning for a GPU not in front of us
    free_bytes: int | None = None

    @property
    def usable_bytes(self) -> int:
        return self.total_bytes if self.free_bytes is None else min(self.free_bytes, self.total_bytes)


@dataclass(frozen=True)
class FitRequest:
    engine: str = "llama.cpp"
    #: tokens per sequence; None: min(4096, the model's trained context) — llama-server's and
    #: Ollama's default context
    context: int | None = None
    parallel: int = 1
    #: KV cache type in the engine's spelling; None: the engine's default
    kv_type: str | None = None
    #: memory per GPU the user keeps free (for the desktop, another process...)
    reserve_mib: int = 0
    #: None: the engine's default (llama.cpp: auto, on for CUDA; Ollama: off; needed for a
    #: quantized V cache)
    flash_attention: bool | None = None
    n_ubatch: int = mm.LLAMA_CPP_UBATCH
    #: vLLM: a fixed --gpu-memory-utilization to check; None: compute the one needed
    gpu_memory_utilization: float | None = None
    #: llama.cpp: sliding-window layers keep a full-size KV cache (``--swa-full``). llama-server's default
    #: is off; llama-cpp-python (``Llama()``, ``python -m llama_cpp.server``) takes the library's
    #: llama_context_default_params(), where it is on (measured: tests/data/fit/accuracy-cpu.json)
    swa_full: bool = False
    #: llama.cpp: one KV stream of ``context × parallel`` cells that every sequence attends over
    #: (``--kv-unified``; llama.cpp's only layout before the per-sequence streams of mid-2025, and
    #: Ollama's): the compute buffer's attention scores span all of them
    kv_unified: bool = False
    #: vLLM: the release in the profile's environment (e.g. "0.6.4"); None: a current one. Before
    #: 0.8.0 the V0 engine profiles whole prompts of max-model-len tokens (memory_model.vllm_profile_tokens)
    vllm_version: str | None = None

    def resolved(self, model: ModelSpec) -> FitRequest:
        """Defaults filled in and everything checked: UsageError on a bad value."""
        if self.engine not in mm.ENGINES:
            raise UsageError(f"unknown engine {self.engine!r}: use one of {', '.join(mm.ENGINES)}")
        kv = (self.kv_type or mm.DEFAULT_KV_CACHE_TYPE[self.engine]).lower()
        if kv not in mm.KV_CACHE_TYPES[self.engine]:
            raise UsageError(
                f"{self.engine} has no KV cache type {kv!r}: use one of {', '.join(mm.KV_CACHE_TYPES[self.engine])}"
            )
        context = self.context if self.context is not None else min(4096, model.context_length)
        if context < 1:
            raise UsageError(f"context {context} must be at least 1 token")
        if context > mm.MAX_CONTEXT:
            raise UsageError(f"context {context} is more than any engine takes (at most {mm.MAX_CONTEXT} tokens)")
        if self.parallel < 1 or self.parallel > 4096:
            raise UsageError(f"parallel {self.parallel} must be between 1 and 4096")
        if self.reserve_mib < 0:
            raise UsageError(f"reserve {self.reserve_mib} MiB must not be negative")
        if self.n_ubatch < 1:
            raise UsageError(f"ubatch {self.n_ubatch} must be at least 1")
        util = self.gpu_memory_utilization
        if util is not None and not 0.0 < util <= 1.0:
            raise UsageError(f"--gpu-memory-utilization {util} must be in (0, 1]")
        if self.vllm_version is not None:
            from packaging.version import InvalidVersion, Version

            try:
                Version(self.vllm_version)
            except InvalidVersion:
                raise UsageError(f"vLLM version {self.vllm_version[:40]!r} is not a version: e.g. 0.6.4") from None
        flash = self.flash_attention
        if flash is None:
            flash = self.engine == "llama.cpp" or (self.engine == "ollama" and kv != "f16")
        if self.engine in LAYER_ENGINES and kv not in ("f16", "bf16", "f32") and not flash:
            raise UsageError(f"a quantized KV cache ({kv}) needs flash attention in {self.engine}")
        return replace(self, kv_type=kv, context=context, flash_attention=flash)


@dataclass
class GpuShare:
    """What one GPU holds under the plan."""

    index: int
    name: str
    total_bytes: int
    budget_bytes: int
    layers: list[int] = field(default_factory=list)
    holds_output: bool = False
    weights_bytes: int = 0
    kv_bytes: int = 0
    compute_bytes: int = 0
    overhead_bytes: int = 0

    @property
    def used_bytes(self) -> int:
        return self.weights_bytes + self.kv_bytes + self.compute_bytes + self.overhead_bytes

    @property
    def free_after_bytes(self) -> int:
        return self.budget_bytes - self.used_bytes

    def to_dict(self) -> dict[str, object]:
        return {
            "index": self.index,
            "name": self.name,
            "total_bytes": self.total_bytes,
            "budget_bytes": self.budget_bytes,
            "layers": _ranges(self.layers),
            "n_layers": len(self.layers),
            "holds_output": self.holds_output,
            "weights_bytes": self.weights_bytes,
            "kv_bytes": self.kv_bytes,
            "compute_bytes": self.compute_bytes,
            "overhead_bytes": self.overhead_bytes,
            "used_bytes": self.used_bytes,
            "free_after_bytes": self.free_after_bytes,
        }


VERDICTS = ("fits", "partial_offload", "does_not_fit")


@dataclass
class FitResult:
    model: ModelSpec
    request: FitRequest
    verdict: str
    weights_bytes: int
    gpu_weights_bytes: int
    cpu_weights_bytes: int
    kv_bytes_per_token: int
    kv_bytes: int
    cpu_kv_bytes: int
    compute_bytes: int
    overhead_bytes: int
    gpus: list[GpuShare]
    #: llama.cpp --n-gpu-layers (the output head counts as a layer); None for vLLM
    n_gpu_layers: int | None = None
    cpu_layers: int = 0
    #: layers per GPU, in GPU order: llama.cpp --tensor-split proportions that give exactly this
    tensor_split: list[int] | None = None
    tensor_parallel_size: int | None = None
    gpu_memory_utilization: float | None = None
    max_context: int | None = None
    max_parallel: int | None = None
    notes: list[str] = field(default_factory=list)
    #: what the user keeps free (--reserve-mib × GPUs): not the engine's, so not in overhead_bytes
    reserve_bytes: int = 0
    #: vLLM: the tokens its KV cache will hold ("GPU KV cache size: N tokens" at start-up) and how
    #: many sequences of the full context that is ("Maximum concurrency for N tokens per request")
    kv_capacity_tokens: int | None = None
    max_concurrency: float | None = None

    @property
    def max_parallel_capped(self) -> bool:
        """The search stops at MAX_PARALLEL sequences: more may fit."""
        return self.max_parallel == MAX_PARALLEL

    @property
    def fits(self) -> bool:
        return self.verdict == "fits"

    @property
    def gpu_bytes(self) -> int:
        return sum(g.used_bytes for g in self.gpus)

    def to_dict(self) -> dict[str, object]:
        from provision.engineflags import engine_flags

        req = self.request
        return {
            "model": {
                "name": self.model.name,
                "source": self.model.source,
                "format": self.model.format,
                "architecture": self.model.architecture,
                "quantization": self.model.quantization,
                "n_layer": self.model.n_layer,
                "context_length": self.model.context_length,
                "weights_exact": self.model.weights_exact,
            },
            "engine": req.engine,
            "context": req.context,
            "parallel": req.parallel,
            "kv_type": req.kv_type,
            "flash_attention": req.flash_attention,
            "verdict": self.verdict,
            "fits": self.fits,
            "weights_bytes": self.weights_bytes,
            "gpu_weights_bytes": self.gpu_weights_bytes,
            "cpu_weights_bytes": self.cpu_weights_bytes,
            "kv_bytes_per_token": self.kv_bytes_per_token,
            "kv_bytes": self.kv_bytes,
            "cpu_kv_bytes": self.cpu_kv_bytes,
            "compute_bytes": self.compute_bytes,
            "overhead_bytes": self.overhead_bytes,
            "reserve_bytes": self.reserve_bytes,
            "gpu_bytes": self.gpu_bytes,
            "n_gpu_layers": self.n_gpu_layers,
            "cpu_layers": self.cpu_layers,
            "tensor_split": self.tensor_split,
            "tensor_parallel_size": self.tensor_parallel_size,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "max_context": self.max_context,
            "max_parallel": self.max_parallel,
            "max_parallel_capped": self.max_parallel_capped,
            "kv_capacity_tokens": self.kv_capacity_tokens,
            "max_concurrency": self.max_concurrency,
            "gpus": [g.to_dict() for g in self.gpus],
            "flags": engine_flags(self),
            "notes": list(self.model.notes) + self.notes,
        }


def _ranges(values: list[int]) -> str:
    if not values:
        return ""
    return f"{values[0]}-{values[-1]}" if len(values) > 1 else str(values[0])


# -- KV cache ----------------------------------------------------------------------------------


def layer_kv_row_bytes(model: ModelSpec, kv_type: str) -> list[int]:
    """Bytes one token takes in each layer's K plus V cache."""
    rows = []
    for layer in model.layers:
        k = mm.kv_row_bytes(layer.n_head_kv * layer.head_dim_k, kv_type, model_dtype_bytes=model.activation_bytes)
        v = mm.kv_row_bytes(layer.n_head_kv * layer.head_dim_v, kv_type, model_dtype_bytes=model.activation_bytes)
        rows.append(k + v)
    return rows


def kv_bytes_per_token(model: ModelSpec, kv_type: str) -> int:
    """K plus V bytes of one token over all layers (2 × layers × KV heads × head dim × bytes)."""
    return sum(layer_kv_row_bytes(model, kv_type))


# -- layer split (llama.cpp, Ollama) -------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    layer: int | None  # None: the output layer
    weights: int
    kv: int


def _layer_items(model: ModelSpec, req: FitRequest) -> list[_Item]:
    assert req.context is not None and req.kv_type is not None
    rows = layer_kv_row_bytes(model, req.kv_type)
    items = []
    for layer, row in zip(model.layers, rows, strict=True):
        window = None if req.swa_full else layer.sliding_window
        if req.kv_unified:  # one stream of every slot's cells
            cells = mm.llama_cpp_kv_cells(req.context * req.parallel, 1, sliding_window=window, n_ubatch=req.n_ubatch)
        else:
            cells = mm.llama_cpp_kv_cells(req.context, req.parallel, sliding_window=window, n_ubatch=req.n_ubatch)
        items.append(_Item(layer.index, layer.weight_bytes, row * cells))
    items.append(_Item(None, model.output_layer_bytes, 0))
    return items


def _reserve_kv_ubatch(req: FitRequest) -> tuple[int, int]:
    """(n_kv, n_ubatch) of llama.cpp's worst-case reserve graph: the cells one stream holds (all of
    them with a unified cache) and a full micro-batch (at most the context)."""
    assert req.context is not None
    if req.kv_unified:
        n_kv = mm.pad(req.context * req.parallel, mm.LLAMA_CPP_CTX_PAD)
    else:
        n_kv = mm.pad(req.context, mm.LLAMA_CPP_CTX_PAD)
    return n_kv, min(req.n_ubatch, n_kv * req.parallel)


def llama_cpp_device_compute(model: ModelSpec, req: FitRequest) -> int:
    n_kv, n_ubatch = _reserve_kv_ubatch(req)
    return mm.LlamaCppCompute.device_bytes(
        n_embd=model.n_embd,
        n_head=model.n_head,
        n_ff=model.n_ff,
        n_kv=n_kv,
        n_ubatch=n_ubatch,
        flash_attention=bool(req.flash_attention),
    )


def llama_cpp_output_extra(model: ModelSpec, req: FitRequest) -> int:
    """What the device of the output layer needs on top of :func:`llama_cpp_device_compute`: the allocator's
    peak there is the larger of the layers' peak and the logits'."""
    _, n_ubatch = _reserve_kv_ubatch(req)
    output = mm.LlamaCppCompute.output_bytes(n_vocab=model.n_vocab, n_embd=model.n_embd, n_ubatch=n_ubatch)
    return max(output - llama_cpp_device_compute(model, req), 0)


def _pack(items: list[_Item], budgets: list[int], *, device_fixed: int, output_extra: int) -> list[list[_Item]] | None:
    """Items in order, contiguous, onto GPUs in order; each GPU used pays ``device_fixed`` once, the
    one with the output layer ``output_extra`` more. None when they do not all fit."""
    placed: list[list[_Item]] = [[] for _ in budgets]
    used = [0] * len(budgets)
    g = 0
    for item in items:
        need = item.weights + item.kv + (output_extra if item.layer is None else 0)
        while g < len(budgets):
            first = device_fixed if not placed[g] else 0
            if used[g] + first + need <= budgets[g]:
                used[g] += first + need
                placed[g].append(item)
                break
            g += 1
        else:
            return None
    return placed


def _layer_plan(
    model: ModelSpec, gpus: list[GpuBudget], req: FitRequest, budgets: list[int]
) -> tuple[int, list[list[_Item]]]:
    """The most layers that fit (llama.cpp --n-gpu-layers) and where they go."""
    items = _layer_items(model, req)
    overhead = mm.ENGINE_OVERHEAD[req.engine]
    device_fixed = llama_cpp_device_compute(model, req) + overhead.cuda_context_mib * mm.MIB
    logits = llama_cpp_output_extra(model, req)
    n_items = len(items)
    for ngl in range(n_items, 0, -1):
        # the last ngl layers (the head last of all) go to the GPUs; llama.cpp: i_gpu_start
        chosen = items[-ngl:] if ngl == n_items else items[n_items - 1 - ngl : n_items - 1]
        placed = _pack(chosen, budgets, device_fixed=device_fixed, output_extra=logits)
        if placed is None:
            continue
        if req.engine == "llama.cpp" and len(budgets) > 1:
            placed = _balanced(chosen, budgets, device_fixed, logits) or placed
        return ngl, placed
    return 0, [[] for _ in budgets]


def _balanced(items: list[_Item], budgets: list[int], device_fixed: int, logits: int) -> list[list[_Item]] | None:
    """The packing that leaves every GPU the same fraction of its budget free (bisection on the
    fraction): llama.cpp's own default also spreads layers over all GPUs."""
    lo, hi = 0.0, 1.0
    best = None
    for _ in range(30):
        mid = (lo + hi) / 2
        placed = _pack(items, [int(b * mid) for b in budgets], device_fixed=device_fixed, output_extra=logits)
        if placed is None:
            lo = mid
        else:
            best, hi = placed, mid
    return best


def _fit_layers(model: ModelSpec, gpus: list[GpuBudget], req: FitRequest, budgets: list[int]) -> FitResult:
    ngl, placed = _layer_plan(model, gpus, req, budgets)
    overhead = mm.ENGINE_OVERHEAD[req.engine]
    device_compute = llama_cpp_device_compute(model, req)
    logits = llama_cpp_output_extra(model, req)
    shares = []
    for gpu, budget, items in zip(gpus, budgets, placed, strict=True):
        share = GpuShare(gpu.index, gpu.name, gpu.total_bytes, budget)
        if items:
            share.layers = [it.layer for it in items if it.layer is not None]
            share.holds_output = any(it.layer is None for it in items)
            share.weights_bytes = sum(it.weights for it in items)
            share.kv_bytes = sum(it.kv for it in items)
            share.compute_bytes = device_compute + (logits if share.holds_output else 0)
            share.overhead_bytes = overhead.cuda_context_mib * mm.MIB
        shares.append(share)
    all_items = _layer_items(model, req)
    gpu_weights = sum(s.weights_bytes for s in shares)
    gpu_kv = sum(s.kv_bytes for s in shares)
    total_kv = sum(it.kv for it in all_items)
    n_items = model.n_layer + 1
    if ngl == n_items:
        verdict = "fits"
    elif ngl > 0:
        verdict = "partial_offload"
    else:
        verdict = "does_not_fit"
    used = [i for i, s in enumerate(shares) if s.layers or s.holds_output]
    split = None
    if len(gpus) > 1 and used:
        split = [len(s.layers) + (1 if s.holds_output else 0) for s in shares]
    notes = []
    if verdict == "partial_offload":
        notes.append(
            f"{n_items - ngl} of {n_items} layers (the head counted as one) stay on the CPU: "
            "generation runs at CPU memory speed for them"
        )
    # the CPU keeps the token embedding always, plus whatever was not offloaded
    cpu_weights = model.weights_bytes + model.output_duplicate_bytes - gpu_weights
    return FitResult(
        model=model,
        request=req,
        verdict=verdict,
        weights_bytes=model.weights_bytes,
        gpu_weights_bytes=gpu_weights,
        cpu_weights_bytes=cpu_weights,
        kv_bytes_per_token=kv_bytes_per_token(model, req.kv_type or "f16"),
        kv_bytes=total_kv,
        cpu_kv_bytes=total_kv - gpu_kv,
        compute_bytes=sum(s.compute_bytes for s in shares),
        overhead_bytes=sum(s.overhead_bytes for s in shares) + _engine_reserve_bytes(req) * len(gpus),
        reserve_bytes=req.reserve_mib * mm.MIB * len(gpus),
        gpus=shares,
        n_gpu_layers=ngl,
        cpu_layers=n_items - ngl,
        tensor_split=split,
        notes=notes,
    )


# -- tensor parallel (vLLM) ---------------------------------------------------------------------


def _tp_size(model: ModelSpec, n_gpus: int) -> int:
    """The largest tensor-parallel size ≤ the GPU count that the heads divide into (vLLM requires
    ``num_attention_heads % tp == 0``; KV heads are split or replicated)."""
    n_kv = max((layer.n_head_kv for layer in model.layers), default=1) or 1
    for tp in range(n_gpus, 0, -1):
        if model.n_head % tp == 0 and (n_kv % tp == 0 or tp % n_kv == 0):
            return tp
    return 1


def vllm_kv_bytes(model: ModelSpec, kv_type: str, context: int, parallel: int) -> int:
    """KV cache for ``parallel`` sequences of ``context`` tokens; sliding-window layers keep their
    window only (vLLM's hybrid KV cache manager)."""
    total = 0
    for layer, row in zip(model.layers, layer_kv_row_bytes(model, kv_type), strict=True):
        tokens = context if layer.sliding_window is None else min(context, layer.sliding_window)
        total += row * mm.vllm_kv_tokens(tokens)
    return total * parallel


def _fit_vllm(model: ModelSpec, gpus: list[GpuBudget], req: FitRequest, budgets: list[int]) -> FitResult:
    assert req.context is not None and req.kv_type is not None
    tp = _tp_size(model, len(gpus))
    chosen = sorted(range(len(gpus)), key=lambda i: -budgets[i])[:tp]
    chosen.sort()
    total_min = min(gpus[i].total_bytes for i in chosen)
    budget_min = min(budgets[i] for i in chosen)
    weights_rank = -(-model.weights_bytes // tp)
    activation = mm.vllm_activation_bytes(
        n_embd=model.n_embd,
        n_ff=model.n_ff,
        n_vocab=model.n_vocab,
        total_mib=total_min // mm.MIB,
        tp=tp,
        max_model_len=req.context,
        version=req.vllm_version,
    )
    non_torch = mm.VLLM_NON_TORCH_MIB * mm.MIB
    # CUDA graphs are captured after the KV cache is sized: above the utilization limit
    graphs = mm.VLLM_CUDA_GRAPH_MIB * mm.MIB
    fixed = non_torch + graphs
    inside = weights_rank + activation + non_torch
    kv_total = vllm_kv_bytes(model, req.kv_type, req.context, req.parallel)
    kv_rank = -(-kv_total // tp)
    notes: list[str] = []
    if req.gpu_memory_utilization is not None:
        util = req.gpu_memory_utilization
    else:
        # the smallest utilization (in hundredths, as people write it) that holds the plan
        util = min(max(math.ceil((inside + kv_rank) * 100 / total_min) / 100, 0.05), 1.0)
    limit = int(total_min * util)
    kv_room_rank = max(limit - inside, 0)
    capacity = mm.vllm_kv_capacity_tokens(kv_room_rank, -(-kv_bytes_per_token(model, req.kv_type) // tp))
    fits = inside + kv_rank <= limit and limit + graphs <= budget_min
    if limit > budget_min:
        notes.append(
            f"--gpu-memory-utilization {util} asks for {limit / mm.GIB:.1f} GiB per GPU, "
            f"more than the {budget_min / mm.GIB:.1f} GiB free: vLLM refuses to start"
        )
    elif capacity < req.context and not model.sliding_window_layers:
        notes.append(
            f"vLLM refuses to start: its KV cache would hold {capacity} tokens, less than one sequence of "
            f"--max-model-len {req.context}"
        )
    # the most sequences: with no utilization given, everything free on the GPU but the CUDA graphs
    free_room = max(budget_min - graphs - inside, 0)
    kv_room = (free_room if req.gpu_memory_utilization is None else kv_room_rank) * tp
    shares = []
    for i, (gpu, budget) in enumerate(zip(gpus, budgets, strict=True)):
        share = GpuShare(gpu.index, gpu.name, gpu.total_bytes, budget)
        if i in chosen:
            share.layers = [layer.index for layer in model.layers]
            share.holds_output = True
            share.weights_bytes = weights_rank
            share.kv_bytes = kv_rank
            share.compute_bytes = activation
            share.overhead_bytes = fixed
        shares.append(share)
    per_seq = vllm_kv_bytes(model, req.kv_type, req.context, 1)
    result = FitResult(
        model=model,
        request=req,
        verdict="fits" if fits else "does_not_fit",
        weights_bytes=model.weights_bytes,
        gpu_weights_bytes=weights_rank * tp,
        cpu_weights_bytes=0,
        kv_bytes_per_token=kv_bytes_per_token(model, req.kv_type),
        kv_bytes=kv_total,
        cpu_kv_bytes=0,
        compute_bytes=activation * tp,
        overhead_bytes=fixed * tp + _engine_reserve_bytes(req) * len(gpus),
        reserve_bytes=req.reserve_mib * mm.MIB * len(gpus),
        gpus=shares,
        tensor_parallel_size=tp,
        gpu_memory_utilization=round(util, 2),
        notes=notes,
    )
    result.max_parallel = min(kv_room // per_seq, MAX_PARALLEL) if per_seq else None
    result.kv_capacity_tokens = capacity
    result.max_concurrency = round(capacity / req.context, 2)
    if not fits and weights_rank + activation + fixed > budget_min:
        notes.append("the weights alone do not fit: vLLM has no partial offload here (see --cpu-offload-gb)")
    return result


# -- the public functions -----------------------------------------------------------------------


def _engine_reserve_bytes(req: FitRequest) -> int:
    """What the engine keeps free on each GPU by itself (part of its overhead)."""
    return mm.ENGINE_OVERHEAD[req.engine].reserve_mib * mm.MIB


def _reserve_bytes(req: FitRequest) -> int:
    """Kept free on each GPU: the engine's own reserve and the user's --reserve-mib."""
    return req.reserve_mib * mm.MIB + _engine_reserve_bytes(req)


def _budgets(gpus: list[GpuBudget], req: FitRequest, used: list[int] | None = None) -> list[int]:
    reserve = _reserve_bytes(req)
    taken = used or [0] * len(gpus)
    return [max(g.usable_bytes - reserve - u, 0) for g, u in zip(gpus, taken, strict=True)]


def _evaluate(model: ModelSpec, gpus: list[GpuBudget], req: FitRequest, used: list[int] | None) -> FitResult:
    budgets = _budgets(gpus, req, used)
    if req.engine in LAYER_ENGINES:
        return _fit_layers(model, gpus, req, budgets)
    return _fit_vllm(model, gpus, req, budgets)


def _largest(lo: int, hi: int, ok: object) -> int | None:
    """The largest n in [lo, hi] with ok(n), for a monotone ok; None when not even lo."""
    assert callable(ok)
    if hi < lo or not ok(lo):
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def fit_model(
    model: ModelSpec,
    gpus: list[GpuBudget],
    request: FitRequest | None = None,
    *,
    used_bytes: list[int] | None = None,
) -> FitResult:
    """Fit ``model`` on ``gpus``: the plan at the requested context/parallelism, the largest
    context at that parallelism and the largest parallelism at that context.

    ``used_bytes`` (one per GPU) is memory other models of a stack already hold.
    """
    if not gpus:
        raise UsageError("no GPU to fit on: give --vram-gib, --gpu NAME or --from SNAPSHOT")
    req = (request or FitRequest()).resolved(model)
    result = _evaluate(model, gpus, req, used_bytes)

    def fits_context(ctx: int) -> bool:
        return _evaluate(model, gpus, replace(req, context=ctx), used_bytes).fits

    def fits_parallel(par: int) -> bool:
        return _evaluate(model, gpus, replace(req, parallel=par), used_bytes).fits

    result.max_context = _largest(min(MIN_CONTEXT, model.context_length), model.context_length, fits_context)
    if req.engine in LAYER_ENGINES or result.max_parallel is None:
        result.max_parallel = _largest(1, MAX_PARALLEL, fits_parallel)
    elif not result.fits:
        result.max_parallel = None
    if req.context is not None and req.context > model.context_length:
        result.notes.append(
            f"context {req.context} is beyond the {model.context_length} tokens the model was trained for"
        )
    return result


@dataclass
class StackResult:
    """Several models resident together (Ollama with OLLAMA_MAX_LOADED_MODELS, several servers)."""

    results: list[FitResult]
    gpus: list[GpuBudget]
    free_after_bytes: list[int]

    @property
    def fits(self) -> bool:
        return all(r.fits for r in self.results)

    def to_dict(self) -> dict[str, object]:
        return {
            "fits": self.fits,
            "models": [r.to_dict() for r in self.results],
            "gpus": [
                {"index": g.index, "name": g.name, "total_bytes": g.total_bytes, "free_after_bytes": free}
                for g, free in zip(self.gpus, self.free_after_bytes, strict=True)
            ],
        }


def fit_stack(models: list[ModelSpec], gpus: list[GpuBudget], request: FitRequest | None = None) -> StackResult:
    """Fit models one after the other, each in what the ones before it left (each its own process:
    its own CUDA context on every GPU it uses)."""
    used = [0] * len(gpus)
    results = []
    for model in models:
        result = fit_model(model, gpus, request, used_bytes=used)
        used = [u + share.used_bytes for u, share in zip(used, result.gpus, strict=True)]
        results.append(result)
    req = (request or FitRequest()).resolved(models[0]) if models else FitRequest()
    free = [b for b in _budgets(gpus, req, used)]
    return StackResult(results=results, gpus=gpus, free_after_bytes=free)
