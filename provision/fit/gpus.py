"""The GPUs a fit is for: from a snapshot, from sizes the user types, or from GPU names."""

from __future__ import annotations

import math

from provision.errors import UsageError
from provision.fit.memory_model import GIB, MIB
from provision.fit.request import GpuBudget
from provision.snapshot import Snapshot

#: larger than any GPU made: a typo, not a plan
MAX_VRAM_GIB = 4096.0


def gpus_from_snapshot(snapshot: Snapshot) -> list[GpuBudget]:
    """Every GPU of the snapshot whose memory NVML reported; free memory counts when known."""
    gpus = []
    for gpu in snapshot.gpus:
        if not gpu.vram_total_mib:
            continue
        free = gpu.vram_free_mib * MIB if gpu.vram_free_mib is not None else None
        gpus.append(GpuBudget(index=gpu.index, name=gpu.name, total_bytes=gpu.vram_total_mib * MIB, free_bytes=free))
    if not gpus:
        reason = snapshot.driver.nvml.message or snapshot.driver.nvml.kind
        raise UsageError(
            f"no GPU with a known memory size in the snapshot ({reason}): plan with --vram-gib N or --gpu NAME"
        )
    return gpus


def parse_vram_gib(values: list[str]) -> list[float]:
    """``--vram-gib 24 --vram-gib 12,24`` → [24.0, 12.0, 24.0]; UsageError on anything else."""
    sizes = []
    for value in values:
        for part in value.split(","):
            text = part.strip()
            try:
                size = float(text)
            except ValueError:
                raise UsageError(f"--vram-gib {part!r} is not a number of GiB (e.g. 24 or 12,24,24)") from None
            if not math.isfinite(size) or size <= 0 or size > MAX_VRAM_GIB:
                raise UsageError(f"--vram-gib {part!r} must be a size in GiB between 0 and {MAX_VRAM_GIB:g}")
            sizes.append(size)
    if not sizes:
        raise UsageError("--vram-gib needs a size in GiB")
    return sizes


def gpus_from_vram(sizes_gib: list[float]) -> list[GpuBudget]:
    return [
        GpuBudget(index=i, name=f"{size:g} GiB GPU", total_bytes=int(size * GIB)) for i, size in enumerate(sizes_gib)
    ]


def gpus_from_names(names: list[str]) -> list[GpuBudget]:
    """GPUs by catalog name (``--gpu "RTX 4090 Laptop"``), in the order given."""
    from provision.gpus import lookup_gpu

    gpus = []
    for i, name in enumerate(names):
        spec = lookup_gpu(name)
        if spec is None:
            raise UsageError(f"unknown GPU {name!r}: see the catalog names, or give its size with --vram-gib")
        gpus.append(GpuBudget(index=i, name=spec.name, total_bytes=spec.vram_mib * MIB))
    return gpus
