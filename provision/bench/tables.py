"""The rich tables of ``gpuprov bench`` (what this module owns): a run, the history, a comparison, estimates.
JSON output needs no renderer: the CLI prints the dataclasses' ``to_dict``.

Text that came from the server or the history database (error messages, model and engine names,
notes that quote them) goes through :func:`provision.console.inert`: control characters shown as escapes, and rich
markup escaped, so ``[/x]`` in a server's error message is printed, not parsed (it was a traceback).
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from provision.bench.gpu import throttled_gpus
from provision.bench.history import Estimate, MetricChange, format_duration
from provision.bench.runner import BenchRun
from provision.bench.stats import LevelResult
from provision.bench.store import StoredRun
from provision.console import inert, make_console


def _console() -> Console:
    return make_console()


def _f(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _ok_fail(level: LevelResult) -> str:
    text = f"{level.requests_ok}/{level.requests_failed}"
    return f"[red]{text}[/]" if level.requests_failed else text


def _gpu_cell(level: LevelResult) -> str:
    gpu = level.gpu
    if gpu is None:
        return "off"
    if gpu.get("status") != "ok":
        return "none"
    cells = []
    for g in gpu.get("gpus", []):
        util = _f(g.get("utilization_gpu_pct_mean"), 0)
        power = _f(g.get("power_draw_w_mean"), 0)
        temp = _f(g.get("temperature_c_max"), 0)
        cells.append(f"{g['index']}: {util}% {power} W {temp}°C")
    return "\n".join(cells) or "no samples"


def render_run(run: BenchRun, *, stored_ids: Sequence[int] = (), db: str | None = None) -> None:
    con = _console()
    cfg = run.config
    engine = run.server.get("engine") or "engine not identified"
    if run.server.get("engine_version"):
        engine += f" {run.server['engine_version']}"
    con.print(f"[bold]{inert(cfg.endpoint.url)}[/]  model [bold]{inert(cfg.model)}[/]  ({inert(engine)})")
    con.print(f"workload: {inert(cfg.workload.key())}", style="dim")
    gpus = ", ".join(g.get("name", "?") for g in run.host.get("gpus", []))
    if gpus:
        con.print(f"GPUs: {inert(gpus)}", style="dim")
    table = Table(show_edge=False, pad_edge=False)
    for name in (
        "conc",
        "ok/fail",
        "req/s",
        "out tok/s",
        "TTFT ms\np50/p90/p99",
        "ITL ms\np50/p90",
        "TPOT ms\np50",
        "latency ms\np50/p90/p99",
        "tok/s per req\np50",
        "GPU util power temp",
    ):
        table.add_column(name, justify="right" if name != "GPU util power temp" else "left")
    for lv in run.levels:
        mark = " *" if run.best is lv else ""
        table.add_row(
            f"{lv.concurrency}{mark}",
            _ok_fail(lv),
            _f(lv.requests_per_s, 2),
            _f(lv.output_tokens_per_s),
            f"{_f(lv.ttft_ms.p50, 0)}/{_f(lv.ttft_ms.p90, 0)}/{_f(lv.ttft_ms.p99, 0)}",
            f"{_f(lv.itl_ms.p50)}/{_f(lv.itl_ms.p90)}",
            _f(lv.tpot_ms.p50),
            f"{_f(lv.latency_ms.p50, 0)}/{_f(lv.latency_ms.p90, 0)}/{_f(lv.latency_ms.p99, 0)}",
            _f(lv.request_output_tokens_per_s.p50),
            _gpu_cell(lv),
        )
    con.print(table)
    if run.best is not None:
        con.print(f"[green]best concurrency: {run.best.concurrency}[/] ({inert(run.best_reason)})")
    elif len(run.levels) > 1 or cfg.slo_ms is not None:
        con.print(f"[yellow]no best concurrency: {inert(run.best_reason)}[/]")
    for lv in run.levels:
        for message, count in lv.errors.items():
            con.print(f"[red]c={lv.concurrency}: {count} failed: {inert(message)}[/]")
        if lv.requests_cut:
            con.print(f"c={lv.concurrency}: {lv.requests_cut} cut at the level's end (not failures)", style="yellow")
        for line in throttled_gpus(lv.gpu):
            con.print(f"[yellow]c={lv.concurrency}: GPU held back by heat or power: {inert(line)}[/]")
    gpu_status = next((lv.gpu.get("status") for lv in run.levels if lv.gpu), None)
    if gpu_status is not None and gpu_status != "ok":
        con.print(f"no GPU samples: {inert(gpu_status)}", style="dim")
    sources = {lv.token_source for lv in run.levels}
    con.print(f"output tokens counted from: {', '.join(sorted(sources))}", style="dim")
    for note in run.notes:
        con.print(f"note: {inert(note)}", style="yellow")
    if run.stop_reason:
        con.print(f"[red]stopped early: {inert(run.stop_reason)}[/] (results so far shown and kept)")
    if stored_ids:
        ids = f"{stored_ids[0]}" if len(stored_ids) == 1 else f"{stored_ids[0]}–{stored_ids[-1]}"
        con.print(f"stored as run {ids} in {inert(db)}", style="dim")


def render_history(runs: Sequence[StoredRun], *, db: str) -> None:
    con = _console()
    if not runs:
        con.print(f"no runs in {inert(db)} yet: gpuprov bench URL --model NAME records one")
        return
    table = Table(show_edge=False, pad_edge=False)
    for name in (
        "id",
        "when (UTC)",
        "model",
        "engine",
        "GPUs",
        "profile",
        "workload",
        "conc",
        "ok/fail",
        "req/s",
        "out tok/s",
        "TTFT p50 ms",
        "lat p90 ms",
    ):
        table.add_column(name, justify="right" if name in ("id", "conc", "req/s", "out tok/s") else "left")
    for r in runs:
        lv = r.level
        status = f"{lv.requests_ok}/{lv.requests_failed}" + ("" if r.complete else " (stopped)")
        table.add_row(
            f"{r.id}{' *' if r.is_best else ''}",
            r.created_at.replace("T", " ")[:16].replace("+00:00", ""),
            inert(r.model),
            inert(r.engine_label),
            inert(r.gpu_names or "-"),
            inert(r.profile or "-"),
            inert(r.workload_key),
            str(r.concurrency),
            status if not lv.requests_failed and r.complete else f"[red]{status}[/]",
            _f(lv.requests_per_s, 2),
            _f(lv.output_tokens_per_s),
            _f(lv.ttft_ms.p50, 0),
            _f(lv.latency_ms.p90, 0),
        )
    con.print(table)
    con.print("* the best level of its sweep", style="dim")


def render_compare(
    before: StoredRun, after: StoredRun, changes: Sequence[MetricChange], warnings: Sequence[str]
) -> None:
    con = _console()
    con.print(
        f"run {before.id} ({before.created_at}, c={before.concurrency}) → run {after.id} "
        f"({after.created_at}, c={after.concurrency})"
    )
    table = Table(show_edge=False, pad_edge=False)
    for name in ("metric", f"run {before.id}", f"run {after.id}", "ratio"):
        table.add_column(name, justify="left" if name == "metric" else "right")
    for ch in changes:
        ratio = "n/a" if ch.ratio is None else f"{ch.ratio:.2f}×"
        if ch.improved is True:
            ratio = f"[green]{ratio} better[/]"
        elif ch.improved is False:
            ratio = f"[red]{ratio} worse[/]"
        elif ch.ratio is not None:
            ratio = f"{ratio} same"
        digits = 0 if ch.metric == "failed requests" else 2
        table.add_row(ch.metric, _f(ch.before, digits), _f(ch.after, digits), ratio)
    con.print(table)
    for w in warnings:
        con.print(f"note: {inert(w)}", style="yellow")


def render_estimates(
    estimates: Sequence[Estimate],
    skipped: Sequence[StoredRun],
    *,
    requests: int,
    db: str,
    excluded: Sequence[StoredRun] = (),
) -> None:
    con = _console()
    for r in excluded:
        why = "stopped early" if not r.complete else f"{r.level.requests_failed} failed of "
        why += "" if not r.complete else f"{r.level.requests_ok + r.level.requests_failed} requests"
        con.print(
            f"run {r.id} ({inert(r.model)}, c={r.concurrency}): left out, {why} (--max-error-rate to include)",
            style="yellow",
        )
    if not estimates:
        con.print(f"no usable run in {inert(db)} to estimate from: gpuprov bench URL --model NAME records one")
        return
    table = Table(show_edge=False, pad_edge=False, title=f"time for {requests:,} requests")
    for name in ("run", "model", "engine", "GPUs", "profile", "workload", "conc", "req/s", "time"):
        table.add_column(name, justify="right" if name in ("run", "conc", "req/s", "time") else "left")
    for e in estimates:
        r = e.run
        table.add_row(
            str(r.id),
            inert(r.model),
            inert(r.engine_label),
            inert(r.gpu_names or "-"),
            inert(r.profile or "-"),
            inert(r.workload_key),
            str(r.concurrency),
            _f(r.level.requests_per_s, 2),
            format_duration(e.seconds),
        )
    con.print(table)
    con.print(
        "each configuration's newest run without failures; a job's own prompts may differ from the workload",
        style="dim",
    )
    for r in skipped:
        con.print(f"run {r.id}: no request rate measured, skipped", style="dim")
