"""torch in ``compat check``: its build (CUDA variant, CPU-only, another local tag) against the matrix, the driver
and the GPUs, and the build to install instead.

Part of :mod:`provision.compat.verdict`'s checker (it adds its problems to the same report).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from packaging.version import Version

from provision.compat.matrix import TorchBuild, runs_on

if TYPE_CHECKING:
    from provision.compat.verdict import Checker


def check_torch(c: Checker) -> TorchBuild | None:
    """torch against the matrix (its build: CUDA, CPU, another local tag), the driver and the GPUs; the build found."""
    text = c.t.packages.get("torch")
    if text is None:
        return None
    version = Version(text)
    public, local = version.public, version.local
    if public not in c.m.torch_versions:
        c.not_covered("torch", text, "torch", "gpuprov compat plan proposes a covered version")
        return None
    if local == "cpu" or c.t.torch_cpu:
        if c.t.gpus:
            c.add(
                "incompatible",
                "torch_cpu",
                f"torch {text} ↔ {c.t.gpus[0].label}",
                f"torch {text} is a CPU-only build: it cannot use the GPU",
                "PyTorch install matrix (pytorch.org/get-started)",
                "install a CUDA build (gpuprov compat plan)",
            )
        return None
    if local and not re.fullmatch(r"cu\d{3}", local):
        c.add(
            "unknown",
            "torch_unknown",
            f"torch {text}",
            f"torch {text} is not a CUDA build (local tag +{local}): the matrix covers NVIDIA CUDA builds "
            "(+cuXYZ), CPU builds (+cpu) and the plain PyPI wheel",
            "compat.toml [torch]",
            "gpuprov compat plan proposes a CUDA build for this GPU",
        )
        return None
    variant = local
    if variant is None and c.t.torch_cuda:
        variant = "cu" + c.t.torch_cuda.replace(".", "")
    build = c.m.torch_build(public, variant)
    if build is None:
        published = ", ".join(b.variant for b in c.m.torch_variants(public))
        c.add(
            "unknown",
            "torch_unknown",
            f"torch {text}",
            f"torch {public} has no {variant} build in the matrix (published: {published})",
            "compat.toml [torch]",
            f"use one of: {published}",
        )
        return None
    label = f"torch {build.version}+{build.variant}"
    c.runtime_vs_driver(label, build.cuda, "torch_driver", _torch_driver_alternative(c, build))
    c.gpus_vs_archs(label, build.archs, build.source, "torch_gpu", _torch_gpu_fix(c, build))
    return build


def _torch_driver_alternative(c: Checker, build: TorchBuild) -> str:
    if c.driver is None:
        return ""
    fits = []
    for b in c.m.torch_variants(build.version):
        floor = c.m.driver_floor(b.cuda)
        covers = all(runs_on(b.archs, g.compute_capability) for g in c.t.gpus)
        if floor is not None and c.driver >= Version(floor[0]) and covers:
            fits.append(b)
    if not fits:
        return ""
    b = max(fits, key=lambda b: Version(b.cuda))
    return f"install {b.requirement}" + (f" from {b.index}" if b.index else "")


def _driver_runs(c: Checker, cuda: str) -> bool:
    """Can this host's driver start a runtime of this CUDA version (unknown driver: assume yes)?"""
    if c.driver is None:
        return True
    floor = c.m.driver_floor(cuda)
    return floor is not None and c.driver >= Version(floor[0])


def _torch_gpu_fix(c: Checker, build: TorchBuild) -> str:
    for gpu in c.t.gpus:
        if runs_on(build.archs, gpu.compute_capability):
            continue
        same = [b for b in c.m.torch_variants(build.version) if runs_on(b.archs, gpu.compute_capability)]
        if same:
            b = max(same, key=lambda b: Version(b.cuda))
            return f"install {b.requirement}" + (f" from {b.index}" if b.index else "")
        others = [
            b for b in c.m.torch_builds.values() if runs_on(b.archs, gpu.compute_capability) and _driver_runs(c, b.cuda)
        ]
        if others:
            b = max(others, key=lambda b: (Version(b.version), b.pypi, Version(b.cuda)))
            return f"no torch {build.version} build supports cc {gpu.compute_capability}: install {b.requirement}" + (
                f" from {b.index}" if b.index else ""
            )
        return f"no torch build in the matrix supports cc {gpu.compute_capability}"
    return ""
