"""GPU readings while a benchmark runs, through :class:`provision.gpuwatch.GpuSampler`.

A background thread reads every GPU each ``interval_s``; each concurrency level is summarised from
the readings taken while it ran (one is taken at its start and end too, so short levels get some).
No GPU, no driver, or a replay file that cannot be read: no readings, and the reason is reported.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from provision.snapshot import GpuInfo


@dataclass
class _Reading:
    at_s: float  # perf_counter
    gpus: list[GpuInfo]


class GpuMonitor:
    def __init__(self, backend_factory: Callable[[], Any], *, interval_s: float = 1.0) -> None:
        self._backend_factory = backend_factory
        self.interval_s = interval_s
        #: "ok", or why there are no GPU readings
        self.status = "not started"
        self.readings: list[_Reading] = []
        self._sampler: Any = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GpuMonitor:
        from provision.errors import GpuprovError
        from provision.gpuwatch import GpuSampler

        try:
            backend = self._backend_factory()
        except GpuprovError as exc:  # e.g. GPUPROV_NVML_REPLAY names a file that cannot be read
            self.status = str(exc)
            return self
        sampler = GpuSampler(backend).__enter__()
        if not sampler.status.ok:
            self.status = sampler.status.message or sampler.status.kind
            sampler.__exit__(None, None, None)
            return self
        self._sampler = sampler
        self.status = "ok"
        self.sample_now()
        self._thread = threading.Thread(target=self._loop, name="gpuprov-bench-gpu", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sampler is not None:
            with self._lock:
                self._sampler.__exit__(None, None, None)
                self._sampler = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample_now()

    def sample_now(self) -> None:
        with self._lock:
            if self._sampler is None:
                return
            gpus = self._sampler.sample()
            self.readings.append(_Reading(time.perf_counter(), gpus))

    def summary(self, start_s: float, end_s: float) -> dict[str, Any]:
        """Per GPU, over the readings taken between two perf_counter times."""
        with self._lock:
            window = [r for r in self.readings if start_s <= r.at_s <= end_s]
        return summarize_readings(window, status=self.status, interval_s=self.interval_s)


def summarize_readings(readings: list[_Reading], *, status: str, interval_s: float) -> dict[str, Any]:
    from provision.nvmlcodes import THROTTLE_REASONS

    out: dict[str, Any] = {"status": status, "interval_s": interval_s, "samples": len(readings), "gpus": []}
    if status != "ok":
        return out
    by_index: dict[int, list[GpuInfo]] = {}
    for reading in readings:
        for gpu in reading.gpus:
            by_index.setdefault(gpu.index, []).append(gpu)
    for index, seen in sorted(by_index.items()):
        throttled: dict[str, float] = {}
        for reason in sorted(THROTTLE_REASONS):
            hits = sum(1 for g in seen if reason in g.clock_event_reasons)
            if hits:
                throttled[reason] = round(hits / len(seen), 3)
        out["gpus"].append(
            {
                "index": index,
                "name": seen[0].name,
                "samples": len(seen),
                "utilization_gpu_pct_mean": _mean(g.utilization_gpu_pct for g in seen),
                "utilization_gpu_pct_max": _max(g.utilization_gpu_pct for g in seen),
                "power_draw_w_mean": _mean(g.power_draw_w for g in seen),
                "power_draw_w_max": _max(g.power_draw_w for g in seen),
                "temperature_c_max": _max(g.temperature_c for g in seen),
                "vram_used_mib_max": _max(g.vram_used_mib for g in seen),
                #: throttle reason -> share of readings in which it was active
                "throttle_reasons": throttled,
            }
        )
    return out


def throttled_gpus(summary: dict[str, Any] | None) -> list[str]:
    """'GPU 0 (sw_thermal_slowdown 40%)' for each GPU held back by heat or power in a summary."""
    lines = []
    for gpu in (summary or {}).get("gpus", []):
        reasons = gpu.get("throttle_reasons") or {}
        if reasons:
            parts = ", ".join(f"{name} {share:.0%}" for name, share in reasons.items())
            lines.append(f"GPU {gpu['index']} ({parts})")
    return lines


def _mean(values: Any) -> float | None:
    data = [float(v) for v in values if v is not None]
    return round(math.fsum(data) / len(data), 2) if data else None


def _max(values: Any) -> float | None:
    data = [v for v in values if v is not None]
    return max(data) if data else None
