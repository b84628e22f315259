"""``gpuprov bench``: measure a serving stack, find the best concurrency, keep the history, estimate jobs.

``gpuprov bench URL --model NAME`` runs a benchmark (the ``run`` subcommand, implied);
``gpuprov bench history`` lists and compares stored runs; ``gpuprov bench estimate --requests N``
says how long N requests take at each stored configuration.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from typer.core import TyperGroup

from provision.cli import app

if TYPE_CHECKING:
    # typer 0.28 vendors click: TyperGroup.parse_args takes its Context, not the click package's
    from typer._click import Context


class _RunByDefault(TyperGroup):
    """``gpuprov bench URL ...`` means ``gpuprov bench run URL ...``."""

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["run", *args]
        return super().parse_args(ctx, args)


bench_app = typer.Typer(
    cls=_RunByDefault,
    no_args_is_help=True,
    help="Benchmark an OpenAI-compatible server (gpuprov bench URL --model NAME); history; estimates.",
)
app.add_typer(bench_app, name="bench")

DbOption = Annotated[
    Path | None,
    typer.Option("--db", metavar="PATH", help="History database [default: $XDG_DATA_HOME/gpuprov/bench.db]."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def _db_path(db: Path | None) -> Path:
    from provision.bench.historydb import default_db_path

    return db if db is not None else default_db_path()


def _concurrencies(text: str) -> list[int]:
    from provision.errors import UsageError

    try:
        values = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise UsageError(f"--concurrency takes comma-separated positive integers like 1,2,4,8, not {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise UsageError(f"--concurrency takes comma-separated positive integers like 1,2,4,8, not {text!r}")
    return list(dict.fromkeys(values))


@bench_app.command("run")
def run(
    url: Annotated[str, typer.Argument(help="The server's base URL: http://HOST:PORT (or .../v1).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Model name to request, as the server knows it.")],
    api: Annotated[str, typer.Option("--api", help="chat (/v1/chat/completions) or completions.")] = "chat",
    prompt_tokens: Annotated[
        int | None,
        typer.Option("--prompt-tokens", help="Generated prompts of about this many tokens (default 128)."),
    ] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Tokens to generate per request.")] = 128,
    prompts: Annotated[
        Path | None,
        typer.Option(
            "--prompts",
            metavar="FILE",
            help='JSONL prompts instead: {"prompt": ...} or {"messages": [...]}, optional "max_tokens".',
        ),
    ] = None,
    requests: Annotated[
        int | None,
        typer.Option("--requests", "-n", help="Requests per concurrency level [default: 4 × concurrency, ≥ 8]."),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(
            "--duration",
            metavar="SECONDS",
            help="Send requests for this long per level; requests still running 2 s later are cut "
            "(counted as cut, not as failures, and left out of the latency figures).",
        ),
    ] = None,
    concurrency: Annotated[
        str, typer.Option("--concurrency", "-c", help="Concurrent requests; a list (1,2,4,8) sweeps.")
    ] = "1",
    slo_ms: Annotated[
        float | None,
        typer.Option("--slo-ms", help="Best level: highest throughput whose p90 latency stays within this."),
    ] = None,
    max_error_rate: Annotated[
        float,
        typer.Option("--max-error-rate", help="Best level: at most this share of failed requests (default 0: none)."),
    ] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="Generated prompts' seed (same seed, same requests).")] = 0,
    ignore_eos: Annotated[
        bool, typer.Option("--ignore-eos", help="Ask the server to generate max tokens past end-of-sequence.")
    ] = False,
    warmup: Annotated[int, typer.Option("--warmup", help="Unmeasured requests sent first.")] = 1,
    timeout: Annotated[
        float, typer.Option("--timeout", metavar="SECONDS", help="A request fails after this long without data.")
    ] = 60.0,
    request_timeout: Annotated[
        float | None,
        typer.Option(
            "--request-timeout",
            metavar="SECONDS",
            help="A request fails when its answer is not complete after this long, however steadily the "
            "server sends [default: 60 s + 0.5 s × --max-tokens (the largest max_tokens of --prompts)].",
        ),
    ] = None,
    no_usage: Annotated[
        bool, typer.Option("--no-usage", help="Do not ask for usage (stream_options); count streamed chunks.")
    ] = False,
    engine: Annotated[
        str | None, typer.Option("--engine", help="Engine name to record when the server does not say it.")
    ] = None,
    engine_version: Annotated[str | None, typer.Option("--engine-version", help="Engine version to record.")] = None,
    profile: Annotated[
        str | None,
        typer.Option("--profile", help="The tuning profile in effect (default: the one gpuprov apply last applied)."),
    ] = None,
    db: DbOption = None,
    no_store: Annotated[bool, typer.Option("--no-store", help="Do not record the run in the history.")] = False,
    no_gpu: Annotated[bool, typer.Option("--no-gpu", help="Do not sample the GPUs while running.")] = False,
    sample_interval: Annotated[
        float, typer.Option("--sample-interval", metavar="SECONDS", help="GPU sampling period.")
    ] = 1.0,
    as_json: JsonOption = False,
) -> None:
    """Stream requests to URL and measure TTFT, inter-token latency, tokens/s, requests/s.

    With several --concurrency levels, names the best one. GPU utilisation, power, temperature and
    throttling are sampled while it runs. A server with prefix caching answers repeated prompts
    faster: change --seed between runs that must not share prompts.
    Exit code: 0 all requests succeeded, 1 some failed or the run stopped early, 2 bad usage,
    130 interrupted (results so far are kept).
    """
    from provision import nvml
    from provision.bench.client import Endpoint
    from provision.bench.config import BenchConfig
    from provision.bench.gpu import GpuMonitor
    from provision.bench.progress import RunProgress
    from provision.bench.runner import run_bench
    from provision.bench.store import HistoryStore
    from provision.bench.workload import Workload, load_prompts
    from provision.errors import UsageError

    endpoint = Endpoint.parse(url)
    levels = _concurrencies(concurrency)
    if sample_interval <= 0:
        raise UsageError(f"--sample-interval must be more than 0 seconds, not {sample_interval:g}")
    if prompts is not None and prompt_tokens is not None:
        raise UsageError("--prompt-tokens sizes generated prompts; --prompts gives your own: use one")
    workload = Workload(
        api=api,
        prompt_tokens=128 if prompt_tokens is None else prompt_tokens,
        max_tokens=max_tokens,
        seed=seed,
        ignore_eos=ignore_eos,
    )
    if prompts is not None:
        workload.prompts, workload.prompts_sha256 = load_prompts(prompts, api)
        workload.prompts_file, workload.prompt_tokens = str(prompts), None
    config = BenchConfig(
        endpoint=endpoint,
        model=model,
        workload=workload,
        concurrencies=levels,
        requests=requests,
        duration_s=duration,
        timeout_s=timeout,
        request_timeout_s=request_timeout,
        warmup=warmup,
        slo_ms=slo_ms,
        max_error_rate=max_error_rate,
        include_usage=not no_usage,
    )
    store = None if no_store else HistoryStore(_db_path(db), write=True)  # a bad --db fails before any load

    monitor = GpuMonitor(nvml.backend, interval_s=sample_interval)
    progress = RunProgress(terminal=sys.stderr.isatty(), monitor=monitor)
    with progress, monitor if not no_gpu else contextlib.nullcontext():
        bench = run_bench(
            config,
            monitor=None if no_gpu else monitor,
            on_progress=progress.update,
            backend_factory=None if no_gpu else nvml.backend,
            on_message=progress.message,
        )
    if engine is not None:
        bench.server["engine"], bench.server["engine_version"] = engine, engine_version
    elif engine_version is not None:
        bench.server["engine_version"] = engine_version
    if no_gpu:
        bench.notes.append("GPU sampling off (--no-gpu)")

    stored: list[int] = []
    if profile is None:
        from provision import applystate

        profile = applystate.applied_profile(applystate.state_dir())
    if store is not None:
        with store:
            stored = store.save(bench, profile=profile)
    failed = sum(lv.requests_failed for lv in bench.levels)
    code = 130 if bench.interrupted else (1 if failed or bench.stop_reason else 0)
    if as_json:
        from provision.bench.json_output import run_document

        typer.echo(json.dumps(run_document(bench, stored, None if store is None else str(store.path), code), indent=2))
    else:
        from provision.bench.tables import render_run

        render_run(bench, stored_ids=stored, db=None if store is None else str(store.path))
    if code == 1:
        sent = sum(lv.requests_sent for lv in bench.levels)
        why = bench.stop_reason or next(iter(next(lv.errors for lv in bench.levels if lv.errors)))
        from provision.console import printable

        typer.echo(f"gpuprov: {failed} of {sent} requests failed: {printable(why)}", err=True)
    raise typer.Exit(code)


@bench_app.command("history")
def history(
    db: DbOption = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Only runs of this model.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="Newest runs to list.")] = 30,
    compare: Annotated[
        tuple[int, int] | None,
        typer.Option("--compare", metavar="RUN RUN", help="Compare two runs: each metric and the ratio."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List stored runs (newest first), or compare two of them."""
    from provision.bench.history import compare as compare_runs
    from provision.bench.store import HistoryStore
    from provision.errors import UsageError

    path = _db_path(db)
    if not path.exists():
        raise UsageError(f"no bench history at {path}: gpuprov bench URL --model NAME records runs there")
    if limit < 1:
        raise UsageError(f"--limit must be at least 1, not {limit}")
    with HistoryStore(path) as store:
        if compare is not None:
            before, after = store.get(compare[0]), store.get(compare[1])
            changes, warnings = compare_runs(before, after)
            if as_json:
                from provision.bench.json_output import compare_document

                typer.echo(json.dumps(compare_document(before, after, changes, warnings), indent=2))
            else:
                from provision.bench.tables import render_compare

                render_compare(before, after, changes, warnings)
            return
        runs = store.runs(model=model, limit=limit)
    if as_json:
        typer.echo(json.dumps({"db": str(path), "runs": [r.to_dict() for r in runs]}, indent=2))
    else:
        from provision.bench.tables import render_history

        render_history(runs, db=str(path))


@bench_app.command("estimate")
def estimate(
    requests: Annotated[int, typer.Option("--requests", "-n", help="How many requests the job has.")],
    db: DbOption = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Only configurations of this model.")] = None,
    max_error_rate: Annotated[
        float, typer.Option("--max-error-rate", help="Use runs with at most this share of failed requests (0-1).")
    ] = 0.0,
    as_json: JsonOption = False,
) -> None:
    """How long a job of N requests would take at each stored configuration, fastest first."""
    from provision.bench.history import estimate as estimate_runs
    from provision.bench.stats import check_max_error_rate
    from provision.bench.store import HistoryStore
    from provision.errors import UsageError

    if requests < 1:
        raise UsageError(f"--requests must be at least 1, not {requests}")
    check_max_error_rate(max_error_rate)
    path = _db_path(db)
    if not path.exists():
        raise UsageError(f"no bench history at {path}: gpuprov bench URL --model NAME records runs there")
    with HistoryStore(path) as store:
        runs = store.runs(model=model)
    estimates, skipped, excluded = estimate_runs(runs, requests, max_error_rate=max_error_rate)
    if as_json:
        from provision.bench.json_output import estimate_document

        typer.echo(json.dumps(estimate_document(str(path), requests, estimates, skipped, excluded), indent=2))
    else:
        from provision.bench.tables import render_estimates

        render_estimates(estimates, skipped, requests=requests, db=str(path), excluded=excluded)
