"""``gpuprov fit``: will a model run here, with which context, parallelism and engine flags."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from provision.cli import app
from provision.engineflags import ENGINE_NAMES, LLAMA_CPP_ENGINE, OLLAMA_ENGINE, VLLM_ENGINE, engine_id

#: fit's engines, in the order ``--engine all`` reports them (--engine takes their names: llama.cpp)
_ENGINES = (LLAMA_CPP_ENGINE, OLLAMA_ENGINE, VLLM_ENGINE)


@app.command()
def fit(
    models: Annotated[
        list[Path],
        typer.Argument(
            metavar="MODEL...",
            help="GGUF files or Hugging Face model directories; several: check they fit together.",
        ),
    ],
    engine: Annotated[
        str, typer.Option("--engine", help="llama.cpp, ollama, vllm, or all (GGUF: all three; HF dir: vllm).")
    ] = "all",
    context: Annotated[
        int | None, typer.Option("--context", min=1, help="Tokens per sequence (default min(4096, trained)).")
    ] = None,
    parallel: Annotated[int, typer.Option("--parallel", min=1, max=4096, help="Sequences served at once.")] = 1,
    kv_type: Annotated[
        str | None, typer.Option("--kv-type", help="KV cache type: f16, q8_0, q4_0 (llama.cpp/Ollama), fp8 (vLLM).")
    ] = None,
    quant: Annotated[
        str | None,
        typer.Option("--quant", help="Size a HF directory from its parameter count: Q4_K_M, Q8_0, FP8, AWQ, BF16..."),
    ] = None,
    vram_gib: Annotated[
        list[str] | None,
        typer.Option("--vram-gib", metavar="N[,N...]", help="Plan for GPUs of these sizes (repeatable)."),
    ] = None,
    gpu: Annotated[
        list[str] | None, typer.Option("--gpu", metavar="NAME", help='Plan for a catalog GPU, e.g. "RTX 4090 Laptop".')
    ] = None,
    from_file: Annotated[
        Path | None, typer.Option("--from", metavar="SNAPSHOT", help="Use the GPUs of a saved snapshot.")
    ] = None,
    reserve_mib: Annotated[
        int, typer.Option("--reserve-mib", min=0, max=1 << 20, help="Keep this much free on every GPU.")
    ] = 0,
    flash_attn: Annotated[
        bool | None,
        typer.Option("--flash-attn/--no-flash-attn", help="Flash attention (default: the engine's own default)."),
    ] = None,
    gpu_memory_utilization: Annotated[
        float | None, typer.Option("--gpu-memory-utilization", help="vLLM: check this value instead of computing it.")
    ] = None,
    swa_full: Annotated[
        bool,
        typer.Option(
            "--swa-full",
            help="llama.cpp: full-size KV cache for sliding-window layers (llama-cpp-python's default; "
            "llama-server --swa-full).",
        ),
    ] = False,
    vllm_version: Annotated[
        str | None,
        typer.Option(
            "--vllm-version",
            metavar="VERSION",
            help="vLLM: the release that will run it (before 0.8.0 the V0 engine profiles whole "
            "max-model-len prompts; default: a current release).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the fit as JSON.")] = False,
) -> None:
    """Weights + KV cache + overhead per GPU; largest context and parallelism; engine flags.

    Exit code: 0 all models fit on the GPUs for at least one engine, 1 they do not (or only with CPU
    offload), 2 bad usage.
    """
    from provision.errors import UsageError
    from provision.fit import (
        FitRequest,
        fit_stack,
        gpus_from_names,
        gpus_from_snapshot,
        gpus_from_vram,
        parse_vram_gib,
        read_model,
    )

    sources = [s for s in (vram_gib, gpu, from_file) if s]
    if len(sources) > 1:
        raise UsageError("give the GPUs one way: --vram-gib, --gpu or --from")
    chosen = engine_id(engine)
    if engine != "all" and chosen not in _ENGINES:
        names = ", ".join(ENGINE_NAMES[e] for e in _ENGINES)
        raise UsageError(f"unknown engine {engine!r}: use one of {names} or all")
    if vram_gib:
        gpus = gpus_from_vram(parse_vram_gib(vram_gib))
    elif gpu:
        gpus = gpus_from_names(gpu)
    else:
        from provision import snapshotfile

        if from_file is not None:
            snap = snapshotfile.load(from_file)
        else:
            from provision.probe import probe

            snap = probe()
        gpus = gpus_from_snapshot(snap)

    specs = [read_model(path, quantization=quant) for path in models]
    if chosen is None:  # all
        engines = list(_ENGINES) if all(s.format == "gguf" for s in specs) else [VLLM_ENGINE]
    else:
        engines = [chosen]
        if chosen != VLLM_ENGINE and any(s.format != "gguf" for s in specs):
            raise UsageError(f"{engine} loads GGUF files: give a .gguf, or use --engine vllm for a HF directory")
    if chosen is None and kv_type is not None:
        # a cache type names the engines it exists in (q8_0: llama.cpp and Ollama; fp8: vLLM)
        engines = [name for name in engines if _kv_applies(kv_type, name)]
        if not engines:
            raise UsageError(f"KV cache type {kv_type!r} exists in no engine: f16, q8_0, q4_0 or fp8")
    stacks = {}
    for name in engines:
        request = FitRequest(
            engine=name,
            context=context,
            parallel=parallel,
            kv_type=kv_type,
            reserve_mib=reserve_mib,
            flash_attention=flash_attn,
            gpu_memory_utilization=gpu_memory_utilization if name == VLLM_ENGINE else None,
            swa_full=swa_full and name == LLAMA_CPP_ENGINE,
            vllm_version=vllm_version if name == VLLM_ENGINE else None,
        )
        stacks[name] = fit_stack(specs, gpus, request)
    code = 0 if any(stack.fits for stack in stacks.values()) else 1
    if as_json:
        payload = {
            "gpus": [
                {"index": g.index, "name": g.name, "total_bytes": g.total_bytes, "free_bytes": g.free_bytes}
                for g in gpus
            ],
            "engines": {ENGINE_NAMES[name]: stack.to_dict() for name, stack in stacks.items()},
            "exit_code": code,
        }
        typer.echo(json.dumps(payload, indent=2))
    else:
        from provision.fit.report import render_stacks

        render_stacks(stacks)
    raise typer.Exit(code)


def _kv_applies(kv_type: str, engine: str) -> bool:
    from provision.fit.memory_model import KV_CACHE_TYPES

    return kv_type.lower() in KV_CACHE_TYPES[engine]
