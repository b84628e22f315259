"""The history database: where it lives, its schema, and the migrations that bring an older file to it.

One SQLite file keeps ``gpuprov bench`` runs (:mod:`provision.bench.store`) and ``gpuprov monitor --record``
soak recordings (:mod:`provision.monitor.soakstore`). Schema 1: ``runs``, one row per measured concurrency
level, and ``requests``, every request's timing and error. Schema 2 adds ``monitor_runs``, one row per
recording, and ``monitor_samples``, one row per GPU per sample (the servers' figures ride on GPU 0's row).

The schema version is SQLite's ``user_version``; a database from a newer gpuprov is refused, not
rewritten. Default place: ``$XDG_DATA_HOME/gpuprov/bench.db`` (``~/.local/share/gpuprov/bench.db``).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from provision.errors import UsageError

SCHEMA_VERSION = 2

SCHEMA_V1 = """
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
SCHEMA_V2 = """
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
MIGRATIONS = {1: SCHEMA_V1, 2: SCHEMA_V2}


def default_db_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME") or ""
    root = Path(base) if base and Path(base).is_absolute() else Path(env.get("HOME") or Path.home()) / ".local/share"
    return root / "gpuprov" / "bench.db"


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


class HistoryDatabase:
    """The history file opened and migrated to this gpuprov's schema; the stores of each table family
    (:class:`~provision.bench.store.HistoryStore`, :class:`~provision.monitor.soakstore.SoakStore`) build on it."""

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

    def __enter__(self) -> Self:
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
            self._db.executescript(f"BEGIN; {MIGRATIONS[target]} PRAGMA user_version = {target}; COMMIT;")

    def _query(self, sql: str, args: list[Any]) -> list[sqlite3.Row]:
        self._db.row_factory = sqlite3.Row
        try:
            return self._db.execute(sql, args).fetchall()
        finally:
            self._db.row_factory = None
