"""The bench history: SQLite store (schema version, bad files), comparing runs, time-to-finish
estimates. Runs are real ones, measured against the local test server."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest

from provision.bench.client import Endpoint
from provision.bench.config import BenchConfig
from provision.bench.history import compare, estimate, format_duration
from provision.bench.historydb import SCHEMA_VERSION, default_db_path
from provision.bench.runner import BenchRun, run_bench
from provision.bench.stats import LevelResult
from provision.bench.store import HistoryStore, StoredRun
from provision.bench.workload import Workload
from provision.errors import UsageError
from tests.unit.test_bench_server import FakeServer, Script


def measured_run(script: Script, concurrencies: list[int], requests: int = 4, timeout_s: float = 5.0) -> BenchRun:
    with FakeServer(script) as srv:
        cfg = BenchConfig(
            endpoint=Endpoint.parse(srv.url),
            model="fake-model",
            workload=Workload(prompt_tokens=8, max_tokens=4),
            concurrencies=concurrencies,
            requests=requests,
            warmup=0,
            timeout_s=timeout_s,
        )
        return run_bench(cfg)


@pytest.fixture(scope="module")
def sweep() -> BenchRun:
    return measured_run(Script(tokens=4, per_token_s=0.005, http_errors={1: 500}), [1, 2])


def test_default_path_follows_xdg() -> None:
    assert default_db_path({"XDG_DATA_HOME": "/data", "HOME": "/home/u"}) == Path("/data/gpuprov/bench.db")
    assert default_db_path({"HOME": "/home/u"}) == Path("/home/u/.local/share/gpuprov/bench.db")
    # the XDG spec: an empty or relative XDG_DATA_HOME is ignored
    assert default_db_path({"XDG_DATA_HOME": "", "HOME": "/h"}) == Path("/h/.local/share/gpuprov/bench.db")
    assert default_db_path({"XDG_DATA_HOME": "rel", "HOME": "/h"}) == Path("/h/.local/share/gpuprov/bench.db")


def test_save_and_read_back_every_level(tmp_path: Path, sweep: BenchRun) -> None:
    db = tmp_path / "sub" / "bench.db"
    with HistoryStore(db) as store:
        ids = store.save(sweep, profile="rtx4080-quiet")
        runs = store.runs()
        rows = store.request_rows(ids[0])
    assert len(ids) == 2 and [r.id for r in runs] == sorted(ids, reverse=True)
    first = next(r for r in runs if r.id == ids[0])
    assert first.concurrency == 1 and first.profile == "rtx4080-quiet" and first.model == "fake-model"
    assert first.level == dataclasses.replace(sweep.levels[0], request_results=[])
    assert first.level.errors == {"HTTP 500: injected failure of request 1": 1}
    assert first.workload["key"] == sweep.config.workload.key() == first.workload_key
    assert [r["idx"] for r in rows] == [0, 1, 2, 3]
    assert [r["ok"] for r in rows] == [1, 0, 1, 1] and rows[1]["error"].startswith("HTTP 500")
    assert rows[0]["ttft_ms"] > 0 and rows[0]["output_tokens"] == 4
    assert len({r.sweep_id for r in runs}) == 1
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_partial_runs_are_kept_with_why_they_stopped(tmp_path: Path) -> None:
    run = measured_run(Script(tokens=2, hang_from=1), [1, 2], requests=20, timeout_s=0.2)
    assert len(run.levels) == 1 and run.stop_reason is not None  # stopped in the first level
    with HistoryStore(tmp_path / "b.db") as store:
        [run_id] = store.save(run)
        stored = store.get(run_id)
    assert not stored.complete and stored.stop_reason == run.stop_reason
    assert stored.level.requests_ok == 1 and stored.level.requests_failed == 5


def test_newer_schema_is_refused_not_rewritten(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    HistoryStore(db).close()
    with sqlite3.connect(db) as con:
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(UsageError, match="newer than this gpuprov reads"):
        HistoryStore(db)


def test_files_that_are_not_a_bench_history(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not sqlite\n" * 100)
    with pytest.raises(UsageError, match="not a gpuprov bench history database"):
        HistoryStore(text)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as con:
        con.execute("CREATE TABLE t (x)")
    with pytest.raises(UsageError, match="not a gpuprov bench history: use another --db"):
        HistoryStore(other)
    with pytest.raises(UsageError, match="is a directory"):
        HistoryStore(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UsageError, match="cannot create"):
        HistoryStore(blocker / "bench.db")


def test_unknown_run_id(tmp_path: Path) -> None:
    with HistoryStore(tmp_path / "b.db") as store, pytest.raises(UsageError, match="no run 42"):
        store.get(42)


def _stored(
    run_id: int,
    *,
    rps: float | None,
    tps: float,
    ttft: float,
    created: str = "2026-01-01T00:00:00+00:00",
    concurrency: int = 4,
    failed: int = 0,
    workload: str = "w",
    complete: bool = True,
) -> StoredRun:
    level = LevelResult(
        concurrency=concurrency,
        requests_sent=10,
        requests_ok=10 - failed,
        requests_failed=failed,
        duration_s=10.0,
        requests_per_s=rps,
        output_tokens_per_s=tps,
    )
    level.ttft_ms.p50 = ttft
    return StoredRun(
        id=run_id,
        sweep_id="s",
        created_at=created,
        url="http://h:1",
        engine="vllm",
        engine_version="0.11.0",
        model="m",
        profile=None,
        hostname="h",
        gpu_names="NVIDIA GeForce RTX 4080",
        workload_key=workload,
        concurrency=concurrency,
        complete=complete,
        stop_reason=None,
        is_best=False,
        level=level,
    )


def test_compare_gives_ratios_and_says_which_way_is_better() -> None:
    before = _stored(1, rps=0.5, tps=100.0, ttft=200.0)
    after = _stored(2, rps=0.75, tps=150.0, ttft=100.0)
    changes, warnings = compare(before, after)
    by = {c.metric: c for c in changes}
    assert by["output tokens/s"].ratio == pytest.approx(1.5) and by["output tokens/s"].improved is True
    assert by["TTFT p50 ms"].ratio == pytest.approx(0.5) and by["TTFT p50 ms"].improved is True
    assert by["TTFT p90 ms"].ratio is None and by["TTFT p90 ms"].improved is None
    assert by["failed requests"].ratio is None  # 0 before: no ratio
    near, _ = compare(before, _stored(4, rps=0.5, tps=100.5, ttft=200.0))
    assert near[0].ratio == pytest.approx(1.005) and near[0].improved is None  # within 1%: no change
    assert warnings == []
    _, warnings = compare(before, _stored(3, rps=0.4, tps=80, ttft=300, concurrency=8, workload="v", failed=1))
    assert len(warnings) == 3


def test_estimate_uses_each_configurations_newest_clean_run() -> None:
    runs = [
        _stored(1, rps=0.92, tps=1, ttft=1, concurrency=4, created="2026-01-01T00:00:00+00:00"),
        _stored(2, rps=0.46, tps=1, ttft=1, concurrency=4, created="2026-01-02T00:00:00+00:00"),  # newer: wins
        _stored(3, rps=2.0, tps=1, ttft=1, concurrency=8, failed=1),  # failures: not a basis
        _stored(4, rps=5.0, tps=1, ttft=1, concurrency=16, complete=False),  # stopped early: neither
        _stored(5, rps=0.23, tps=1, ttft=1, concurrency=1),
    ]
    estimates, skipped, excluded = estimate(runs, 200_000)
    assert [(e.run.id, round(e.seconds)) for e in estimates] == [(2, round(200_000 / 0.46)), (5, round(200_000 / 0.23))]
    assert skipped == []
    assert [r.id for r in excluded] == [3, 4]  # said, not silently dropped
    assert estimate([_stored(6, rps=None, tps=0, ttft=1)], 10)[1][0].id == 6
    # with a tolerated share of failures, the c=8 run counts; a run that stopped early never does
    estimates, _, excluded = estimate(runs, 200_000, max_error_rate=0.5)
    assert 3 in {e.run.id for e in estimates} and [r.id for r in excluded] == [4]


def test_format_duration_like_the_rtx4080_audit() -> None:
    # the audit's table: 200K requests at 0.92 req/s -> "2.5d (60.3h)" (from its unrounded rate)
    assert format_duration(200_000 / 0.92) == "2.5 d (60.4 h)"
    assert format_duration(45) == "45 s"
    assert format_duration(750) == "12.5 min"
    assert format_duration(5.3 * 3600) == "5.3 h"
