"""The soak recordings of ``gpuprov monitor --record`` in the history database (schema 2 of
:mod:`provision.bench.historydb`): ``monitor_runs``, one row per recording, and ``monitor_samples``,
one row per GPU per sample (the servers' figures ride on GPU 0's row).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

from provision.bench.historydb import HistoryDatabase
from provision.errors import UsageError

MONITOR_COLUMNS = (
    "utilization_gpu_pct",
    "vram_used_mib",
    "vram_total_mib",
    "power_draw_w",
    "power_limit_w",
    "temperature_c",
    "temperature_slowdown_c",
    "sm_clock_mhz",
    "memory_clock_mhz",
)


class SoakStore(HistoryDatabase):
    """Monitor recordings: started, sampled, finished, listed, read back."""

    def start_monitor_run(
        self,
        *,
        created_at: str,
        hostname: str | None,
        profile: str | None,
        interval_s: float,
        gpu_names: str | None,
        units: list[str],
        notes: list[str],
    ) -> int:
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
            rows.append(
                (
                    run_id,
                    sample["t_s"],
                    sample["at"],
                    g["index"],
                    int(bool(g.get("lost"))),
                    *(g.get(c) for c in MONITOR_COLUMNS),
                    ref.get("power_limit_w"),
                    ",".join(g.get("clock_event_reasons") or []),
                    json.dumps(g["xid_errors"]) if g.get("xid_errors") else None,
                    servers if i == 0 else None,
                )
            )
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
