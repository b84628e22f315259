"""Layer split (llama.cpp, Ollama): whole layers go to one GPU each, in order, with their KV cache.

llama.cpp keeps the token embedding on the CPU and puts the output head on the device of "layer
n_layer" (llama-model.cpp ``load_tensors``). ``--n-gpu-layers N`` offloads the *last* N layers (the
head counts as one more); layers that do not fit stay on the CPU with their KV cache. Every GPU used
pays the compute buffer (the graph allocator's peak, :class:`~provision.fit.memory_model.LlamaCppCompute`)
and a CUDA context once.
"""

from __future__ import annotations

from dataclasses import dataclass

from provision.engineflags import LLAMA_CPP_ENGINE
from provision.fit import memory_model as mm
from provision.fit.kv import kv_bytes_per_token, layer_kv_row_bytes
from provision.fit.model import ModelSpec
from provision.fit.request import FitRequest, GpuBudget, engine_reserve_bytes
from provision.fit.result import FitResult, GpuShare


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
        if req.engine == LLAMA_CPP_ENGINE and len(budgets) > 1:
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


def fit_layers(model: ModelSpec, gpus: list[GpuBudget], req: FitRequest, budgets: list[int]) -> FitResult:
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
        overhead_bytes=sum(s.overhead_bytes for s in shares) + engine_reserve_bytes(req) * len(gpus),
        reserve_bytes=req.reserve_mib * mm.MIB * len(gpus),
        gpus=shares,
        n_gpu_layers=ngl,
        cpu_layers=n_items - ngl,
        tensor_split=split,
        notes=notes,
    )
