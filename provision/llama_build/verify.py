"""Verifying a build: CUDA linked, the requested kernels present (cuobjdump),
``llama_supports_gpu_offload()``, and optionally one real completion."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provision.llama_build.buildplan import BuildError, BuildPlan

# -- verification ----------------------------------------------------------------------------------

_INSPECT = r"""
import importlib.util, json, sys
spec = importlib.util.find_spec("llama_cpp")
out = {"package_dir": None, "libs": []}
if spec and spec.submodule_search_locations:
    import os
    pkg = list(spec.submodule_search_locations)[0]
    out["package_dir"] = pkg
    lib = os.path.join(pkg, "lib")
    if os.path.isdir(lib):
        out["libs"] = sorted(os.path.join(lib, n) for n in os.listdir(lib) if ".so" in n)
print(json.dumps(out))
"""

_OFFLOAD = "import llama_cpp, json; print(json.dumps(bool(llama_cpp.llama_supports_gpu_offload())))"

_COMPLETE = r"""
import json, sys, time
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], n_ctx=256, n_gpu_layers=int(sys.argv[2]), verbose=False, seed=1)
t = time.monotonic()
out = llm("The capital of France is", max_tokens=8, temperature=0.0)
print(json.dumps({"text": out["choices"][0]["text"], "tokens": out["usage"]["completion_tokens"],
                  "seconds": time.monotonic() - t}))
"""


@dataclass
class Check:
    name: str
    ok: bool | None  # None: could not be checked here
    detail: str


def _run_json(python: str, code: str, *args: str, timeout: int = 300) -> tuple[Any, str]:
    try:
        proc = subprocess.run([python, "-c", code, *args], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, str(exc)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        if proc.returncode < 0:  # killed by a signal: llama.cpp's last log line would hide the crash
            name = _signal_name(-proc.returncode)
            hint = (
                " (an instruction this CPU or VM does not allow: rebuild with --portable)"
                if name in ("SIGILL", "SIGSEGV")
                else ""
            )
            return None, f"crashed with {name}{hint}" + (f"; last output: {lines[-1]}" if lines else "")
        return None, lines[-1] if lines else f"exit code {proc.returncode}"
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1]), ""
    except (ValueError, IndexError):
        return None, "no JSON answer"


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


_CUDA_LIBS = ("libcudart", "libcublas", "libcuda.so")


#: one embedded file in `cuobjdump --list-elf` / `--list-ptx` output, e.g.
#: "ELF file    1: tmpxft_000515aa_00000000-0.sm_86.cubin" or "PTX file    2: ggml-cuda.sm_120a.ptx";
#: the arch-specific (a) and family (f) variants of sm_90/sm_100/sm_120 count as that architecture
_EMBEDDED = re.compile(r"^(?:ELF|PTX) file\s+\d+:\s*\S*?\.sm_(\d+)[af]?\.(?:cubin|ptx)\s*$", re.M)


def parse_cuobjdump_list(text: str) -> set[str]:
    """The architectures ("86", "120") of the files a `cuobjdump --list-elf` or `--list-ptx` listing names."""
    return set(_EMBEDDED.findall(text))


def list_cubin_archs(cuobjdump: str, lib: str) -> tuple[set[str], set[str]]:
    """(SASS archs, PTX archs) in a library, e.g. ({"89"}, set()), from `cuobjdump --list-elf/--list-ptx`.
    A BuildError when cuobjdump cannot be run or fails (its last line says why)."""
    found: list[set[str]] = []
    for flag in ("--list-elf", "--list-ptx"):
        try:
            proc = subprocess.run([cuobjdump, flag, lib], capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.SubprocessError) as exc:
            raise BuildError(f"{cuobjdump} {flag}: {exc}") from None
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
            raise BuildError(f"{cuobjdump} {flag} {lib}: " + (lines[-1] if lines else f"exit code {proc.returncode}"))
        found.append(parse_cuobjdump_list(proc.stdout))
    return found[0], found[1]


def _cuobjdump_for(nvcc: str | None) -> str | None:
    """The cuobjdump of that nvcc's toolkit: beside it, beside the file it links to, else on PATH."""
    if not nvcc:
        return None
    for candidate in (Path(nvcc).with_name("cuobjdump"), Path(os.path.realpath(nvcc)).with_name("cuobjdump")):
        if candidate.is_file():
            return str(candidate)
    return shutil.which("cuobjdump")


def verify_build(plan: BuildPlan, *, smoke_model: str | None = None) -> list[Check]:
    from provision.elf import ElfError, needed_libraries_of

    checks: list[Check] = []
    info, err = _run_json(plan.python, _INSPECT)
    if not info or not info.get("package_dir"):
        return [Check("installed", False, f"llama_cpp is not importable from {plan.python}: {err or 'not found'}")]
    libs = info["libs"]
    checks.append(Check("installed", True, f"{info['package_dir']} ({len(libs)} shared libraries)"))
    linked: dict[str, list[str]] = {}
    for lib in libs:
        try:
            linked[lib] = needed_libraries_of(lib)
        except ElfError as exc:
            linked[lib] = []
            checks.append(Check("linkage", False, str(exc)))
    cuda_libs = sorted({n for names in linked.values() for n in names if n.startswith(_CUDA_LIBS)})
    if plan.cpu:
        checks.append(Check("no CUDA linkage (CPU build)", not cuda_libs, ", ".join(cuda_libs) or "none linked"))
    else:
        checks.append(Check("linked against CUDA", bool(cuda_libs), ", ".join(cuda_libs) or "no CUDA library linked"))
        cuda_lib = next((lib for lib in libs if Path(lib).name.startswith("libggml-cuda")), None)
        cuobjdump = _cuobjdump_for(plan.nvcc)
        name = "kernels for " + ",".join(f"sm_{a}" for a in plan.archs)
        if cuda_lib is None:
            checks.append(Check(name, False, "no libggml-cuda library installed"))
        elif cuobjdump is None:
            checks.append(Check(name, None, "cuobjdump not available: not checked"))
        else:
            try:
                sass, ptx = list_cubin_archs(cuobjdump, cuda_lib)
            except BuildError as exc:
                checks.append(Check(name, None, f"not checked: {exc}"))
            else:
                missing = [a for a in plan.archs if a not in sass and a not in ptx]
                extra = sorted((sass | ptx) - set(plan.archs), key=int)
                detail = f"SASS {sorted(sass, key=int)}, PTX {sorted(ptx, key=int)}"
                if missing:
                    detail += f"; missing {', '.join('sm_' + a for a in missing)}"
                if extra:
                    detail += f"; also {extra}"
                checks.append(Check(name, not missing, detail))
    offload, err = _run_json(plan.python, _OFFLOAD)
    if offload is None:
        checks.append(Check("llama_supports_gpu_offload()", False, f"import failed: {err}"))
    else:
        expect = not plan.cpu
        checks.append(Check("llama_supports_gpu_offload()", offload == expect, f"{offload} (expected {expect})"))
    if smoke_model:
        layers = "0" if plan.cpu else "-1"
        done, err = _run_json(plan.python, _COMPLETE, smoke_model, layers, timeout=600)
        if done is None:
            checks.append(Check("one completion", False, err))
        else:
            checks.append(
                Check(
                    "one completion",
                    done["tokens"] > 0,
                    f"{done['tokens']} tokens in {done['seconds']:.2f} s: {done['text'].strip()[:60]!r}",
                )
            )
    return checks
