"""The benchmark runs in the history database (:mod:`provision.bench.historydb`: file, schema, migrations).

A *run* is one concurrency level of one ``gpuprov bench`` invocation (the configuration a
time-to-finish estimate is about); the levels of one invocation share a ``sweep_id``. Each row
keeps the searchable facts in columns and the full results, workload, server and host summaries
as JSON; the ``requests`` table keeps every request's timing and error.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from dataclasses import dataclass, field
from typing import Any

from provision.bench.historydb import HistoryDatabase
from provision.bench.stats import LevelResult
from provision.errors import UsageError


@dataclass
class StoredRun:
    id: int
    sweep_id: str
    created_at: str
    url: str
    engine: str | None
    engine_version: str | None
    model: str
    profile: str | None
    hostname: str | None
    gpu_names: str | None
    workload_key: str
    concurrency: int
    complete: bool
    stop_reason: str | None
    is_best: bool
    level: LevelResult
    workload: dict[str, Any] = field(default_factory=dict)
    server: dict[str, Any] = field(default_factory=dict)
    host: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def engine_label(self) -> str:
        if not self.engine:
            return "unknown"
        return f"{self.engine} {self.engine_version}" if self.engine_version else self.engine

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "sweep_id": self.sweep_id,
            "created_at": self.created_at,
            "url": self.url,
            "engine": self.engine,
            "engine_version": self.engine_version,
            "model": self.model,
            "profile": self.profile,
            "hostname": self.hostname,
            "gpu_names": self.gpu_names,
            "workload_key": self.workload_key,
            "concurrency": self.concurrency,
            "complete": self.complete,
            "stop_reason": self.stop_reason,
            "is_best": self.is_best,
            "results": self.level.to_dict(),
            "workload": self.workload,
            "server": self.server,
            "host": self.host,
            "notes": self.notes,
        }


class HistoryStore(HistoryDatabase):
    """``gpuprov bench`` runs: stored per level, listed, read back."""

    # -- writing -----------------------------------------------------------------------------------
    def save(self, run: Any, *, profile: str | None = None) -> list[int]:
        """Store each level of a :class:`~provision.bench.runner.BenchRun`; returns the new run ids."""
        sweep_id = uuid.uuid4().hex[:12]
        workload = run.config.workload.to_dict()
        gpu_names = ", ".join(g.get("name", "?") for g in run.host.get("gpus", [])) or None
        ids: list[int] = []
        try:
            with self._db:
                for level in run.levels:
                    cur = self._db.execute(
                        "INSERT INTO runs (sweep_id, created_at, url, engine, engine_version, model, profile, "
                        "hostname, gpu_names, workload_key, concurrency, complete, stop_reason, is_best, "
                        "requests_ok, requests_failed, duration_s, requests_per_s, output_tokens_per_s, "
                        "ttft_p50_ms, latency_p90_ms, token_source, result_json, workload_json, server_json, "
                        "host_json, notes_json) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        (
                            sweep_id,
                            run.started_at,
                            run.config.endpoint.url,
                            run.server.get("engine"),
                            run.server.get("engine_version"),
                            run.config.model,
                            profile,
                            run.host.get("hostname"),
                            gpu_names,
                            workload["key"],
                            level.concurrency,
                            int(level.complete),
                            level.stop_reason,
                            int(run.best is level),
                            level.requests_ok,
                            level.requests_failed,
                            level.duration_s,
                            level.requests_per_s,
                            level.output_tokens_per_s,
                            level.ttft_ms.p50,
                            level.latency_ms.p90,
                            level.token_source,
                            json.dumps(level.to_dict()),
                            json.dumps(workload),
                            json.dumps(run.server),
                            json.dumps(run.host),
                            json.dumps(run.notes),
                        ),
                    )
                    run_id = int(cur.lastrowid or 0)
                    ids.append(run_id)
                    self._db.executemany(
                        "INSERT INTO requests (run_id, idx, ok, started_s, ttft_ms, latency_ms, output_tokens, "
                        "prompt_tokens, token_source, error) VALUES (?,?,?,?,?,?,?,?,?,?)",
                        [
                            (
                                run_id,
                                r.index,
                                int(r.ok),
                                r.started_s,
                                _ms(r.ttft_s),
                                _ms(r.latency_s),
                                r.output_tokens,
                                r.prompt_tokens,
                                r.token_source,
                                r.error,
                            )
                            for r in level.request_results
                        ],
                    )
        except sqlite3.Error as exc:
            raise UsageError(f"{self.path}: cannot store the run: {exc}") from None
        return ids

    # -- reading -----------------------------------------------------------------------------------
    def runs(self, *, model: str | None = None, limit: int | None = None) -> list[StoredRun]:
        """Newest first."""
        sql = "SELECT * FROM runs"
        args: list[Any] = []
        if model is not None:
            sql += " WHERE model = ?"
            args.append(model)
        sql += " ORDER BY created_at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [self._row(row) for row in self._query(sql, args)]

    def get(self, run_id: int) -> StoredRun:
        rows = self._query("SELECT * FROM runs WHERE id = ?", [run_id])
        if not rows:
            raise UsageError(f"no run {run_id} in {self.path} (gpuprov bench history lists them)")
        return self._row(rows[0])

    def request_rows(self, run_id: int) -> list[dict[str, Any]]:
        cur = self._db.execute("SELECT * FROM requests WHERE run_id = ? ORDER BY idx", [run_id])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    @staticmethod
    def _row(row: sqlite3.Row) -> StoredRun:
        return StoredRun(
            id=row["id"],
            sweep_id=row["sweep_id"],
            created_at=row["created_at"],
            url=row["url"],
            engine=row["engine"],
            engine_version=row["engine_version"],
            model=row["model"],
            profile=row["profile"],
            hostname=row["hostname"],
            gpu_names=row["gpu_names"],
            workload_key=row["workload_key"],
            concurrency=row["concurrency"],
            complete=bool(row["complete"]),
            stop_reason=row["stop_reason"],
            is_best=bool(row["is_best"]),
            level=LevelResult.from_dict(json.loads(row["result_json"])),
            workload=json.loads(row["workload_json"]),
            server=json.loads(row["server_json"]),
            host=json.loads(row["host_json"]),
            notes=json.loads(row["notes_json"]),
        )


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000
