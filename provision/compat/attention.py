"""The attention-kernel libraries in ``compat check``: flashinfer-python and xformers against torch and the GPUs.

Part of :mod:`provision.compat.verdict`'s checker (it adds its problems to the same report).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from packaging.version import Version

from provision.compat.matrix import Matrix, TorchBuild, cuda_major, variant_cuda

if TYPE_CHECKING:
    from provision.compat.verdict import Checker

#: an AOT flashinfer wheel's local tag: +cu128torch2.7
_FI_LOCAL = re.compile(r"^cu(\d{3})torch(\d+)\.(\d+)$")


def check_flashinfer(c: Checker, torch: TorchBuild | None) -> None:
    """flashinfer-python against torch (its own metadata, the extras asked for, AOT wheels' tags) and the GPUs."""
    text = c.t.packages.get("flashinfer-python")
    if text is None:
        return
    rng = c.m.flashinfer(text)
    if rng is None:
        c.not_covered("flashinfer-python", text, "flashinfer")
        return
    label = f"flashinfer-python {text}"
    published, requires_torch = c.m.flashinfer_published(text)
    if not published:
        c.add(
            "unknown",
            "flashinfer_unknown",
            label,
            f"flashinfer-python {Version(text).public} is not a release the matrix has read from PyPI",
            c.m.flashinfer_pins_source,
            "check the version; maintainers: gpuprov compat refresh --package flashinfer-python",
        )
        return
    torch_text = c.t.packages.get("torch")
    local = Version(text).local
    m = _FI_LOCAL.match(local or "")
    if torch_text is not None:
        torch_v = Version(Version(torch_text).public)
        pair = f"{label} ↔ torch {torch_text}"
        c.checked.append(pair)
        if requires_torch is not None and not requires_torch.contains(torch_v, prereleases=True):
            c.add(
                "incompatible",
                "flashinfer_torch",
                pair,
                f"flashinfer-python {Version(text).public} requires torch{requires_torch} in its own metadata "
                "(pip and uv refuse the combination)",
                c.m.flashinfer_pins_source,
                flashinfer_fix(c.m, torch_v),
            )
        elif extra_req := [
            (e, r)
            for e, r in c.m.flashinfer_extra_torch(text, c.t.extras.get("flashinfer-python", frozenset()))
            if not r.contains(torch_v, prereleases=True)
        ]:
            extra, req = extra_req[0]
            c.add(
                "incompatible",
                "flashinfer_torch",
                pair,
                f"flashinfer-python[{extra}] {Version(text).public} requires torch{req} under its [{extra}] extra "
                "(pip and uv refuse the combination when the extra is asked for)",
                c.m.flashinfer_pins_source,
                f"install torch{req}, or flashinfer-python without the [{extra}] extra",
            )
        elif m and (torch_v.major, torch_v.minor) != (int(m.group(2)), int(m.group(3))):
            c.add(
                "incompatible",
                "flashinfer_torch",
                pair,
                f"this flashinfer wheel is built for torch {m.group(2)}.{m.group(3)} (local tag +{local}): "
                'its kernels fail to load with another torch ("undefined symbol")',
                rng.source,
                flashinfer_fix(c.m, torch_v),
            )
        elif not rng.torch.contains(torch_v, prereleases=True):
            c.add(
                "incompatible",
                "flashinfer_torch",
                pair,
                f"flashinfer {Version(text).public} supports torch {rng.torch}",
                rng.source,
                flashinfer_fix(c.m, torch_v),
            )
        if m and torch is not None and int(m.group(1)[:-1]) != cuda_major(torch.cuda):
            c.add(
                "incompatible",
                "flashinfer_torch_cuda",
                pair,
                f"this flashinfer wheel is built for CUDA {variant_cuda('cu' + m.group(1))}, torch "
                f"{torch.variant} for CUDA {torch.cuda}",
                rng.source,
                f"install the +cu{torch.cuda.replace('.', '')}torch{torch_v.major}.{torch_v.minor} wheel",
            )
    for gpu in c.t.gpus:
        pair = f"{label} ↔ {gpu.label} (cc {gpu.compute_capability})"
        c.checked.append(pair)
        if Version(gpu.compute_capability) < Version(rng.min_cc):
            c.add(
                "warning",
                "flashinfer_gpu",
                pair,
                f'FlashInfer requires compute capability ≥ {rng.min_cc} ("FlashInfer requires GPUs with sm75 '
                'or higher"); engines fall back to other attention backends',
                rng.source,
                "do not select the FLASHINFER attention backend on this GPU",
            )


def flashinfer_fix(m: Matrix, torch_v: Version) -> str:
    pinned = [r for r in m.vllm_newest_first() if r.flashinfer and Version(r.torch) == torch_v]
    if pinned:
        rel = pinned[0]
        return f"install flashinfer-python=={rel.flashinfer} (what vLLM {rel.version} pins for torch {torch_v})"
    ranges = [r for r in m.flashinfer_ranges if r.torch.contains(torch_v, prereleases=True)]
    if ranges:
        return f"install a flashinfer release in {ranges[-1].versions} (supports torch {ranges[-1].torch})"
    return f"no flashinfer release in the matrix supports torch {torch_v}"


def check_xformers(c: Checker) -> None:
    """xformers against the torch it is built for."""
    text = c.t.packages.get("xformers")
    if text is None:
        return
    rel = c.m.xformers(text)
    if rel is None:
        c.not_covered("xformers", text, "xformers")
        return
    torch_text = c.t.packages.get("torch")
    if torch_text is None:
        return
    torch_v = Version(Version(torch_text).public)
    pair = f"xformers {text} ↔ torch {torch_text}"
    c.checked.append(pair)
    if not rel.torch.contains(torch_v, prereleases=True):
        match = [r for r in c.m.xformers_releases.values() if str(r.torch) == f"=={torch_v}"]
        fix = (
            f"install xformers=={match[-1].version} (built for torch {torch_v})"
            if match
            else (f"install torch{rel.torch}")
        )
        c.add(
            "incompatible",
            "xformers_torch",
            pair,
            f'xformers {text} is built for torch {rel.torch} ("xFormers can\'t load C++/CUDA extensions")',
            rel.source,
            fix,
        )
