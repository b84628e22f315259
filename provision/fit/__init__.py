"""``gpuprov fit``: will a model run on these GPUs, with which context, parallelism and flags.

Public surface (what ``plan``/``apply`` call):

- :func:`read_model` — a GGUF file or Hugging Face directory → :class:`ModelSpec`;
- :func:`fit_model` / :func:`fit_stack` — the pure fit of one model / several resident together;
- :func:`gpus_from_snapshot`, :func:`gpus_from_vram`, :func:`gpus_from_names` — the GPUs to fit on.

The memory-model constants and their sources are all in :mod:`provision.fit.memory_model`.
"""

from __future__ import annotations

from provision.fit.fitting import fit_model, fit_stack
from provision.fit.gpus import gpus_from_names, gpus_from_snapshot, gpus_from_vram, parse_vram_gib
from provision.fit.model import LayerSpec, ModelSpec
from provision.fit.reading import read_model
from provision.fit.request import FitRequest, GpuBudget
from provision.fit.result import FitResult, StackResult

__all__ = [
    "FitRequest",
    "FitResult",
    "GpuBudget",
    "LayerSpec",
    "ModelSpec",
    "StackResult",
    "fit_model",
    "fit_stack",
    "gpus_from_names",
    "gpus_from_snapshot",
    "gpus_from_vram",
    "parse_vram_gib",
    "read_model",
]
