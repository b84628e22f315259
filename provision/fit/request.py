"""What ``gpuprov fit`` is asked: the GPUs (:class:`GpuBudget`) and the engine settings
(:class:`FitRequest`, checked and completed with the engine's defaults by :meth:`FitRequest.resolved`)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from provision.engineflags import ENGINE_NAMES, LLAMA_CPP_ENGINE, OLLAMA_ENGINE, engine_id
from provision.errors import UsageError
from provision.fit import memory_model as mm
from provision.fit.model import ModelSpec

#: engines that place whole layers on GPUs (the rest split every layer: tensor parallel)
LAYER_ENGINES = (LLAMA_CPP_ENGINE, OLLAMA_ENGINE)


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
    #: an engine id of :mod:`provision.engineflags` (its name or command word too: :meth:`resolved` takes any)
    engine: str = LLAMA_CPP_ENGINE
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
        engine = engine_id(self.engine)
        if engine not in mm.ENGINES:
            names = ", ".join(ENGINE_NAMES[e] for e in mm.ENGINES)
            raise UsageError(f"unknown engine {self.engine!r}: use one of {names}")
        kv = (self.kv_type or mm.DEFAULT_KV_CACHE_TYPE[engine]).lower()
        if kv not in mm.KV_CACHE_TYPES[engine]:
            raise UsageError(
                f"{ENGINE_NAMES[engine]} has no KV cache type {kv!r}: use one of {', '.join(mm.KV_CACHE_TYPES[engine])}"
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
            flash = engine == LLAMA_CPP_ENGINE or (engine == OLLAMA_ENGINE and kv != "f16")
        if engine in LAYER_ENGINES and kv not in ("f16", "bf16", "f32") and not flash:
            raise UsageError(f"a quantized KV cache ({kv}) needs flash attention in {ENGINE_NAMES[engine]}")
        return replace(self, engine=engine, kv_type=kv, context=context, flash_attention=flash)


def engine_reserve_bytes(req: FitRequest) -> int:
    """What the engine keeps free on each GPU by itself (part of its overhead)."""
    return mm.ENGINE_OVERHEAD[req.engine].reserve_mib * mm.MIB


def reserve_bytes(req: FitRequest) -> int:
    """Kept free on each GPU: the engine's own reserve and the user's --reserve-mib."""
    return req.reserve_mib * mm.MIB + engine_reserve_bytes(req)
