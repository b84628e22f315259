"""People's view of a fit: a breakdown, the split per GPU, and the command that realises it."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from provision.console import make_console
from provision.engineflags import ENGINE_NAMES, VLLM_ENGINE, engine_flags
from provision.fit import memory_model as mm
from provision.fit.memory_model import GIB
from provision.fit.result import FitResult, StackResult

_VERDICT_STYLE = {"fits": "green", "partial_offload": "yellow", "does_not_fit": "red"}
_VERDICT_TEXT = {"fits": "fits", "partial_offload": "fits with partial CPU offload", "does_not_fit": "does not fit"}


def _gib(n: int) -> str:
    return f"{n / GIB:.2f} GiB"


def render_result(console: Console, result: FitResult) -> None:
    req = result.request
    style = _VERDICT_STYLE[result.verdict]
    engine = ENGINE_NAMES[req.engine]
    console.print(
        f"[bold]{engine}[/bold]: {escape(result.model.name)} — [{style}]{_VERDICT_TEXT[result.verdict]}[/{style}] "
        f"at {req.context} tokens × {req.parallel} parallel, KV {req.kv_type}"
    )
    exact = "exact" if result.model.weights_exact else "estimated"
    console.print(
        f"  weights {_gib(result.weights_bytes)} ({exact}; on GPU {_gib(result.gpu_weights_bytes)}, "
        f"on CPU {_gib(result.cpu_weights_bytes)})  KV {_gib(result.kv_bytes)} "
        f"({result.kv_bytes_per_token} B/token)  compute {_gib(result.compute_bytes)}  "
        f"overhead {_gib(result.overhead_bytes)}"
        + (f"  reserved {_gib(result.reserve_bytes)}" if result.reserve_bytes else "")
    )
    table = Table(show_edge=False, pad_edge=False)
    for column in ("GPU", "name", "layers", "weights", "KV", "compute", "overhead", "free after"):
        table.add_column(column, justify="right" if column not in ("name", "layers") else "left")
    for share in result.gpus:
        layers = share.to_dict()["layers"] or "-"
        if share.holds_output and result.request.engine != VLLM_ENGINE:
            layers = f"{layers} + output" if share.layers else "output"
        table.add_row(
            str(share.index),
            escape(share.name),
            str(layers),
            _gib(share.weights_bytes),
            _gib(share.kv_bytes),
            _gib(share.compute_bytes),
            _gib(share.overhead_bytes),
            _gib(share.free_after_bytes),
        )
    console.print(table)
    limits = []
    limits.append(
        f"largest context at {req.parallel} parallel: {result.max_context}"
        if result.max_context
        else f"no context fits fully at {req.parallel} parallel"
    )
    limits.append(
        f"most parallel sequences at {req.context} tokens: "
        + (
            f"≥ {result.max_parallel} (the search stops there)"
            if result.max_parallel_capped
            else str(result.max_parallel)
        )
        if result.max_parallel
        else "no parallelism fits fully at this context"
    )
    console.print("  " + "; ".join(limits))
    if result.kv_capacity_tokens is not None:
        engine_era = "V1" if mm.vllm_is_v1(req.vllm_version) else "V0"
        release = f"vLLM {req.vllm_version}" if req.vllm_version else "a current vLLM"
        console.print(
            f"  {release} ({engine_era}) at --gpu-memory-utilization {result.gpu_memory_utilization:.2f} will log: "
            f"GPU KV cache size: {result.kv_capacity_tokens:,} tokens; maximum concurrency for "
            f"{req.context:,} tokens per request: {result.max_concurrency:.2f}x",
            highlight=False,
            soft_wrap=True,
        )
    if result.cpu_layers:
        console.print(f"  {result.cpu_layers} layer(s) stay on the CPU")
    if result.verdict == "does_not_fit":
        console.print(
            "  [red]no command: nothing realises this on these GPUs[/red] (a smaller context, a smaller "
            "quantization, or more GPUs)"
        )
    else:
        flags = engine_flags(result)
        console.print(f"  [dim]$[/dim] {escape(str(flags['command']))}", soft_wrap=True, highlight=False)
        options = flags.get("options")
        if options:
            console.print(f"  request options: {escape(str(options))}")
    for note in [*result.model.notes, *result.notes]:
        console.print(f"  note: {escape(note)}")


def render_stacks(stacks: dict[str, StackResult]) -> None:
    console = make_console()
    for engine, stack in stacks.items():
        for result in stack.results:
            render_result(console, result)
        if len(stack.results) > 1:
            style = "green" if stack.fits else "red"
            free = ", ".join(
                f"GPU {g.index}: {_gib(f)}" for g, f in zip(stack.gpus, stack.free_after_bytes, strict=True)
            )
            verdict = "all fit together" if stack.fits else "do not all fit together"
            console.print(f"[bold]{ENGINE_NAMES[engine]}[/bold] stack: [{style}]{verdict}[/{style}]; left: {free}")
        console.print()
