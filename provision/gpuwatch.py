"""Watching GPUs while something runs: :class:`GpuSampler` reads each GPU's moving values again and again
with NVML opened once (``gpuprov bench``, ``gpuprov monitor``), :class:`XidWatcher` counts the Xid errors
NVML reports as events. The full reading of a host is :mod:`provision.probe`'s.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

from provision import hostfacts, nvml
from provision.nvmlfields import (
    FieldReader,
    classify_init_failure,
    mib,
    read_clock_events,
    read_memory,
    read_temperature,
    watts,
)
from provision.snapshot import GpuInfo, NvmlStatus


class GpuSampler:
    """Reads each GPU's moving values — utilisation, power draw, temperature, clock event reasons,
    VRAM used — again and again with NVML opened once: cheap enough to call every second while a
    benchmark runs. Use as a context manager; ``status`` says why there are no GPUs to sample.
    """

    def __init__(self, backend: Any, *, root: Path = Path("/"), detail: bool = False) -> None:
        """``detail``: also the enforced power limit, the clocks and the PCIe link (``gpuprov monitor``)."""
        self.backend = backend
        self.root = root
        self.detail = detail
        self.status = NvmlStatus(False, "unknown", "not started")
        self._count = 0
        self._open = False

    def __enter__(self) -> GpuSampler:
        try:
            self.backend.nvmlInit()
        except Exception as exc:  # NVMLError, or OSError from a broken library
            self.status = classify_init_failure(exc, hostfacts.read_driver_files(root=self.root))
            return self
        self._open = True
        self._count = FieldReader(self.backend, {}).get("device_count", "nvmlDeviceGetCount") or 0
        if self._count == 0:
            self.status = NvmlStatus(False, "no_gpu", "the driver is loaded but NVML sees no GPU")
        else:
            self.status = NvmlStatus(True, "ok", "")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._open:
            self._open = False
            with contextlib.suppress(Exception):  # NVML shutting down badly changes no reading
                self.backend.nvmlShutdown()

    def sample(self) -> list[GpuInfo]:
        """One reading of every GPU (empty when NVML did not start or sees none)."""
        return [self._sample_gpu(i) for i in range(self._count)] if self._open else []

    def _sample_gpu(self, index: int) -> GpuInfo:
        gpu = GpuInfo(index=index, name="unknown")
        r = FieldReader(self.backend, gpu.unavailable)
        h = r.get("handle", "nvmlDeviceGetHandleByIndex", index)
        if h is None:
            return gpu
        gpu.name = r.get("name", "nvmlDeviceGetName", h) or "unknown"
        util = r.get("utilization_gpu_pct", "nvmlDeviceGetUtilizationRates", h)
        gpu.utilization_gpu_pct = None if util is None else int(util.gpu)
        gpu.power_draw_w = watts(r.get("power_draw_w", "nvmlDeviceGetPowerUsage", h))
        gpu.temperature_c = read_temperature(r, h)
        read_clock_events(r, h, gpu)
        mem = read_memory(r, h)
        if mem is not None:
            gpu.vram_total_mib = mib(mem.total)
            gpu.vram_used_mib = mib(mem.used)
        if self.detail:
            gpu.power_enforced_limit_w = watts(r.get("power_enforced_limit_w", "nvmlDeviceGetEnforcedPowerLimit", h))
            gpu.sm_clock_mhz = r.get("sm_clock_mhz", "nvmlDeviceGetClockInfo", h, 1)  # NVML_CLOCK_SM
            gpu.memory_clock_mhz = r.get("memory_clock_mhz", "nvmlDeviceGetClockInfo", h, 2)  # NVML_CLOCK_MEM
            gpu.pcie_generation_current = r.get("pcie_generation_current", "nvmlDeviceGetCurrPcieLinkGeneration", h)
            gpu.pcie_width_current = r.get("pcie_width_current", "nvmlDeviceGetCurrPcieLinkWidth", h)
            gpu.temperature_margin_c = r.get("temperature_margin_c", "nvmlDeviceGetMarginTemperature", h)
        return gpu


#: nvmlEventTypeXidCriticalError: the driver reported an Xid (79: fell off the bus, 48: double-bit ECC...)
XID_CRITICAL_EVENT = 0x8


class XidWatcher:
    """Counts the Xid errors NVML reports as events, per (GPU index, Xid), in a thread of its own while
    open. ``status``: "ok", or why no Xid is watched (old driver, no permission, GPUs that do not support
    the event). Opened after the sampler (NVML initialised), closed before it."""

    def __init__(self, backend: Any, count: int, *, wait_ms: int = 500) -> None:
        self.backend = backend
        self.count = count
        self.wait_ms = wait_ms
        self.status = "not started"
        self.counts: dict[tuple[int, int], int] = {}
        self.errors = 0
        self._set: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> XidWatcher:
        try:
            self._set = self.backend.nvmlEventSetCreate()
        except Exception as exc:  # NVMLError, or bindings without events
            self.status = f"Xid events not available: {exc}"
            return self
        registered = []
        for index in range(self.count):
            try:
                handle = self.backend.nvmlDeviceGetHandleByIndex(index)
                self.backend.nvmlDeviceRegisterEvents(handle, XID_CRITICAL_EVENT, self._set)
                registered.append(index)
            except Exception as exc:  # not supported on this GPU, or no permission
                self.status = f"Xid events not available on GPU {index}: {exc}"
        if registered:
            self.status = "ok" if len(registered) == self.count else self.status
            self._thread = threading.Thread(target=self._loop, name="gpuprov-xid", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._set is not None:
            with contextlib.suppress(Exception):
                self.backend.nvmlEventSetFree(self._set)
            self._set = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                event = self.backend.nvmlEventSetWait_v2(self._set, self.wait_ms)
            except nvml.NVMLError as exc:
                if nvml.error_code(exc) != nvml.ERROR_TIMEOUT:
                    self.errors += 1
                    self._stop.wait(self.wait_ms / 1000)
                continue
            except Exception:  # a bindings bug: counted, the watch goes on
                self.errors += 1
                self._stop.wait(self.wait_ms / 1000)
                continue
            try:
                index = int(self.backend.nvmlDeviceGetIndex(event.device))
            except Exception:
                index = -1  # the GPU the event names no longer answers (it fell off the bus)
            key = (index, int(event.eventData))
            with self._lock:
                self.counts[key] = self.counts.get(key, 0) + 1

    def snapshot(self) -> dict[tuple[int, int], int]:
        with self._lock:
            return dict(self.counts)
