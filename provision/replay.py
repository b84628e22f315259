"""A stand-in for ``pynvml`` that answers from a snapshot: the way go-nvml ships a mock DGX A100.

It exposes the same function names, takes the same arguments and raises the same
``pynvml.NVMLError`` subclasses as the real bindings, so the probe and the GPU-settings code run
unchanged on it. Fields the snapshot marks unavailable raise what NVML raised when it was recorded
("not supported", "no permission"); a snapshot whose NVML failed to start raises the matching init
error. Setters enforce what the real driver enforces — root only, power limit within the GPU's
constraints, "not supported" where the snapshot says so — and every accepted call is recorded.

State lives in a JSON file (``GPUPROV_NVML_REPLAY=/path/state.json``, :mod:`provision.replaystate`).
Setters write the new state back, so separate processes (the CLI, an Ansible module, a boot-time unit)
all see one simulated GPU.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pynvml

from provision.errors import SnapshotError
from provision.gpuarch import NVML_ARCHITECTURES
from provision.nvmlcodes import COMPUTE_MODES
from provision.replaystate import ReplayState, file_stamp, read_state, write_state
from provision.snapshot import GpuInfo, Snapshot

_INIT_ERRORS = {
    "library_not_found": pynvml.NVML_ERROR_LIBRARY_NOT_FOUND,
    "driver_not_loaded": pynvml.NVML_ERROR_DRIVER_NOT_LOADED,
    "version_mismatch": pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH,
    "no_permission": pynvml.NVML_ERROR_NO_PERMISSION,
    "unknown": pynvml.NVML_ERROR_UNKNOWN,
}
_REASON_ERRORS = {
    "not_supported": pynvml.NVML_ERROR_NOT_SUPPORTED,
    "no_permission": pynvml.NVML_ERROR_NO_PERMISSION,
    #: the GPU fell off the bus (Xid 79) or the driver was reloaded under a running reader
    "gpu_lost": pynvml.NVML_ERROR_GPU_IS_LOST,
}
#: what the replay pretends the process is, for root-only setters (env var, default: the real euid)
AS_USER_ENV = "GPUPROV_NVML_REPLAY_AS_USER"

_COMPUTE_MODES = {name: code for code, name in COMPUTE_MODES.items()}
_ARCH_CODES = {name: code for code, name in NVML_ARCHITECTURES.items()}


@dataclass
class _Memory:
    total: int
    used: int
    free: int
    reserved: int = 0
    version: int = 0


@dataclass
class _Utilization:
    gpu: int
    memory: int = 0


@dataclass
class _Event:
    device: int
    eventType: int
    eventData: int


@dataclass
class _Pci:
    busId: str


class ReplayNvml:
    NVMLError = pynvml.NVMLError
    nvmlMemory_v2 = pynvml.nvmlMemory_v2

    def __init__(
        self, snapshot: Snapshot, *, state_file: Path | None = None, calls: list[dict[str, Any]] | None = None
    ) -> None:
        self.snapshot = snapshot
        self.state_file = state_file
        self.calls: list[dict[str, Any]] = calls if calls is not None else []
        self._initialised = 0
        self._stamp = self._file_stamp()
        #: Xid events the state file lists (``"xid_events": [{"gpu": 0, "xid": 79}]``); each reader gets each once
        self.xid_events: list[dict[str, int]] = []
        self._events_seen = 0

    # -- state ------------------------------------------------------------------------------------
    @classmethod
    def from_state_file(cls, path: str | Path) -> ReplayNvml:
        p = Path(path)
        state = read_state(p)
        replay = cls(state.snapshot, state_file=p, calls=state.calls)
        replay.xid_events = state.xid_events
        return replay

    def _file_stamp(self) -> tuple[int, int, int] | None:
        return None if self.state_file is None else file_stamp(self.state_file)

    def _refresh(self) -> None:
        """Another process changed the state file (a setter, or a test playing a GPU that falls off the bus
        mid-run): a long-running reader (monitor, exporter) sees the new state, as it would see the GPU."""
        stamp = self._file_stamp()
        if self.state_file is None or stamp is None or stamp == self._stamp:
            return
        try:
            fresh = read_state(self.state_file)
        except SnapshotError:
            return  # caught mid-write by a writer that does not replace atomically: keep the last state
        self.snapshot, self.calls, self._stamp = fresh.snapshot, fresh.calls, stamp
        self.xid_events = fresh.xid_events

    def _save(self) -> None:
        if self.state_file is None:
            return
        write_state(self.state_file, ReplayState(self.snapshot, self.calls, self.xid_events))
        self._stamp = self._file_stamp()

    # -- helpers ----------------------------------------------------------------------------------
    def _check_init(self) -> None:
        if self._initialised <= 0:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)

    def _gpu(self, handle: Any) -> GpuInfo:
        self._check_init()
        if not isinstance(handle, int) or not 0 <= handle < len(self.snapshot.gpus):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        gpu = self.snapshot.gpus[handle]
        if gpu.unavailable.get("handle") == "gpu_lost":  # fell off the bus: every call on it fails so
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        return gpu

    def _field(self, handle: Any, name: str, *reasons: str) -> Any:
        gpu = self._gpu(handle)
        for key in (name, *reasons):
            reason = gpu.unavailable.get(key)
            if reason:
                raise pynvml.NVMLError(_REASON_ERRORS.get(reason, pynvml.NVML_ERROR_UNKNOWN))
        value = getattr(gpu, name)
        if value is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return value

    @staticmethod
    def _mw(watts: float) -> int:
        return round(watts * 1000)

    def _require_root(self) -> None:
        as_user = os.environ.get(AS_USER_ENV, "")
        if as_user not in ("", "0") or os.geteuid() != 0:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)

    # -- system -----------------------------------------------------------------------------------
    def nvmlInit(self) -> None:
        status = self.snapshot.driver.nvml
        if not status.ok:
            if status.kind == "no_gpu":
                self._initialised += 1
                return
            raise pynvml.NVMLError(_INIT_ERRORS.get(status.kind, pynvml.NVML_ERROR_UNKNOWN))
        self._initialised += 1

    def nvmlShutdown(self) -> None:
        self._check_init()
        self._initialised -= 1

    def _driver(self, name: str) -> Any:
        self._check_init()
        value = getattr(self.snapshot.driver, name)
        if value is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return value

    def nvmlSystemGetDriverVersion(self) -> str:
        return str(self._driver("driver_version"))

    def nvmlSystemGetNVMLVersion(self) -> str:
        return str(self._driver("nvml_version"))

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        major, _, minor = self._driver("cuda_driver_version").partition(".")
        return int(major) * 1000 + int(minor or 0) * 10

    nvmlSystemGetCudaDriverVersion = nvmlSystemGetCudaDriverVersion_v2

    def nvmlDeviceGetCount(self) -> int:
        self._check_init()
        self._refresh()
        return len(self.snapshot.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        self._check_init()
        self._refresh()
        self._gpu(index)
        return index

    # -- device queries ---------------------------------------------------------------------------
    def nvmlDeviceGetName(self, h: int) -> str:
        return self._gpu(h).name

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return str(self._field(h, "uuid"))

    def nvmlDeviceGetSerial(self, h: int) -> str:
        return str(self._field(h, "serial"))

    def nvmlDeviceGetPciInfo(self, h: int) -> _Pci:
        return _Pci(busId=self._field(h, "pci_bus_id"))

    def nvmlDeviceGetCudaComputeCapability(self, h: int) -> tuple[int, int]:
        major, _, minor = self._field(h, "compute_capability").partition(".")
        return int(major), int(minor)

    def nvmlDeviceGetArchitecture(self, h: int) -> int:
        return _ARCH_CODES.get(self._field(h, "architecture"), 0xFFFFFFFF)

    def nvmlDeviceGetMemoryInfo(self, h: int, version: int | None = None) -> _Memory:
        gpu = self._gpu(h)
        self._field(h, "vram_total_mib", "vram")
        mib = 1024 * 1024
        reserved = (gpu.vram_reserved_mib or 0) * mib
        used = (gpu.vram_used_mib or 0) * mib
        if not version:  # v1 reports reserved memory as used
            used += reserved
            reserved = 0
        return _Memory(
            total=(gpu.vram_total_mib or 0) * mib,
            used=used,
            free=(gpu.vram_free_mib or 0) * mib,
            reserved=reserved,
            version=version or 0,
        )

    def nvmlDeviceGetPowerManagementLimit(self, h: int) -> int:
        return self._mw(self._field(h, "power_limit_w"))

    def nvmlDeviceGetPowerManagementDefaultLimit(self, h: int) -> int:
        return self._mw(self._field(h, "power_default_limit_w"))

    def nvmlDeviceGetPowerManagementLimitConstraints(self, h: int) -> list[int]:
        lo = self._field(h, "power_min_limit_w", "power_constraints_w")
        hi = self._field(h, "power_max_limit_w", "power_constraints_w")
        return [self._mw(lo), self._mw(hi)]

    def nvmlDeviceGetEnforcedPowerLimit(self, h: int) -> int:
        return self._mw(self._field(h, "power_enforced_limit_w"))

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return self._mw(self._field(h, "power_draw_w"))

    def nvmlDeviceGetPersistenceMode(self, h: int) -> int:
        return int(self._field(h, "persistence_mode"))

    def nvmlDeviceGetPerformanceState(self, h: int) -> int:
        return int(self._field(h, "performance_state"))

    def nvmlDeviceGetTemperatureV(self, h: int, sensor: int, version: int | None = None) -> int:
        return int(self._field(h, "temperature_c"))

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        return int(self._field(h, "temperature_c"))

    def nvmlDeviceGetTemperatureThreshold(self, h: int, threshold: int) -> int:
        name = {0: "temperature_shutdown_c", 1: "temperature_slowdown_c"}.get(threshold)
        if name is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return int(self._field(h, name))

    def nvmlDeviceGetMarginTemperature(self, h: int) -> int:
        return int(self._field(h, "temperature_margin_c"))

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: int) -> int:
        return int(self._field(h, "clock_event_reasons_mask", "clock_event_reasons"))

    nvmlDeviceGetCurrentClocksThrottleReasons = nvmlDeviceGetCurrentClocksEventReasons

    def nvmlDeviceGetMaxClockInfo(self, h: int, clock_type: int) -> int:
        name = {1: "max_sm_clock_mhz", 0: "max_sm_clock_mhz", 2: "max_memory_clock_mhz"}.get(clock_type)
        if name is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return int(self._field(h, name))

    def nvmlDeviceGetCurrPcieLinkGeneration(self, h: int) -> int:
        return int(self._field(h, "pcie_generation_current"))

    def nvmlDeviceGetMaxPcieLinkGeneration(self, h: int) -> int:
        return int(self._field(h, "pcie_generation_max"))

    def nvmlDeviceGetCurrPcieLinkWidth(self, h: int) -> int:
        return int(self._field(h, "pcie_width_current"))

    def nvmlDeviceGetMaxPcieLinkWidth(self, h: int) -> int:
        return int(self._field(h, "pcie_width_max"))

    def nvmlDeviceGetEccMode(self, h: int) -> list[int]:
        on = int(self._field(h, "ecc_enabled"))
        return [on, on]

    def nvmlDeviceGetMigMode(self, h: int) -> list[int]:
        on = int(self._field(h, "mig_enabled"))
        return [on, on]

    def nvmlDeviceGetComputeMode(self, h: int) -> int:
        return _COMPUTE_MODES[self._field(h, "compute_mode")]

    def nvmlDeviceGetDisplayActive(self, h: int) -> int:
        return int(self._field(h, "display_active"))

    def nvmlDeviceGetClockInfo(self, h: int, clock_type: int) -> int:
        name = {0: "graphics_clock_mhz", 1: "sm_clock_mhz", 2: "memory_clock_mhz"}.get(clock_type)
        if name == "graphics_clock_mhz":
            name = "sm_clock_mhz"
        if name is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return int(self._field(h, name, "clocks"))

    def nvmlDeviceGetUtilizationRates(self, h: int) -> _Utilization:
        return _Utilization(gpu=self._field(h, "utilization_gpu_pct"))

    # -- setters (root only, constraints enforced, recorded) --------------------------------------
    def _record(self, fn: str, h: int, **args: Any) -> None:
        self.calls.append({"fn": fn, "gpu": h, **args})
        self._save()

    def nvmlDeviceSetPowerManagementLimit(self, h: int, limit_mw: int) -> None:
        gpu = self._gpu(h)
        if gpu.unavailable.get("set_power_limit") == "not_supported":
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        self._require_root()
        lo, hi = self.nvmlDeviceGetPowerManagementLimitConstraints(h)
        if not lo <= limit_mw <= hi:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        gpu.power_limit_w = limit_mw / 1000.0
        gpu.power_enforced_limit_w = limit_mw / 1000.0
        self._record("nvmlDeviceSetPowerManagementLimit", h, limit_mw=limit_mw)

    def nvmlDeviceSetPersistenceMode(self, h: int, mode: int) -> None:
        gpu = self._gpu(h)
        self._require_root()
        gpu.persistence_mode = bool(mode)
        self._record("nvmlDeviceSetPersistenceMode", h, mode=int(mode))

    def nvmlDeviceSetGpuLockedClocks(self, h: int, min_mhz: int, max_mhz: int) -> None:
        gpu = self._gpu(h)
        if gpu.unavailable.get("set_locked_clocks") == "not_supported":
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        self._require_root()
        top = gpu.max_sm_clock_mhz
        if min_mhz < 0 or max_mhz < min_mhz or (top is not None and max_mhz > top):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        self._record("nvmlDeviceSetGpuLockedClocks", h, min_mhz=min_mhz, max_mhz=max_mhz)

    def nvmlDeviceResetGpuLockedClocks(self, h: int) -> None:
        self._gpu(h)
        self._require_root()
        self._record("nvmlDeviceResetGpuLockedClocks", h)

    # -- events (Xid errors) ---------------------------------------------------------------------------
    def nvmlEventSetCreate(self) -> list[int]:
        self._check_init()
        return []  # the handles registered on it

    def nvmlDeviceRegisterEvents(self, h: int, event_types: int, event_set: list[int]) -> None:
        self._gpu(h)
        if self._gpu(h).unavailable.get("xid_events") == "not_supported":
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        event_set.append(h)

    def nvmlEventSetWait_v2(self, event_set: list[int], timeout_ms: int) -> _Event:
        """The next Xid event the state file lists for a registered GPU, else NVML's timeout after a while
        (at most 0.2 s: a replay has nothing to wait for)."""
        self._check_init()
        self._refresh()
        while self._events_seen < len(self.xid_events):
            event = self.xid_events[self._events_seen]
            self._events_seen += 1
            if event["gpu"] in event_set:
                return _Event(device=event["gpu"], eventType=0x8, eventData=event["xid"])
        time.sleep(min(timeout_ms, 200) / 1000)
        raise pynvml.NVMLError(pynvml.NVML_ERROR_TIMEOUT)

    def nvmlEventSetFree(self, event_set: list[int]) -> None:
        event_set.clear()

    def nvmlDeviceGetIndex(self, h: int) -> int:
        self._check_init()
        if not isinstance(h, int) or not 0 <= h < len(self.snapshot.gpus):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return h
