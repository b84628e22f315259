"""Soak runs: ``gpuprov monitor --record`` writes samples into the bench history (one SQLite file, one
schema: :mod:`provision.bench.historydb`; the rows: :mod:`provision.monitor.soakstore`), and
``gpuprov monitor report [RUN]`` summarises one.

The summary per GPU: temperature (max and percentiles), seconds held back by each throttle reason,
energy (Wh, the power readings integrated over time) and average power, VRAM growth slope (MiB per
hour, least squares: a leak is a steady climb while the load is flat), samples where the power limit
was not the profile's, samples where the GPU was lost. Per server: answered/failed reads and tokens/s.
Per serving unit (where systemd runs): restarts during the run (``NRestarts`` at the start and end).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from provision.bench.stats import percentile
from provision.nvmlcodes import THROTTLE_REASONS

if TYPE_CHECKING:
    from provision.monitor.soakstore import SoakStore

#: the systemd properties kept about each serving unit at the start and end of a run
UNIT_PROPERTIES = ("NRestarts", "ActiveState", "SubState", "Result", "ExecMainStatus")


def unit_status(units: list[str]) -> list[dict[str, Any]]:
    """``systemctl show`` of each unit (empty where systemd does not run here)."""
    from provision import systemd
    from provision.errors import GpuprovError

    if not units or not systemd.running_systemd():
        return []
    out = []
    for unit in units:
        try:
            text = systemd.systemctl("show", unit, "--property=" + ",".join(UNIT_PROPERTIES))
        except GpuprovError as exc:
            out.append({"unit": unit, "error": str(exc)})
            continue
        props = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        out.append({"unit": unit, **props})
    return out


def _stats(values: list[float]) -> dict[str, float | None]:
    data = sorted(values)
    if not data:
        return {"max": None, "p50": None, "p95": None, "p99": None}
    return {
        "max": data[-1],
        "p50": round(percentile(data, 50), 2),
        "p95": round(percentile(data, 95), 2),
        "p99": round(percentile(data, 99), 2),
    }


def _durations(times: list[float], interval_s: float) -> list[float]:
    """How long each sample stands for: until the next one (the last one: one interval)."""
    return [(times[i + 1] - times[i]) if i + 1 < len(times) else interval_s for i in range(len(times))]


def slope_per_hour(times: list[float], values: list[float]) -> float | None:
    """Least-squares slope of values over times (seconds), per hour; None with fewer than 3 points."""
    if len(times) < 3:
        return None
    n = len(times)
    mt, mv = math.fsum(times) / n, math.fsum(values) / n
    var = math.fsum((t - mt) ** 2 for t in times)
    if var == 0:
        return None
    cov = math.fsum((t - mt) * (v - mv) for t, v in zip(times, values, strict=True))
    return round(cov / var * 3600, 2)


def summarize(run: dict[str, Any], samples: list[dict[str, Any]]) -> dict[str, Any]:
    interval = float(run["interval_s"])
    out: dict[str, Any] = {
        "run": {
            k: run[k] for k in ("id", "created_at", "hostname", "profile", "interval_s", "duration_s", "gpu_names")
        },
        "gpus": [],
        "servers": [],
        "units": [],
        "notes": run.get("notes", []),
    }
    by_gpu: dict[int, list[dict[str, Any]]] = {}
    for s in samples:
        if s["gpu"] >= 0:
            by_gpu.setdefault(s["gpu"], []).append(s)
    for index, rows in sorted(by_gpu.items()):
        seen = [r for r in rows if not r["lost"]]
        times = [r["t_s"] for r in seen]
        durations = _durations(times, interval)
        throttled: dict[str, float] = {}
        for r, dt in zip(seen, durations, strict=True):
            for reason in r["clock_event_reasons"]:
                if reason in THROTTLE_REASONS:
                    throttled[reason] = round(throttled.get(reason, 0.0) + dt, 3)
        powered = [
            (r["power_draw_w"], dt) for r, dt in zip(seen, durations, strict=True) if r["power_draw_w"] is not None
        ]
        energy_wh = math.fsum(p * dt for p, dt in powered) / 3600 if powered else None
        covered = math.fsum(dt for _, dt in powered)
        vram = [(r["t_s"], r["vram_used_mib"]) for r in seen if r["vram_used_mib"] is not None]
        drift = sum(
            1
            for r in seen
            if r["profile_power_limit_w"] is not None
            and r["power_limit_w"] is not None
            and abs(r["power_limit_w"] - r["profile_power_limit_w"]) > 1.0
        )
        out["gpus"].append(
            {
                "index": index,
                "samples": len(rows),
                "lost_samples": len(rows) - len(seen),
                "temperature_c": _stats([r["temperature_c"] for r in seen if r["temperature_c"] is not None]),
                "temperature_slowdown_c": next(
                    (r["temperature_slowdown_c"] for r in seen if r["temperature_slowdown_c"]), None
                ),
                "utilization_gpu_pct": _stats(
                    [r["utilization_gpu_pct"] for r in seen if r["utilization_gpu_pct"] is not None]
                ),
                "power_draw_w_mean": round(math.fsum(p * dt for p, dt in powered) / covered, 2) if covered else None,
                "energy_wh": None if energy_wh is None else round(energy_wh, 4),
                "throttled_s": throttled,
                "vram_used_mib_max": max((v for _, v in vram), default=None),
                "vram_slope_mib_per_h": slope_per_hour([t for t, _ in vram], [v for _, v in vram]),
                "power_limit_not_profile_samples": drift,
                #: Xid -> events during the run (the counts are cumulative: the last sample's)
                "xid_errors": next((r["xid_errors"] for r in reversed(rows) if r["xid_errors"]), {}),
            }
        )
    out["servers"] = _servers(samples)
    out["units"] = _units(run.get("units") or [])
    return out


def _servers(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_url: dict[str, list[dict[str, Any]]] = {}
    for s in samples:
        for server in s.get("servers") or []:
            by_url.setdefault(server["url"], []).append(server)
    out = []
    for url, reads in by_url.items():
        errors: dict[str, int] = {}
        for r in reads:
            if not r["up"]:
                errors[r["error"]] = errors.get(r["error"], 0) + 1
        rates = [r["generated_tokens_per_s"] for r in reads if r.get("generated_tokens_per_s") is not None]
        out.append(
            {
                "url": url,
                "engine": reads[0]["engine"],
                "reads": len(reads),
                "failed_reads": sum(errors.values()),
                "errors": errors,
                "generated_tokens_per_s": _stats(rates),
            }
        )
    return out


def _units(units: list[dict[str, Any] | str]) -> list[dict[str, Any]]:
    """Units recorded as ``{"unit", "start": {...}, "end": {...}}``: restarts during the run."""
    out = []
    for u in units:
        if not isinstance(u, dict):  # a run that never finished kept only the unit names
            continue
        start, end = u.get("start") or {}, u.get("end") or {}
        try:
            restarts: int | None = int(end["NRestarts"]) - int(start["NRestarts"])
        except (KeyError, ValueError):
            restarts = None
        out.append(
            {
                "unit": u.get("unit"),
                "restarts": restarts,
                "state_end": end.get("ActiveState"),
                "result_end": end.get("Result"),
                "error": end.get("error") or start.get("error"),
            }
        )
    return out


#: a soak run may last at most this long (a month): beyond it the value is a typo
MAX_DURATION_S = 31 * 86400
_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``8h``, ``1.5d`` -> seconds; anything else is a UsageError naming it."""
    from provision.errors import UsageError

    raw = text.strip().lower()
    unit = raw[-1:] if raw[-1:] in _UNITS_S else "s"
    number = raw[:-1] if raw[-1:] in _UNITS_S else raw
    try:
        value = float(number) * _UNITS_S[unit]
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= MAX_DURATION_S):
        raise UsageError(
            f"--duration {text!r}: expected a time like 90s, 15m or 8h, up to {MAX_DURATION_S // 86400} days"
        )
    return value


def record(
    monitor: Any,
    store: SoakStore,
    *,
    duration_s: float,
    interval_s: float,
    units: list[str],
    hostname: str | None,
    profile: str | None,
    on_sample: Any = None,
    clock: Any = None,
) -> int:
    """Sample every ``interval_s`` for ``duration_s`` into ``store`` (a SoakStore); returns the run id.
    Ctrl-C ends the run early and keeps what was recorded. ``clock``: (monotonic, sleep) for tests."""
    import datetime as _dt
    import time

    monotonic, sleep = clock or (time.monotonic, time.sleep)
    gpu_names = ", ".join(g.name for g in monitor.static.values()) or None
    start_units = unit_status(units)
    run_id = store.start_monitor_run(
        created_at=_dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
        hostname=hostname,
        profile=profile,
        interval_s=interval_s,
        gpu_names=gpu_names,
        units=units,
        notes=list(monitor.notes),
    )
    started = monotonic()
    try:
        while True:
            sample = monitor.sample().to_dict()
            store.add_monitor_sample(run_id, sample)
            if on_sample is not None:
                on_sample(sample)
            elapsed = monotonic() - started
            if elapsed >= duration_s:
                break
            next_at = (math.floor(elapsed / interval_s) + 1) * interval_s  # no drift over hours
            sleep(max(0.0, min(next_at, duration_s) - elapsed))
    except KeyboardInterrupt:
        pass
    end_units = unit_status(units)
    ends = {u["unit"]: u for u in end_units}
    recorded = [{"unit": u["unit"], "start": u, "end": ends.get(u["unit"], {})} for u in start_units]
    store.finish_monitor_run(run_id, duration_s=round(monotonic() - started, 3), units=recorded)
    return run_id
