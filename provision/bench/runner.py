"""The load: ``concurrency`` workers, each sending its next request as soon as its last one ended
(a closed loop, like a pool of clients), for ``requests`` requests or ``duration_s`` seconds; and
the sweep over several concurrency levels, naming the best.

Failures are counted, never dropped. A level stops early when the server looks gone — as many
failures in a row as ``max(5, 2 × concurrency)`` — or on Ctrl-C; what was measured until then is
kept and says why it stopped.
"""

from __future__ import annotations

import datetime as _dt
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from provision.bench.client import STREAM_CLOSED, Connection, Endpoint, RequestResult
from provision.bench.gpu import GpuMonitor
from provision.bench.stats import LevelResult, best_level, check_max_error_rate, summarize
from provision.bench.workload import Workload
from provision.errors import GpuprovError, UsageError

#: the stop reason of a level (and run) the user interrupted
INTERRUPTED = "interrupted (Ctrl-C)"

#: request indices of warm-up requests (never the same prompts as measured ones)
WARMUP_INDEX_BASE = 1_000_000_000

#: on_progress(concurrency, requests done, requests planned or None for --duration, seconds elapsed)
Progress = Callable[[int, int, "int | None", float], None]


class BenchError(GpuprovError):
    """The benchmark cannot start: server unreachable, or it rejects the request itself."""


#: requests in flight at most: one client thread each; past this a sweep measures the client, not the server
MAX_CONCURRENCY = 1024


@dataclass
class BenchConfig:
    endpoint: Endpoint
    model: str
    workload: Workload
    concurrencies: list[int] = field(default_factory=lambda: [1])
    #: requests per level (None with duration_s: as many as fit; both None: 4 × concurrency, at least 8)
    requests: int | None = None
    duration_s: float | None = None
    #: seconds without a byte from the server before a request counts as failed
    timeout_s: float = 60.0
    warmup: int = 1
    slo_ms: float | None = None
    #: best level: the highest share of failed requests a level may have (0: none)
    max_error_rate: float = 0.0
    include_usage: bool = True

    def __post_init__(self) -> None:
        if not self.concurrencies or any(c < 1 for c in self.concurrencies):
            raise UsageError("--concurrency takes positive integers, like 1,2,4,8")
        if max(self.concurrencies) > MAX_CONCURRENCY:
            raise UsageError(
                f"--concurrency {max(self.concurrencies)}: at most {MAX_CONCURRENCY} requests in flight "
                "(one client thread each)"
            )
        check_max_error_rate(self.max_error_rate)
        if self.requests is not None and self.requests < 1:
            raise UsageError(f"--requests must be at least 1, not {self.requests}")
        if self.duration_s is not None and self.duration_s <= 0:
            raise UsageError(f"--duration must be more than 0 seconds, not {self.duration_s:g}")
        if self.timeout_s <= 0:
            raise UsageError(f"--timeout must be more than 0 seconds, not {self.timeout_s:g}")
        if self.warmup < 0:
            raise UsageError(f"--warmup cannot be negative ({self.warmup})")
        if self.slo_ms is not None and self.slo_ms <= 0:
            raise UsageError(f"--slo-ms must be more than 0, not {self.slo_ms:g}")
        if not self.model.strip():
            raise UsageError("--model must name the model the server serves")

    def requests_for(self, concurrency: int) -> int | None:
        if self.requests is not None:
            return self.requests
        if self.duration_s is not None:
            return None
        return max(8, 4 * concurrency)


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


def check_reachable(endpoint: Endpoint, timeout_s: float) -> None:
    """A TCP connection to the server, so "server down" is one clear line before anything runs."""
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout_s):
            pass
    except socket.gaierror as exc:
        raise BenchError(f"cannot resolve {endpoint.host!r} ({exc.strerror or exc}): check the URL") from None
    except ConnectionRefusedError:
        raise BenchError(
            f"cannot connect to {endpoint.url}: connection refused — is the server running on port {endpoint.port}?"
        ) from None
    except TimeoutError:
        raise BenchError(f"cannot connect to {endpoint.url}: no answer within {timeout_s:g} s") from None
    except OSError as exc:
        raise BenchError(f"cannot connect to {endpoint.url}: {exc.strerror or exc}") from None


def server_info(endpoint: Endpoint, timeout_s: float) -> dict[str, Any]:
    """What the server says about itself; an engine is named only when it identifies itself."""
    conn = Connection(endpoint, timeout_s=timeout_s)
    info: dict[str, Any] = {"url": endpoint.url, "engine": None, "engine_version": None, "models": []}
    listing = conn.get_json("/v1/models")
    owners: set[str] = set()
    if isinstance(listing, dict) and isinstance(listing.get("data"), list):
        for item in listing["data"]:
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                info["models"].append(item["id"])
                if isinstance(item.get("owned_by"), str):
                    owners.add(item["owned_by"])
    vllm = conn.get_json("/version")  # vLLM: {"version": "0.11.0"}
    ollama = conn.get_json("/api/version")  # Ollama: {"version": "0.12.3"}
    if "vllm" in owners and isinstance(vllm, dict):
        info["engine"], info["engine_version"] = "vllm", vllm.get("version")
    elif isinstance(ollama, dict) and isinstance(ollama.get("version"), str):
        info["engine"], info["engine_version"] = "ollama", ollama["version"]
    elif "llamacpp" in owners:
        info["engine"] = "llama.cpp"
        props = conn.get_json("/props")  # llama-server: {"build_info": "b6869-ab3f5f0a", ...}
        if isinstance(props, dict) and isinstance(props.get("build_info"), str):
            info["engine_version"] = props["build_info"]
    elif "vllm" in owners:
        info["engine"] = "vllm"
    else:
        # llama-cpp-python's server (owned_by "me") is a FastAPI app titled "🦙 llama.cpp Python API"
        api = conn.get_json("/openapi.json")
        about = api.get("info") if isinstance(api, dict) else None
        if isinstance(about, dict) and "llama.cpp Python" in str(about.get("title", "")):
            info["engine"] = "llama-cpp-python"
            info["engine_version"] = about.get("version") if isinstance(about.get("version"), str) else None
    return info


def host_summary(backend_factory: Callable[[], Any]) -> dict[str, Any]:
    """Hostname, driver and each GPU's name and power limit, read once through the probe."""
    from provision.probe import probe_gpus

    summary: dict[str, Any] = {"hostname": socket.gethostname(), "driver_version": None, "gpus": []}
    try:
        driver, gpus = probe_gpus(backend_factory())
    except GpuprovError as exc:
        summary["nvml"] = str(exc)
        return summary
    summary["nvml"] = "ok" if driver.nvml.ok else driver.nvml.message
    summary["driver_version"] = driver.driver_version
    summary["cuda_driver_version"] = driver.cuda_driver_version
    summary["gpus"] = [
        {"index": g.index, "name": g.name, "vram_total_mib": g.vram_total_mib,
         "power_limit_w": g.power_limit_w, "power_default_limit_w": g.power_default_limit_w,
         "persistence_mode": g.persistence_mode}
        for g in gpus
    ]  # fmt: skip
    return summary


def warm_up(config: BenchConfig, notes: list[str]) -> None:
    """Send the warm-up requests (not measured). The first one also checks that the server takes the
    request at all — a wrong model name or path stops here with the server's own message — and
    whether it accepts ``stream_options`` (older servers reject it: then tokens are counted from
    the stream)."""
    conn = Connection(config.endpoint, timeout_s=config.timeout_s)
    try:
        for i in range(config.warmup):
            index = WARMUP_INDEX_BASE + i
            body = config.workload.body(index, config.model, include_usage=config.include_usage)
            result = conn.stream(index, config.workload.path, body)
            if (not result.ok and i == 0 and config.include_usage and result.error_kind == "http"
                    and "stream_options" in (result.error or "")):  # fmt: skip
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
) -> LevelResult:
    planned = config.requests_for(concurrency)
    deadline_s = None if config.duration_s is None else time.perf_counter() + config.duration_s
    abort_after = max(5, 2 * concurrency)
    lock = threading.Lock()
    stop = threading.Event()
    results: list[RequestResult] = []
    state: dict[str, Any] = {"next": 0, "in_a_row": 0, "stop_reason": None}
    start = time.perf_counter()
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
            index = state["next"]
            state["next"] += 1
            return index

    def worker() -> None:
        conn = Connection(config.endpoint, timeout_s=config.timeout_s)
        try:
            while (index := claim()) is not None:
                body = config.workload.body(index, config.model, include_usage=config.include_usage)
                result = conn.stream(index, config.workload.path, body)
                with lock:
                    results.append(result)
                    state["in_a_row"] = 0 if result.ok else state["in_a_row"] + 1
                    if state["in_a_row"] >= abort_after and not stop.is_set():
                        state["stop_reason"] = f"stopped after {abort_after} failed requests in a row: {result.error}"
                        stop.set()
                    done = len(results)
                if on_progress is not None:
                    on_progress(concurrency, done, planned, time.perf_counter() - start)
        finally:
            conn.close()

    if on_progress is not None:
        on_progress(concurrency, 0, planned, 0.0)
    threads = [threading.Thread(target=worker, name=f"gpuprov-bench-{i}", daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    interrupted = False
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.1)
    except KeyboardInterrupt:
        interrupted = True
        stop.set()
    end = time.perf_counter()
    with lock:
        finished = sorted(results, key=lambda r: r.index)
        stop_reason = INTERRUPTED if interrupted else state["stop_reason"]
    for r in finished:
        r.started_s -= start
    level = summarize(concurrency, finished, end - start, stop_reason=stop_reason)
    level.request_results = finished
    if monitor is not None:
        monitor.sample_now()
        level.gpu = monitor.summary(start, time.perf_counter())
    return level


def run_bench(
    config: BenchConfig,
    *,
    monitor: GpuMonitor | None = None,
    on_progress: Progress | None = None,
    backend_factory: Callable[[], Any] | None = None,
) -> BenchRun:
    """Check the server, warm up, run each concurrency level in order, pick the best."""
    run = BenchRun(config=config, started_at=_dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat())
    check_reachable(config.endpoint, min(config.timeout_s, 10.0))
    run.server = server_info(config.endpoint, min(config.timeout_s, 5.0))
    if backend_factory is not None:
        run.host = host_summary(backend_factory)
    else:  # no GPU sampling: the host is still named, so history and estimates tell machines apart
        run.host = {"hostname": socket.gethostname(), "driver_version": None, "gpus": [], "nvml": "not read (--no-gpu)"}
    if run.server["models"] and config.model not in run.server["models"]:
        run.notes.append(f"the server lists models {', '.join(run.server['models'][:5])}, not {config.model!r}")
    if config.warmup:
        try:
            warm_up(config, run.notes)
        except KeyboardInterrupt:
            run.interrupted, run.stop_reason = True, INTERRUPTED
            run.notes.append("interrupted during the warm-up: nothing was measured")
            run.best, run.best_reason = None, "interrupted during the warm-up"
            return run
    elif config.include_usage:
        run.notes.append("no warm-up: stream_options support not checked")
    for concurrency in config.concurrencies:
        try:
            level = run_level(config, concurrency, monitor=monitor, on_progress=on_progress)
        except KeyboardInterrupt:
            run.interrupted, run.stop_reason = True, INTERRUPTED
            break
        run.levels.append(level)
        if level.stop_reason is not None:
            run.stop_reason = level.stop_reason
            run.interrupted = level.stop_reason == INTERRUPTED
            break
    run.best, run.best_reason = best_level(run.levels, slo_ms=config.slo_ms, max_error_rate=config.max_error_rate)
    closed = [lv.concurrency for lv in run.levels if any(m.startswith(STREAM_CLOSED) for m in lv.errors)]
    if closed and min(closed) > 1:
        run.notes.append(
            "streams were cut only when several requests were in flight: some servers end the running "
            "request when another arrives (llama-cpp-python's server does, unless started with "
            "--interrupt_requests False)"
        )
    empty = sum(lv.requests_without_text for lv in run.levels)
    if empty:
        run.notes.append(
            f"{empty} requests generated no text (the model ended its answer at once): they count as "
            "answered, without a TTFT; --ignore-eos or other prompts make them generate"
        )
    sources = {lv.token_source for lv in run.levels if lv.token_source != "none"}
    if "chunks" in sources or "mixed" in sources:
        run.notes.append(
            "output tokens counted as text-carrying stream events (the server sent no usage): "
            "servers that batch several tokens per event are undercounted"
        )
    return run
