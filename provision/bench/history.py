"""Reading the history: how two runs differ (as ratios), and how long N requests would take at each
stored configuration (the RTX 4080 audit's "200K requests: 2.5 d at 0.92 req/s" table, for any host).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from provision.bench.store import StoredRun

#: a ratio this close to 1 is reported as no change (run-to-run noise is larger than this)
SAME_WITHIN = 0.01

#: (label, attribute path in LevelResult, higher is better)
COMPARED_METRICS = (
    ("output tokens/s", "output_tokens_per_s", True),
    ("requests/s", "requests_per_s", True),
    ("TTFT p50 ms", "ttft_ms.p50", False),
    ("TTFT p90 ms", "ttft_ms.p90", False),
    ("ITL p50 ms", "itl_ms.p50", False),
    ("TPOT p50 ms", "tpot_ms.p50", False),
    ("latency p50 ms", "latency_ms.p50", False),
    ("latency p90 ms", "latency_ms.p90", False),
    ("failed requests", "requests_failed", False),
)


@dataclass
class MetricChange:
    metric: str
    before: float | None
    after: float | None
    #: after / before (None when either is missing or before is 0)
    ratio: float | None
    higher_is_better: bool

    @property
    def improved(self) -> bool | None:
        """True/False when the change is more than :data:`SAME_WITHIN` either way; None otherwise."""
        if self.ratio is None or abs(self.ratio - 1) < SAME_WITHIN:
            return None
        return (self.ratio > 1) == self.higher_is_better


def _value(run: StoredRun, path: str) -> float | None:
    obj: object = run.level
    for part in path.split("."):
        obj = getattr(obj, part)
    return None if obj is None else float(obj)  # type: ignore[arg-type]


def compare(before: StoredRun, after: StoredRun) -> tuple[list[MetricChange], list[str]]:
    """Each metric of two runs and the ratio after/before; plus warnings when they are not alike."""
    changes = []
    for label, path, higher in COMPARED_METRICS:
        a, b = _value(before, path), _value(after, path)
        ratio = b / a if a not in (None, 0) and b is not None else None
        changes.append(MetricChange(label, a, b, ratio, higher))
    warnings = []
    if before.workload_key != after.workload_key:
        warnings.append(f"different workloads ({before.workload_key} / {after.workload_key})")
    if before.model != after.model:
        warnings.append(f"different models ({before.model} / {after.model})")
    if before.concurrency != after.concurrency:
        warnings.append(f"different concurrency ({before.concurrency} / {after.concurrency})")
    for run in (before, after):
        if run.level.requests_failed or not run.complete:
            warnings.append(f"run {run.id} has failed requests or stopped early")
    return changes, warnings


@dataclass
class Estimate:
    run: StoredRun
    requests: int
    seconds: float


def estimate(
    runs: Sequence[StoredRun], requests: int, *, max_error_rate: float = 0.0
) -> tuple[list[Estimate], list[StoredRun], list[StoredRun]]:
    """For each stored configuration (host, GPUs, engine, model, profile, workload, concurrency), the
    newest complete run whose share of failed requests is at most ``max_error_rate``: the time
    ``requests`` successful requests take at its rate, fastest first. Also returns the configurations
    whose newest such run has no rate (skipped), and the newest run of each configuration that has
    no such run (excluded: stopped early or more failures), so none disappears without a word."""
    from provision.bench.stats import error_rate

    def key(run: StoredRun) -> tuple[object, ...]:
        return (
            run.hostname,
            run.gpu_names,
            run.engine,
            run.engine_version,
            run.model,
            run.profile,
            run.workload_key,
            run.concurrency,
        )

    newest: dict[tuple[object, ...], StoredRun] = {}
    rejected: dict[tuple[object, ...], StoredRun] = {}
    for run in sorted(runs, key=lambda r: (r.created_at, r.id), reverse=True):
        lv = run.level
        if not run.complete or not lv.requests_ok or error_rate(lv.requests_ok, lv.requests_failed) > max_error_rate:
            rejected.setdefault(key(run), run)
            continue
        newest.setdefault(key(run), run)
    excluded = sorted((r for k, r in rejected.items() if k not in newest), key=lambda r: r.id)
    estimates, skipped = [], []
    for run in newest.values():
        rate = run.level.requests_per_s
        if not rate:
            skipped.append(run)
            continue
        estimates.append(Estimate(run, requests, requests / rate))
    estimates.sort(key=lambda e: (e.seconds, e.run.id))
    return estimates, skipped, excluded


def format_duration(seconds: float) -> str:
    """'45 s', '12.5 min', '5.3 h', '2.5 d (60.3 h)'."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    hours = seconds / 3600
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} d ({hours:.1f} h)"
