"""The load: ``concurrency`` workers, each sending its next request as soon as its last one ended
(a closed loop, like a pool of clients), for ``requests`` requests or ``duration_s`` seconds; and
the sweep over several concurrency levels, naming the best.

Failures are counted, never dropped. A level stops early when the server looks gone — as many
failures in a row as ``max(5, 2 × concurrency)`` —, when its first ``concurrency`` requests all ran
out of time (a server too slow for the deadline would hold every later one as long), or on Ctrl-C;
what was measured until then is kept and says why it stopped.

Every run ends in bounded time: each request has a total deadline (``request_timeout_s``, by default
:func:`~provision.bench.config.default_request_timeout_s` of the workload's max_tokens), the server's
self-description is read once within it, and a ``duration_s`` level cuts the requests still running
:data:`LEVEL_END_GRACE_S` after its end (they count as cut, neither answered nor failed).
"""

from __future__ import annotations

import datetime as _dt
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from provision.bench.client import CUT_AT_STOP, STREAM_CLOSED, Connection, RequestResult
from provision.bench.config import BenchConfig
from provision.bench.gpu import GpuMonitor
from provision.bench.serverinfo import BenchError, check_reachable, host_summary, server_info
from provision.bench.stats import LevelResult, best_level, summarize
from provision.bench.tokens import TokenCounter

#: the stop reason of a level (and run) the user interrupted
INTERRUPTED = "interrupted (Ctrl-C)"

#: request indices of warm-up requests (never the same prompts as measured ones)
WARMUP_INDEX_BASE = 1_000_000_000

#: on_progress(concurrency, requests done, requests planned or None for --duration, seconds elapsed)
Progress = Callable[[int, int, "int | None", float], None]

#: on_message(one line): what the run is doing (warm-up, a level done), for the progress display
Message = Callable[[str], None]

#: seconds after a --duration level's end before the requests still running are cut
LEVEL_END_GRACE_S = 2.0


@dataclass
class BenchRun:
    config: BenchConfig
    started_at: str = ""
    levels: list[LevelResult] = field(default_factory=list)
    best: LevelResult | None = None
    best_reason: str = ""
    #: the server's name/version/models as it told them (GET /v1/models, /version, /api/version)
    server: dict[str, Any] = field(default_factory=dict)
    #: a summary of this host: hostname, driver, GPUs and their power limits
    host: dict[str, Any] = field(default_factory=dict)
    #: things the reader must know: fallbacks taken, GPU sampling unavailable...
    notes: list[str] = field(default_factory=list)
    #: why the whole run ended early (None: it ran every level)
    stop_reason: str | None = None
    interrupted: bool = False


def warm_up(config: BenchConfig, notes: list[str], on_message: Message | None = None) -> None:
    """Send the warm-up requests (not measured). The first one also checks that the server takes the
    request at all — a wrong model name or path stops here with the server's own message — and
    whether it accepts ``stream_options`` (older servers reject it: then tokens are counted from
    the stream)."""
    conn = config.connection()
    if on_message is not None:
        on_message(f"warm-up: {config.warmup} request{'s' if config.warmup != 1 else ''} (not measured)")
    try:
        for i in range(config.warmup):
            index = WARMUP_INDEX_BASE + i
            body = config.workload.body(index, config.model, include_usage=config.include_usage)
            result = conn.stream(index, config.workload.path, body)
            if (
                not result.ok
                and i == 0
                and config.include_usage
                and result.error_kind == "http"
                and "stream_options" in (result.error or "")
            ):
                config.include_usage = False
                notes.append(f"the server rejected stream_options ({result.error}): tokens counted from the stream")
                body = config.workload.body(index, config.model, include_usage=False)
                result = conn.stream(index, config.workload.path, body)
            if not result.ok:
                raise BenchError(
                    f"the warm-up request to {config.endpoint.url}{config.workload.path} failed: {result.error}"
                )
    finally:
        conn.close()


def run_level(
    config: BenchConfig,
    concurrency: int,
    *,
    monitor: GpuMonitor | None = None,
    on_progress: Progress | None = None,
    counter: TokenCounter | None = None,
) -> LevelResult:
    """One concurrency level. Its figures are summarised after the wall time is taken: the texts of
    answers without usage are counted then (``counter``: the server's tokenizer), never mid-level."""
    planned = config.requests_for(concurrency)
    start = time.perf_counter()
    deadline_s = None if config.duration_s is None else start + config.duration_s
    cut_at = None if deadline_s is None else deadline_s + LEVEL_END_GRACE_S
    abort_after = max(5, 2 * concurrency)
    lock = threading.Lock()
    stop = threading.Event()
    results: list[RequestResult] = []
    connections: list[Connection] = []
    state: dict[str, Any] = {"next": 0, "in_a_row": 0, "ok": 0, "timeouts": 0, "stop_reason": None}
    if monitor is not None:
        monitor.sample_now()

    def claim() -> int | None:
        with lock:
            if stop.is_set():
                return None
            if planned is not None and state["next"] >= planned:
                return None
            if deadline_s is not None and time.perf_counter() >= deadline_s:
                return None
            index: int = state["next"]
            state["next"] += 1
            return index

    def worker(conn: Connection) -> None:
        try:
            while (index := claim()) is not None:
                body = config.workload.body(index, config.model, include_usage=config.include_usage)
                result = conn.stream(index, config.workload.path, body)
                with lock:
                    results.append(result)
                    if not result.cut:
                        state["in_a_row"] = 0 if result.ok else state["in_a_row"] + 1
                        state["ok"] += result.ok
                        state["timeouts"] += result.error_kind == "timeout"
                    if not stop.is_set():  # the first reason to stop is the one kept
                        if state["in_a_row"] >= abort_after:
                            state["stop_reason"] = (
                                f"stopped after {abort_after} failed requests in a row: {result.error}"
                            )
                            stop.set()
                        elif state["ok"] == 0 and state["timeouts"] >= concurrency:
                            state["stop_reason"] = (
                                f"stopped: none of the first {state['timeouts']} requests finished in time "
                                f"({result.error})"
                            )
                            stop.set()
                    done = len(results)
                if on_progress is not None:
                    on_progress(concurrency, done, planned, time.perf_counter() - start)
        finally:
            conn.close()

    if on_progress is not None:
        on_progress(concurrency, 0, planned, 0.0)
    connections.extend(config.connection() for _ in range(concurrency))
    threads = [
        threading.Thread(target=worker, args=(conn,), name=f"gpuprov-bench-{i}", daemon=True)
        for i, conn in enumerate(connections)
    ]
    for t in threads:
        t.start()
    interrupted = cut_done = False
    ctrl_c = threading.Event()
    restore = _catch_ctrl_c(ctrl_c, stop)
    try:
        for t in threads:
            while t.is_alive():
                now = time.perf_counter()
                if not cut_done and stop.is_set():  # stopped early: what still runs would only wait
                    cut_done = True
                    for conn in connections:
                        conn.cut(CUT_AT_STOP)
                elif cut_at is not None and not cut_done and now >= cut_at:
                    cut_done = True
                    for conn in connections:  # still running LEVEL_END_GRACE_S after the level's end
                        conn.cut()
                t.join(0.1 if cut_at is None or cut_done else min(0.1, max(0.0, cut_at - now)))
    except KeyboardInterrupt:  # a Ctrl-C that came before the handler was in place
        interrupted = True
        stop.set()
    finally:
        restore()
    interrupted = interrupted or ctrl_c.is_set()
    end = time.perf_counter()
    with lock:
        finished = sorted(results, key=lambda r: r.index)
        stop_reason = INTERRUPTED if interrupted else state["stop_reason"]
    for r in finished:
        r.started_s -= start
    gpu = None
    if monitor is not None:
        monitor.sample_now()
        gpu = monitor.summary(start, time.perf_counter())
    if counter is not None:
        counter.apply(finished)
    for r in finished:
        r.text = ""
    level = summarize(concurrency, finished, end - start, stop_reason=stop_reason)
    level.request_results = finished
    level.gpu = gpu
    return level


def _catch_ctrl_c(flag: threading.Event, stop: threading.Event) -> Callable[[], None]:
    """While a level runs, Ctrl-C (SIGINT) stops it through ``stop`` instead of raising KeyboardInterrupt in
    the middle of ``Thread.join`` (which can leave the thread's lock held, and the process hanging at exit):
    the runner then cuts what is in flight and returns what finished. Returns what puts the old handler back.
    Only the main thread can set a handler; elsewhere nothing changes."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def on_sigint(signum: int, frame: object) -> None:
        flag.set()
        stop.set()

    previous = signal.signal(signal.SIGINT, on_sigint)

    def restore() -> None:
        signal.signal(signal.SIGINT, previous)

    return restore


def run_bench(
    config: BenchConfig,
    *,
    monitor: GpuMonitor | None = None,
    on_progress: Progress | None = None,
    backend_factory: Callable[[], Any] | None = None,
    on_message: Message | None = None,
) -> BenchRun:
    """Check the server, warm up, run each concurrency level in order, pick the best."""
    run = BenchRun(config=config, started_at=_dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat())
    check_reachable(config.endpoint, min(config.timeout_s, config.deadline_s, 10.0))
    run.server = server_info(config.endpoint, min(config.timeout_s, config.deadline_s))
    if backend_factory is not None:
        run.host = host_summary(backend_factory)
    else:  # no GPU sampling: the host is still named, so history and estimates tell machines apart
        run.host = {"hostname": socket.gethostname(), "driver_version": None, "gpus": [], "nvml": "not read (--no-gpu)"}
    if run.server["models"] and config.model not in run.server["models"]:
        run.notes.append(f"the server lists models {', '.join(run.server['models'][:5])}, not {config.model!r}")
    if config.warmup:
        try:
            warm_up(config, run.notes, on_message)
        except KeyboardInterrupt:
            run.interrupted, run.stop_reason = True, INTERRUPTED
            run.notes.append("interrupted during the warm-up: nothing was measured")
            run.best, run.best_reason = None, "interrupted during the warm-up"
            return run
    elif config.include_usage:
        run.notes.append("no warm-up: stream_options support not checked")
    counter = TokenCounter(
        config.endpoint, config.model, run.server.get("engine"), min(config.timeout_s, config.deadline_s)
    )
    for concurrency in config.concurrencies:
        try:
            level = run_level(config, concurrency, monitor=monitor, on_progress=on_progress, counter=counter)
        except KeyboardInterrupt:
            run.interrupted, run.stop_reason = True, INTERRUPTED
            break
        run.levels.append(level)
        if on_message is not None:
            on_message(level_line(level))
        if level.stop_reason is not None:
            run.stop_reason = level.stop_reason
            run.interrupted = level.stop_reason == INTERRUPTED
            break
    run.best, run.best_reason = best_level(run.levels, slo_ms=config.slo_ms, max_error_rate=config.max_error_rate)
    closed = [lv.concurrency for lv in run.levels if any(m.startswith(STREAM_CLOSED) for m in lv.errors)]
    if closed and min(closed) > 1 and any(lv.concurrency == 1 and lv.requests_sent for lv in run.levels):
        run.notes.append(
            "streams were cut only when several requests were in flight: some servers end the running "
            "request when another arrives (llama-cpp-python's server does, unless started with "
            "--interrupt_requests False)"
        )
    cut = sum(lv.requests_cut for lv in run.levels)
    if cut:
        run.notes.append(
            f"{cut} requests were cut (still running {LEVEL_END_GRACE_S:g} s after their level's --duration, or "
            "when it stopped early): counted as cut, neither answered nor failed, and left out of the figures"
        )
    empty = sum(lv.requests_without_text for lv in run.levels)
    if empty:
        run.notes.append(
            f"{empty} requests generated no text (the model ended its answer at once): they count as "
            "answered, without a TTFT; --ignore-eos or other prompts make them generate"
        )
    run.server["tokenizer"] = None if counter.route is None else counter.route.path
    token_notes(run, counter)
    return run


def token_notes(run: BenchRun, counter: TokenCounter) -> None:
    """Say how tokens were counted when not by usage, whether usage and tokenizer agree, and whether
    the server generated more than asked (then the stored workload says so: issue 20, item 3)."""
    sources = {r.token_source for lv in run.levels for r in lv.request_results if r.ok}
    if "tokenizer" in sources and counter.route is not None:
        run.notes.append(
            f"output tokens counted by the server's tokenizer ({counter.route.path}) from the streamed text: "
            "the server sent no usage"
        )
    if "estimated" in sources:
        why = "no tokenizer endpoint answered" if counter.route is None else "its tokenizer did not answer for all"
        run.notes.append(
            "output tokens estimated from the streamed text (about 4 characters a token, at least one per "
            f"event): the server sent no usage and {why}; token figures are marked estimated"
        )
    if (note := counter.note()) is not None:
        run.notes.append(note)
    over = sum(lv.requests_over_max_tokens for lv in run.levels)
    if over:
        answered = sum(lv.requests_ok for lv in run.levels)
        most = max(lv.output_tokens_max or 0 for lv in run.levels)
        workload = run.config.workload
        run.notes.append(
            f"the server ignores max_tokens: {over} of {answered} answered requests generated more tokens than "
            f"asked (up to {most} under max_tokens={workload.max_tokens}); stored as that workload, "
            "not compared with runs that honoured max_tokens"
        )
        workload.max_tokens_ignored_up_to = most


def level_line(level: LevelResult) -> str:
    """One line saying how a level went (the progress display without a terminal)."""
    text = (
        f"concurrency {level.concurrency}: {level.requests_ok} answered, {level.requests_failed} failed"
        f"{f', {level.requests_cut} cut at the end' if level.requests_cut else ''} in {level.duration_s:.1f} s"
    )
    if level.output_tokens_per_s is not None and level.requests_ok:
        text += f", {level.output_tokens_per_s:.1f} output tokens/s"
    if level.stop_reason is not None:
        text += f" — {level.stop_reason}"
    return text
