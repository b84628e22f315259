"""Tensor parallel (vLLM): every layer is split over ``--tensor-parallel-size`` GPUs; each GPU holds
1/tp of the weights and KV cache, and the smallest GPU sets the budget. vLLM gives its KV cache what
``--gpu-memory-utilization`` leaves after the weights, the profile run's activation peak and non-torch
memory (:func:`~provision.fit.memory_model.vllm_activation_bytes`); CUDA graphs come on top.
"""

from __future__ import annotations

import math

from provision.fit import memory_model as mm
from provision.fit.kv import kv_bytes_per_token, layer_kv_row_bytes
from provision.fit.model import ModelSpec
from provision.fit.request import FitRequest, GpuBudget, engine_reserve_bytes
from provision.fit.result import MAX_PARALLEL, FitResult, GpuShare


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


def fit_vllm(model: ModelSpec, gpus: list[GpuBudget], req: FitRequest, budgets: list[int]) -> FitResult:
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
    non_torch = mm.vllm_non_torch_bytes(tp)
    graphs = mm.VLLM_CUDA_GRAPH_MIB * mm.MIB
    fixed = non_torch + graphs
    # CUDA graphs are captured after the KV cache is sized; before 0.21 they land above the utilization
    # limit, from 0.21 on their estimate is kept inside it (out of the KV cache)
    above = 0 if mm.vllm_graphs_in_budget(req.vllm_version) else graphs
    inside = weights_rank + activation + non_torch + (graphs - above)
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
    fits = inside + kv_rank <= limit and limit + above <= budget_min
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
    free_room = max(budget_min - above - inside, 0)
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
        overhead_bytes=fixed * tp + engine_reserve_bytes(req) * len(gpus),
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
