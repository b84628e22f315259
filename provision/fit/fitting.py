"""Does a model fit on these GPUs, with which context, parallelism and engine settings.

:func:`fit_model` is the pure core (``gpuprov fit``, and ``plan``/``apply`` to check a profile's
serving settings): a :class:`~provision.fit.model.ModelSpec`, a list of :class:`GpuBudget` and a
:class:`FitRequest` in, a :class:`FitResult` out, with the largest context and parallelism that fit.
:func:`fit_stack` checks several models that are to be resident together.

Two ways of using several GPUs, as the engines do: whole **layers** per GPU (llama.cpp, Ollama:
:mod:`provision.fit.layers`) and **tensor parallel** (vLLM: :mod:`provision.fit.tensor_parallel`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from provision.errors import UsageError
from provision.fit.layers import fit_layers
from provision.fit.model import ModelSpec
from provision.fit.request import LAYER_ENGINES, FitRequest, GpuBudget, reserve_bytes
from provision.fit.result import MAX_PARALLEL, FitResult, StackResult
from provision.fit.tensor_parallel import fit_vllm

#: the smallest context worth serving
MIN_CONTEXT = 256


def _budgets(gpus: list[GpuBudget], req: FitRequest, used: list[int] | None = None) -> list[int]:
    reserve = reserve_bytes(req)
    taken = used or [0] * len(gpus)
    return [max(g.usable_bytes - reserve - u, 0) for g, u in zip(gpus, taken, strict=True)]


def _evaluate(model: ModelSpec, gpus: list[GpuBudget], req: FitRequest, used: list[int] | None) -> FitResult:
    budgets = _budgets(gpus, req, used)
    if req.engine in LAYER_ENGINES:
        return fit_layers(model, gpus, req, budgets)
    return fit_vllm(model, gpus, req, budgets)


def _largest(lo: int, hi: int, ok: Callable[[int], bool]) -> int | None:
    """The largest n in [lo, hi] with ok(n), for a monotone ok; None when not even lo."""
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
