"""The ``--json`` documents of ``gpuprov bench`` (run, history --compare, estimate): what scripts read.
The tables for people are :mod:`provision.bench.tables`."""

from __future__ import annotations

from typing import Any

from provision.bench.history import Estimate, MetricChange, format_duration
from provision.bench.runner import BenchRun
from provision.bench.store import StoredRun


def run_document(bench: BenchRun, stored: list[int], db: str | None, code: int) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "exit_code": code,
        "url": bench.config.endpoint.url,
        "model": bench.config.model,
        "started_at": bench.started_at,
        "server": bench.server,
        "host": bench.host,
        "workload": bench.config.workload.to_dict(),
        "usage_requested": bench.config.include_usage,
        "timeout_s": bench.config.timeout_s,
        "request_timeout_s": bench.config.request_timeout_s,
        "levels": [lv.to_dict() for lv in bench.levels],
        "best": None if bench.best is None else {"concurrency": bench.best.concurrency, "reason": bench.best_reason},
        "best_reason": bench.best_reason,
        "slo_ms": bench.config.slo_ms,
        "notes": bench.notes,
        "stop_reason": bench.stop_reason,
        "stored_run_ids": stored,
        "db": db,
    }


def compare_document(
    before: StoredRun, after: StoredRun, changes: list[MetricChange], warnings: list[str]
) -> dict[str, Any]:
    return {
        "before": before.to_dict(),
        "after": after.to_dict(),
        "warnings": warnings,
        "changes": [
            {
                "metric": c.metric,
                "before": c.before,
                "after": c.after,
                "ratio": c.ratio,
                "higher_is_better": c.higher_is_better,
                "improved": c.improved,
            }
            for c in changes
        ],
    }


def estimate_document(
    db: str, requests: int, estimates: list[Estimate], skipped: list[StoredRun], excluded: list[StoredRun]
) -> dict[str, Any]:
    return {
        "db": db,
        "requests": requests,
        "skipped_run_ids": [r.id for r in skipped],
        "excluded_run_ids": [r.id for r in excluded],
        "estimates": [
            {
                "run_id": e.run.id,
                "model": e.run.model,
                "engine": e.run.engine,
                "engine_version": e.run.engine_version,
                "gpu_names": e.run.gpu_names,
                "profile": e.run.profile,
                "workload_key": e.run.workload_key,
                "concurrency": e.run.concurrency,
                "requests_per_s": e.run.level.requests_per_s,
                "seconds": e.seconds,
                "human": format_duration(e.seconds),
            }
            for e in estimates
        ],
    }
