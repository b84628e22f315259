"""One monitor sample: every GPU's moving values beside what the applied profile says they should be,
and the servers' figures. The live view, ``--once --json``, soak recording and the exporter all take
their readings from :class:`Monitor`.

NVML is opened once through :class:`provision.gpuwatch.GpuSampler` (with ``detail``); the
static facts (limits' range, thresholds, PCIe maximum) come from one full probe at start. A GPU that
stops answering mid-run (fell off the bus, driver reloaded) is a reading with ``lost`` set, and the
probe errors are counted, never raised.
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.monitor.servers import ServerWatcher
from provision.snapshot import GpuInfo

#: clock event reasons in words, as a person reading the view says them
REASON_WORDS = {
    "gpu_idle": "idle",
    "applications_clocks_setting": "application clocks",
    "sw_power_cap": "power cap",
    "hw_slowdown": "HW slowdown",
    "sync_boost": "sync boost",
    "sw_thermal_slowdown": "thermal (driver)",
    "hw_thermal_slowdown": "thermal (hardware)",
    "hw_power_brake_slowdown": "power brake (external)",
    "display_clock_setting": "display clock",
}

#: a limit this close to the profile's (W) is the profile's: NVML rounds to the milliwatt, boards to steps
DRIFT_TOLERANCE_W = 1.0


def reason_words(reasons: list[str]) -> list[str]:
    return [REASON_WORDS.get(r, r) for r in reasons]


@dataclass
class Reference:
    """What the applied profile says about one GPU."""

    profile: str | None = None
    power_limit_w: float | None = None
    locked_clocks_mhz: list[int] | None = None


def references(gpus: list[GpuInfo], *, state_dir: Path | None = None) -> tuple[dict[int, Reference], list[str]]:
    """Per GPU index, the applied profile's power limit and clock lock, decided by the same function
    the plan uses (:func:`provision.gpudecisions.gpu_settings_for`); and notes (no profile applied,
    profile unreadable). A GPU the profile does not match has no reference."""
    from provision import applystate
    from provision.errors import GpuprovError
    from provision.gpudecisions import gpu_key, gpu_settings_for
    from provision.plantypes import HostState
    from provision.profiles.loader import load_profile

    directory = state_dir or applystate.state_dir()
    notes: list[str] = []
    try:
        name = applystate.applied_profile(directory)
    except GpuprovError as exc:
        return {}, [f"applied profile unknown: {exc}"]
    if name is None:
        return {}, ["no profile applied on this host (gpuprov apply PROFILE): no reference to compare with"]
    try:
        profile = load_profile(name)
    except GpuprovError as exc:
        return {}, [f"applied profile {name}: {exc}"]
    host = HostState(
        locked_clocks_mhz=applystate.recorded_locked_clocks(directory),
        power_limit_refused=applystate.power_limit_refused(directory),
    )
    out: dict[int, Reference] = {}
    for gpu in gpus:
        if not profile.match.matches(gpu.name, gpu.compute_capability):
            continue
        try:
            settings, _ = gpu_settings_for(gpu, profile, host, [])
        except GpuprovError as exc:
            notes.append(f"GPU {gpu.index}: profile {name}: {exc}")
            continue
        lock = settings.get("locked_clocks_mhz") or host.locked_clocks_mhz.get(gpu_key(gpu))
        out[gpu.index] = Reference(name, settings.get("power_limit_w"), list(lock) if lock else None)
    return out, notes


def drift(reading: dict[str, Any], ref: Reference | None) -> list[str]:
    """How the GPU differs from its profile, in words ('' list: as the profile says)."""
    if ref is None or ref.power_limit_w is None:
        return []
    limit = reading.get("power_limit_w")
    if limit is None or abs(limit - ref.power_limit_w) <= DRIFT_TOLERANCE_W:
        return []
    return [
        f"limit {limit:g} W, profile {ref.profile} says {ref.power_limit_w:g} W "
        "(lost after a reboot or a driver reload?)"
    ]


@dataclass
class Sample:
    at: str  # UTC ISO time
    t_s: float  # seconds since the monitor started
    gpus: list[dict[str, Any]] = field(default_factory=list)
    servers: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "t_s": self.t_s, "gpus": self.gpus, "servers": self.servers}


class Monitor:
    """Opens NVML (through the probe) once; :meth:`sample` reads everything. A context manager."""

    def __init__(
        self,
        backend: Any,
        *,
        servers: list[ServerWatcher] | None = None,
        state_dir: Path | None = None,
        root: Path = Path("/"),
        monotonic: Any = time.monotonic,
    ) -> None:
        self.backend = backend
        self.servers = servers or []
        self.state_dir = state_dir
        self.root = root
        self.static: dict[int, GpuInfo] = {}
        self.refs: dict[int, Reference] = {}
        self.notes: list[str] = []
        #: NVML calls that failed while sampling, per GPU index and field (the exporter counts them)
        self.errors: dict[tuple[int, str], int] = {}
        self.status = "not started"
        self._sampler: Any = None
        self._xid: Any = None
        self._monotonic = monotonic
        self._t0 = monotonic()

    def __enter__(self) -> Monitor:
        from provision.gpuwatch import GpuSampler, XidWatcher
        from provision.probe import probe_gpus

        driver, gpus = probe_gpus(self.backend, root=self.root)
        self.static = {g.index: g for g in gpus}
        if not driver.nvml.ok:
            self.status = driver.nvml.message or driver.nvml.kind
        self.refs, self.notes = references(gpus, state_dir=self.state_dir)
        sampler = GpuSampler(self.backend, root=self.root, detail=True).__enter__()
        if sampler.status.ok:
            self.status = "ok"
            self._sampler = sampler
            self._xid = XidWatcher(self.backend, len(self.static)).__enter__()
            if self._xid.status != "ok":
                self.notes.append(self._xid.status)
        else:
            self.status = sampler.status.message or sampler.status.kind
            sampler.__exit__(None, None, None)
        self._t0 = self._monotonic()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._xid is not None:
            self._xid.__exit__(None, None, None)
            self._xid = None
        if self._sampler is not None:
            self._sampler.__exit__(None, None, None)
            self._sampler = None

    def sample(self) -> Sample:
        now = _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")
        sample = Sample(at=now, t_s=round(self._monotonic() - self._t0, 3))
        moving = self._sampler.sample() if self._sampler is not None else []
        xids = self._xid.snapshot() if self._xid is not None else {}
        for gpu in moving:
            reading = self._gpu_reading(gpu)
            #: Xid errors NVML reported for this GPU since the monitor started: Xid -> count
            reading["xid_errors"] = {str(x): n for (i, x), n in sorted(xids.items()) if i == gpu.index}
            sample.gpus.append(reading)
        sample.servers = [w.read().to_dict() for w in self.servers]
        return sample

    def _gpu_reading(self, gpu: GpuInfo) -> dict[str, Any]:
        static = self.static.get(gpu.index) or GpuInfo(index=gpu.index, name=gpu.name)
        for fld, why in gpu.unavailable.items():
            if why.startswith("error"):
                self.errors[(gpu.index, fld)] = self.errors.get((gpu.index, fld), 0) + 1
        lost = "handle" in gpu.unavailable
        reading: dict[str, Any] = {
            "index": gpu.index,
            "name": static.name if lost or gpu.name == "unknown" else gpu.name,
            "uuid": gpu.uuid or static.uuid,
            "lost": lost,
            "error": gpu.unavailable.get("handle") if lost else None,
            "utilization_gpu_pct": gpu.utilization_gpu_pct,
            "vram_used_mib": gpu.vram_used_mib,
            "vram_total_mib": gpu.vram_total_mib or static.vram_total_mib,
            "power_draw_w": gpu.power_draw_w,
            "power_limit_w": gpu.power_enforced_limit_w,
            "power_default_limit_w": static.power_default_limit_w,
            "temperature_c": gpu.temperature_c,
            "temperature_slowdown_c": static.temperature_slowdown_c,
            "temperature_margin_c": gpu.temperature_margin_c,
            "sm_clock_mhz": gpu.sm_clock_mhz,
            "memory_clock_mhz": gpu.memory_clock_mhz,
            "max_sm_clock_mhz": static.max_sm_clock_mhz,
            "clock_event_reasons": list(gpu.clock_event_reasons),
            "pcie_generation": gpu.pcie_generation_current,
            "pcie_generation_max": static.pcie_generation_max,
            "pcie_width": gpu.pcie_width_current,
            "pcie_width_max": static.pcie_width_max,
        }
        ref = self.refs.get(gpu.index)
        reading["profile"] = (
            None
            if ref is None
            else {
                "name": ref.profile,
                "power_limit_w": ref.power_limit_w,
                "locked_clocks_mhz": ref.locked_clocks_mhz,
            }
        )
        reading["drift"] = [] if lost else drift(reading, ref)
        return reading

    def error_count(self) -> int:
        return sum(self.errors.values())
