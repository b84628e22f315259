"""vLLM in ``compat check``: its release against torch (version, CUDA major), the flashinfer-python and xformers
it pins (extras included), the driver and the GPUs, and the release to install instead.

Part of :mod:`provision.compat.verdict`'s checker (it adds its problems to the same report).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from packaging.version import Version

from provision.compat.matrix import TorchBuild, cuda_major, runs_on

if TYPE_CHECKING:
    from provision.compat.verdict import Checker


def check_vllm(c: Checker, torch: TorchBuild | None) -> None:
    """vLLM against torch (version and CUDA major), its flashinfer/xformers pins, the driver and the GPUs."""
    text = c.t.packages.get("vllm")
    if text is None:
        return
    rel = c.m.vllm(text)
    if rel is None:
        c.not_covered("vllm", text, "vllm", "gpuprov compat plan proposes a covered version")
        return
    label = f"vllm {rel.version}"
    torch_text = c.t.packages.get("torch")
    if torch_text is not None:
        pair = f"{label} ↔ torch {torch_text}"
        c.checked.append(pair)
        if Version(torch_text).public != rel.torch:
            newest = [r for r in c.m.vllm_newest_first() if r.torch == Version(torch_text).public]
            alt = (
                f", or vllm=={newest[0].version} (the newest vLLM built for torch {newest[0].torch})" if newest else ""
            )
            c.add(
                "incompatible",
                "vllm_torch",
                pair,
                f"vLLM {rel.version} is built against torch {rel.torch} (its _C extension fails to import "
                'with another torch: "undefined symbol")',
                rel.source,
                f"install torch=={rel.torch}{alt}",
            )
        if torch is not None and cuda_major(torch.cuda) != cuda_major(rel.cuda):
            c.add(
                "incompatible",
                "vllm_torch_cuda",
                f"{label} (CUDA {rel.cuda}) ↔ torch {torch_text}",
                f"vLLM {rel.version}'s wheel is built with CUDA {rel.cuda}; torch {torch.variant} brings a "
                f"CUDA {torch.cuda} runtime (libcudart.so.{cuda_major(rel.cuda)} is missing)",
                rel.build_source,
                f"install a CUDA {cuda_major(rel.cuda)}.x build of torch {rel.torch}",
            )
    if (
        rel.flashinfer
        and not rel.flashinfer_extra
        and "flashinfer-python" not in c.t.packages
        and not c.m.flashinfer_published(rel.flashinfer)[0]
    ):
        c.checked.append(f"{label} ↔ flashinfer-python {rel.flashinfer}")
        c.add(
            "incompatible",
            "vllm_unresolvable",
            f"{label} ↔ flashinfer-python {rel.flashinfer}",
            f"vLLM {rel.version} requires flashinfer-python=={rel.flashinfer}, which is not on PyPI: pip and uv "
            "cannot install it",
            f"{rel.source}; {c.m.flashinfer_pins_source}",
            _vllm_installable_fix(c, rel.torch),
        )
    c.runtime_vs_driver(f"{label} (CUDA {rel.cuda})", rel.cuda, "vllm_driver")
    c.gpus_vs_archs(label, rel.archs, rel.build_source, "vllm_gpu", _vllm_gpu_fix(c))
    for dist, pin, extra in (
        ("xformers", rel.xformers, False),
        ("flashinfer-python", rel.flashinfer, rel.flashinfer_extra),
    ):
        have = c.t.packages.get(dist)
        if have is None or pin is None:
            continue
        pair = f"{label} ↔ {dist} {have}"
        extra_name = dist.split("-")[0]
        if extra and extra_name not in c.t.extras.get("vllm", frozenset()):
            # pip and uv enforce a requirement under an extra only when the extra is asked for: no constraint
            c.checked.append(
                f"{pair} (vLLM {rel.version} pins {dist}=={pin} only under its [{extra_name}] extra, "
                f'not asked for; judge by it: --with "vllm[{extra_name}]=={rel.version}")'
            )
            continue
        c.checked.append(pair)
        if Version(Version(have).public) != Version(pin):
            how = f"its [{dist.split('-')[0]}] extra pins" if extra else "it pins"
            c.add(
                "incompatible",
                f"vllm_{dist.split('-')[0]}",
                pair,
                f"vLLM {rel.version} expects {dist} {pin} ({how} {dist}=={pin})",
                rel.source,
                f"install {dist}=={pin}",
            )


def _vllm_installable_fix(c: Checker, torch: str) -> str:
    ok = [
        r
        for r in c.m.vllm_newest_first()
        if r.torch == torch
        and not (r.flashinfer and not r.flashinfer_extra and not c.m.flashinfer_published(r.flashinfer)[0])
    ]
    return f"install vllm=={ok[0].version} (the newest installable vLLM for torch {torch})" if ok else ""


def _vllm_gpu_fix(c: Checker) -> str:
    ccs = c.t.cc_list()
    ok = [r for r in c.m.vllm_newest_first() if all(runs_on(r.archs, cc) for cc in ccs)]
    if not ok:
        return "no vLLM release supports this GPU: use llama.cpp (gpuprov compat plan --engine llama-cpp)"
    return f"install vllm=={ok[0].version} (the newest release with kernels for cc {', '.join(ccs)})"
