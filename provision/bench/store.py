"""The benchmark history: a SQLite database, one row per measured configuration.

A *run* is one concurrency level of one ``gpuprov bench`` invocation (the configuration a
time-to-finish estimate is about); the levels of one invocation share a ``sweep_id``. Each row
keeps the searchable facts in columns and the full results, workload, server and host summaries
as JSON; the ``requests`` table keeps every request's timing and error. ``gpuprov monitor --record``
keeps its soak runs in the same file (schema 2): ``monitor_runs``, one row per recording, and
``monitor_samples``, one row per GPU per sample (the servers' figures ride on GPU 0's row).

The schema version is SQLite's ``user_version``; a database from a newer gpuprov is refused, not
rewritten. Default place: ``$XDG_DATA_HOME/gpuprov/bench.db`` (``~/.local/share/gpuprov/bench.db``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.bench.stats import LevelResult
from provision.errors import UsageError

SCHEMA_VERSION = 2

_SCHEMA_V1 = """
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    sweep_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    url TEXT NOT NULL,
    engine TEXT,
    engine_version TEXT,
    model TEXT NOT NULL,
    profile TEXT,
    hostname TEXT,
    gpu_names TEXT,
    workload_key TEXT NOT NULL,
    concurrency INTEGER NOT NULL,
    complete INTEGER NOT NULL,
    stop_reason TEXT,
    is_best INTEGER NOT NULL DEFAULT 0,
    requests_ok INTEGER NOT NULL,
    requests_failed INTEGER NOT NULL,
    duration_s REAL NOT NULL,
    requests_per_s REAL,
    output_tokens_per_s REAL,
    ttft_p50_ms REAL,
    latency_p90_ms REAL,
    token_source TEXT NOT NULL,
    result_json TEXT NOT NULL,
    workload_json TEXT NOT NULL,
    server_json TEXT NOT NULL,
    host_json TEXT NOT NULL,
    notes_json TEXT NOT NULL
);
CREATE INDEX runs_model ON runs (model, created_at);
CREATE TABLE requests (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    started_s REAL NOT NULL,
    ttft_ms REAL,
    latency_ms REAL,
    output_tokens INTEGER NOT NULL,
    prompt_tokens INTEGER,
    token_source TEXT NOT NULL,
    error TEXT
);
CREATE INDEX requests_run ON requests (run_id);
"""

#: schema 2: monitor soak recordings (``gpuprov monitor --record``)
_SCHEMA_V2 = """
CREATE TABLE monitor_runs (
    id INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    hostname TEXT,
    profile TEXT,
    interval_s REAL NOT NULL,
    duration_s REAL,
    gpu_names TEXT,
    units_json TEXT NOT NULL,
    notes_json TEXT NOT NULL
);
CREATE TABLE monitor_samples (
    run_id INTEGER NOT NULL REFERENCES monitor_runs (id) ON DELETE CASCADE,
    t_s REAL NOT NULL,
    at TEXT NOT NULL,
    gpu INTEGER NOT NULL,
    lost INTEGER NOT NULL,
    utilization_gpu_pct REAL,
    vram_used_mib REAL,
    vram_total_mib REAL,
    power_draw_w REAL,
    power_limit_w REAL,
    profile_power_limit_w REAL,
    temperature_c REAL,
    temperature_slowdown_c REAL,
    sm_clock_mhz REAL,
    memory_clock_mhz REAL,
    clock_event_reasons TEXT NOT NULL,
    xid_errors_json TEXT,
    servers_json TEXT
);
CREATE INDEX monitor_samples_run ON monitor_samples (run_id, t_s);
"""

#: the scripts that take a database from schema N-1 to N, in order
_MIGRATIONS = {1: _SCHEMA_V1, 2: _SCHEMA_V2}

MONITOR_COLUMNS = (
    "utilization_gpu_pct", "vram_used_mib", "vram_total_mib", "power_draw_w", "power_limit_w",
    "temperature_c", "temperature_slowdown_c", "sm_clock_mhz", "memory_clock_mhz",
)  # fmt: skip


def default_db_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME") or ""
    root = Path(base) if base and Path(base).is_absolute() else Path(env.get("HOME") or Path.home()) / ".local/share"
    return root / "gpuprov" / "bench.db"


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
            "id": self.id, "sweep_id": self.sweep_id, "created_at": self.created_at, "url": self.url,
            "engine": self.engine, "engine_version": self.engine_version, "model": self.model,
            "profile": self.profile, "hostname": self.hostname, "gpu_names": self.gpu_names,
            "workload_key": self.workload_key, "concurrency": self.concurrency, "complete": self.complete,
            "stop_reason": self.stop_reason, "is_best": self.is_best, "results": self.level.to_dict(),
            "workload": self.workload, "server": self.server, "host": self.host, "notes": self.notes,
        }  # fmt: skip


def unwritable_reason(path: Path) -> str | None:
    """Why SQLite could not create or write ``path`` (None: it can), found by trying as SQLite would:
    the file opened for writing, and a file made in its directory (where SQLite writes its journal)."""
    import tempfile

    existed = path.exists()
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o644))
    except OSError as exc:
        what = "write" if existed else "create"
        return f"{path}: cannot {what} the bench history: {exc.strerror or exc}"
    try:
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as exc:
        return (
            f"{path}: cannot write the bench history: cannot make files in {path.parent} "
            f"({exc.strerror or exc}), where SQLite writes its journal"
        )
    finally:
        if not existed:
            path.unlink(missing_ok=True)
    return None


class HistoryStore:
    def __init__(self, path: str | Path, *, write: bool = False) -> None:
        """Open (or create) the history; ``write``: the caller will store runs, so check that it can
        now, before any load is sent."""
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create {self.path.parent} for the bench history: {exc.strerror or exc}") from None
        if self.path.is_dir():
            raise UsageError(f"{self.path}: is a directory, expected the bench history database file")
        if write or not self.path.exists():
            reason = unwritable_reason(self.path)
            if reason is not None:
                raise UsageError(f"{reason}: use another --db, or --no-store")
        try:
            self._db = sqlite3.connect(self.path)
            self._db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.OperationalError as exc:  # cannot open or write: not a verdict on the content
            raise UsageError(f"{self.path}: cannot open the bench history ({exc}): use another --db") from None
        except sqlite3.DatabaseError as exc:
            raise UsageError(f"{self.path}: not a gpuprov bench history database ({exc})") from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise UsageError(
                f"{self.path}: bench history schema {version} is newer than this gpuprov reads ({SCHEMA_VERSION}): "
                "upgrade gpuprov, or use another --db"
            )
        if version == 0:
            tables = self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
            if tables:
                raise UsageError(f"{self.path}: an SQLite database, but not a gpuprov bench history: use another --db")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            # one transaction per step: the script and the version move together (executescript commits
            # first, so the BEGIN is explicit)
            self._db.executescript(f"BEGIN; {_MIGRATIONS[target]} PRAGMA user_version = {target}; COMMIT;")

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
                            sweep_id, run.started_at, run.config.endpoint.url, run.server.get("engine"),
                            run.server.get("engine_version"), run.config.model, profile,
                            run.host.get("hostname"), gpu_names, workload["key"], level.concurrency,
                            int(level.complete), level.stop_reason, int(run.best is level),
                            level.requests_ok, level.requests_failed, level.duration_s, level.requests_per_s,
                            level.output_tokens_per_s, level.ttft_ms.p50, level.latency_ms.p90,
                            level.token_source, json.dumps(level.to_dict()), json.dumps(workload),
                            json.dumps(run.server), json.dumps(run.host), json.dumps(run.notes),
                        ),
                    )  # fmt: skip
                    run_id = int(cur.lastrowid or 0)
                    ids.append(run_id)
                    self._db.executemany(
                        "INSERT INTO requests (run_id, idx, ok, started_s, ttft_ms, latency_ms, output_tokens, "
                        "prompt_tokens, token_source, error) VALUES (?,?,?,?,?,?,?,?,?,?)",
                        [
                            (run_id, r.index, int(r.ok), r.started_s, _ms(r.ttft_s), _ms(r.latency_s),
                             r.output_tokens, r.prompt_tokens, r.token_source, r.error)
                            for r in level.request_results
                        ],
                    )  # fmt: skip
        except sqlite3.Error as exc:
            raise UsageError(f"{self.path}: cannot store the run: {exc}") from None
        return ids

    def start_monitor_run(
        self, *, created_at: str, hostname: str | None, profile: str | None, interval_s: float,
        gpu_names: str | None, units: list[str], notes: list[str],
    ) -> int:  # fmt: skip
        try:
            with self._db:
                cur = self._db.execute(
                    "INSERT INTO monitor_runs (created_at, hostname, profile, interval_s, gpu_names, units_json, "
                    "notes_json) VALUES (?,?,?,?,?,?,?)",
                    (created_at, hostname, profile, interval_s, gpu_names, json.dumps(units), json.dumps(notes)),
                )
        except sqlite3.Error as exc:
            raise UsageError(f"{self.path}: cannot store the monitor run: {exc}") from None
        return int(cur.lastrowid or 0)

    def add_monitor_sample(self, run_id: int, sample: Mapping[str, Any]) -> None:
        """One :class:`provision.monitor.sampling.Sample` (as a dict): a row per GPU."""
        servers = json.dumps(sample.get("servers") or [])
        rows = []
        for i, g in enumerate(sample["gpus"]):
            ref = g.get("profile") or {}
            rows.append((
                run_id, sample["t_s"], sample["at"], g["index"], int(bool(g.get("lost"))),
                *(g.get(c) for c in MONITOR_COLUMNS), ref.get("power_limit_w"),
                ",".join(g.get("clock_event_reasons") or []),
                json.dumps(g["xid_errors"]) if g.get("xid_errors") else None, servers if i == 0 else None,
            ))  # fmt: skip
        if not rows and sample.get("servers"):
            empty = [None] * len(MONITOR_COLUMNS)
            rows.append((run_id, sample["t_s"], sample["at"], -1, 0, *empty, None, "", None, servers))
        cols = ", ".join(MONITOR_COLUMNS)
        try:
            with self._db:
                self._db.executemany(
                    f"INSERT INTO monitor_samples (run_id, t_s, at, gpu, lost, {cols}, profile_power_limit_w, "
                    "clock_event_reasons, xid_errors_json, servers_json) VALUES (?,?,?,?,?,"
                    + ",".join("?" * len(MONITOR_COLUMNS))
                    + ",?,?,?,?)",
                    rows,
                )
        except sqlite3.Error as exc:
            raise UsageError(f"{self.path}: cannot store the monitor sample: {exc}") from None

    def finish_monitor_run(self, run_id: int, *, duration_s: float, units: list[dict[str, Any]] | None = None) -> None:
        with self._db:
            self._db.execute("UPDATE monitor_runs SET duration_s = ? WHERE id = ?", (duration_s, run_id))
            if units is not None:
                self._db.execute("UPDATE monitor_runs SET units_json = ? WHERE id = ?", (json.dumps(units), run_id))

    def monitor_runs(self) -> list[dict[str, Any]]:
        """Newest first."""
        rows = self._query("SELECT * FROM monitor_runs ORDER BY id DESC", [])
        out = []
        for row in rows:
            item = dict(row)
            item["units"] = json.loads(item.pop("units_json"))
            item["notes"] = json.loads(item.pop("notes_json"))
            out.append(item)
        return out

    def monitor_run(self, run_id: int | None) -> dict[str, Any]:
        """One recorded soak run (None: the newest)."""
        runs = self.monitor_runs()
        if not runs:
            raise UsageError(f"no monitor run in {self.path} (gpuprov monitor --record makes one)")
        if run_id is None:
            return runs[0]
        for run in runs:
            if run["id"] == run_id:
                return run
        raise UsageError(f"no monitor run {run_id} in {self.path} (gpuprov monitor report --list lists them)")

    def monitor_samples(self, run_id: int) -> list[dict[str, Any]]:
        rows = self._query("SELECT * FROM monitor_samples WHERE run_id = ? ORDER BY t_s, gpu", [run_id])
        out = []
        for row in rows:
            item = dict(row)
            item["clock_event_reasons"] = [r for r in item["clock_event_reasons"].split(",") if r]
            item["servers"] = json.loads(item.pop("servers_json") or "[]")
            item["xid_errors"] = json.loads(item.pop("xid_errors_json") or "{}")
            out.append(item)
        return out

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

    def _query(self, sql: str, args: list[Any]) -> list[sqlite3.Row]:
        self._db.row_factory = sqlite3.Row
        try:
            return self._db.execute(sql, args).fetchall()
        finally:
            self._db.row_factory = None

    @staticmethod
    def _row(row: sqlite3.Row) -> StoredRun:
        return StoredRun(
            id=row["id"], sweep_id=row["sweep_id"], created_at=row["created_at"], url=row["url"],
            engine=row["engine"], engine_version=row["engine_version"], model=row["model"],
            profile=row["profile"], hostname=row["hostname"], gpu_names=row["gpu_names"],
            workload_key=row["workload_key"], concurrency=row["concurrency"], complete=bool(row["complete"]),
            stop_reason=row["stop_reason"], is_best=bool(row["is_best"]),
            level=LevelResult.from_dict(json.loads(row["result_json"])),
            workload=json.loads(row["workload_json"]), server=json.loads(row["server_json"]),
            host=json.loads(row["host_json"]), notes=json.loads(row["notes_json"]),
        )  # fmt: skip


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000
