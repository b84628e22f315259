"""What ``gpuprov fit`` answers: each GPU's share (:class:`GpuShare`), the plan for one model
(:class:`FitResult`) and for several resident together (:class:`StackResult`), each with its JSON form."""

from __future__ import annotations

from dataclasses import dataclass, field

from provision.engineflags import ENGINE_NAMES
from provision.fit.model import ModelSpec
from provision.fit.request import FitRequest, GpuBudget

#: the largest parallelism the searches try
MAX_PARALLEL = 256


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
            "engine": ENGINE_NAMES[req.engine],
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
