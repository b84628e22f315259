"""The probe: the only code that asks NVML anything. It returns a :class:`~provision.snapshot.Snapshot`.

Every NVML query goes through :class:`_Reader`, which turns "not supported", "no permission" and
missing functions (old driver, old bindings) into a recorded reason instead of an exception, so one
field a GPU lacks never sinks the whole probe. NVML failing to start is classified
(:func:`classify_init_failure`) and the rest of the host is still reported.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from provision import __version__, engines, hostfacts, nvml, nvmlcodes, pyenv, roottree, toolkits
from provision.console import printable_copy
from provision.gpuarch import NVML_ARCHITECTURES, architecture_for_cc
from provision.serving import units as serving_units
from provision.snapshot import DriverInfo, GpuInfo, NvmlStatus, Snapshot, masked_env

#: environment variables worth reporting (prefix match for those ending in "_")
RELEVANT_ENV = (
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
    "CUDA_DEVICE_ORDER",
    "CUDA_HOME",
    "CUDA_PATH",
    "LD_LIBRARY_PATH",
    "PATH",
    "PYTORCH_CUDA_ALLOC_CONF",
    "TORCH_CUDA_ARCH_LIST",
    "CMAKE_ARGS",
    "OLLAMA_",
    "VLLM_",
    "HF_HOME",
)


def relevant_env(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    out = {}
    for key in sorted(environ):
        for name in RELEVANT_ENV:
            if key == name or (name.endswith("_") and key.startswith(name)):
                out[key] = environ[key]
                break
    return out


def probe(
    *,
    python: str | None = None,
    nvml_backend: Any = None,
    root: Path = Path("/"),
    python_stack: bool = True,
    gpus: bool = True,
) -> Snapshot:
    """Read this host. ``python``: the interpreter whose environment to report (default: ours).
    ``python_stack=False``: without the Python-stack probe; ``gpus=False``: no NVML call at all."""
    environ = dict(os.environ)
    snap = Snapshot(
        origin="live",
        created_at=_dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
        gpuprov_version=__version__,
    )
    snap.host = hostfacts.read_host(root=root)
    snap.host.servers = serving_units.installed_servers(root)
    if gpus:
        backend = nvml_backend if nvml_backend is not None else nvml.backend()
        snap.driver, snap.gpus = probe_gpus(backend, root=root)
    snap.cuda_toolkits = toolkits.find_toolkits(environ, root=root)  # a llama_cpp build picks its nvcc
    if python_stack:
        snap.python = pyenv.read_environment(python)
    snap.engines = engines.find_engines(environ)
    snap.env = masked_env(relevant_env(environ))  # a secret's value is never kept, so never shown
    shown: Snapshot = printable_copy(snap)  # no text from this host reaches a terminal as control characters
    return shown


def plan_snapshot(*, root: Path = Path("/")) -> Snapshot:
    """What a plan needs: the probe without the Python-stack part. For an image tree (``root`` not
    ``/``) no NVML call at all: the GPUs are those of the machine the image boots on, and its boot unit
    applies the settings there; the snapshot has no GPU."""
    return probe(root=root, python_stack=False, gpus=not roottree.is_image(root))


# -- NVML ------------------------------------------------------------------------------------------


def classify_init_failure(exc: BaseException, driver: DriverInfo) -> NvmlStatus:
    code = nvml.error_code(exc)
    text = str(exc)
    if code == nvml.ERROR_LIBRARY_NOT_FOUND:
        if driver.kernel_module_version:
            return NvmlStatus(
                False,
                "library_not_found",
                f"kernel module {driver.kernel_module_version} is loaded but libnvidia-ml.so.1 is missing "
                "(driver userspace not installed, or not on the loader path)",
            )
        return NvmlStatus(False, "library_not_found", "libnvidia-ml.so.1 not found: no NVIDIA driver installed")
    if code == nvml.ERROR_DRIVER_NOT_LOADED:
        return NvmlStatus(False, "driver_not_loaded", "the NVIDIA kernel module is not loaded")
    if code == nvml.ERROR_LIB_RM_VERSION_MISMATCH:
        lib = driver.nvml_library_version or "?"
        kmod = driver.kernel_module_version or "?"
        return NvmlStatus(
            False,
            "version_mismatch",
            f"Driver/library version mismatch: kernel module {kmod}, userspace library {lib}",
        )
    if code == nvml.ERROR_NO_PERMISSION:
        return NvmlStatus(False, "no_permission", "no permission to open /dev/nvidia* devices")
    if code == nvml.ERROR_GPU_NOT_FOUND:
        return NvmlStatus(False, "no_gpu", "NVML found no GPU")
    return NvmlStatus(False, "unknown", f"NVML failed to start: {text}")


def probe_gpus(backend: Any, *, root: Path = Path("/")) -> tuple[DriverInfo, list[GpuInfo]]:
    driver = hostfacts.read_driver_files(root=root)
    driver.persistenced_running = hostfacts.process_running("nvidia-persistenced", root=root)
    try:
        backend.nvmlInit()
    except Exception as exc:  # NVMLError, or OSError from a broken library
        driver.nvml = classify_init_failure(exc, driver)
        return driver, []
    try:
        reader = _Reader(backend, driver.unavailable)
        driver.driver_version = reader.get("driver_version", "nvmlSystemGetDriverVersion")
        driver.nvml_version = reader.get("nvml_version", "nvmlSystemGetNVMLVersion")
        cuda = reader.get("cuda_driver_version", "nvmlSystemGetCudaDriverVersion_v2")
        if cuda is None:
            cuda = reader.get("cuda_driver_version", "nvmlSystemGetCudaDriverVersion")
        if cuda is not None:
            driver.unavailable.pop("cuda_driver_version", None)
            driver.cuda_driver_version = f"{cuda // 1000}.{cuda % 1000 // 10}"
        count = reader.get("device_count", "nvmlDeviceGetCount") or 0
        if count == 0:
            driver.nvml = NvmlStatus(False, "no_gpu", "the driver is loaded but NVML sees no GPU")
            return driver, []
        driver.nvml = NvmlStatus(True, "ok", "")
        gpus = [_probe_gpu(backend, i) for i in range(count)]
        return driver, gpus
    finally:
        with contextlib.suppress(Exception):
            backend.nvmlShutdown()


class _Reader:
    """Calls NVML functions by name, recording why a field is unavailable instead of raising."""

    def __init__(self, backend: Any, unavailable: dict[str, str]) -> None:
        self.backend = backend
        self.unavailable = unavailable

    def get(self, fld: str, fn_name: str, *args: Any, **kwargs: Any) -> Any:
        fn: Callable[..., Any] | None = getattr(self.backend, fn_name, None)
        if fn is None:
            self.unavailable[fld] = f"not_in_bindings ({fn_name})"
            return None
        try:
            value = fn(*args, **kwargs)
        except nvml.NVMLError as exc:
            code = nvml.error_code(exc)
            if code == nvml.ERROR_NOT_SUPPORTED:
                self.unavailable[fld] = "not_supported"
            elif code == nvml.ERROR_NO_PERMISSION:
                self.unavailable[fld] = "no_permission"
            elif code == nvml.ERROR_FUNCTION_NOT_FOUND:
                self.unavailable[fld] = f"not_in_driver ({fn_name})"
            else:
                self.unavailable[fld] = f"error: {exc}"
            return None
        except Exception as exc:  # a ctypes or bindings bug must not sink the probe
            self.unavailable[fld] = f"error: {type(exc).__name__}: {exc}"
            return None
        self.unavailable.pop(fld, None)
        return _text(value)


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _w(mw: Any) -> float | None:
    return None if mw is None else round(mw / 1000.0, 2)


def _mib(b: Any) -> int | None:
    return None if b is None else int(b) // (1024 * 1024)


def _read_temperature(r: _Reader, h: Any) -> int | None:
    """The GPU core temperature: nvmlDeviceGetTemperatureV, or the deprecated call on drivers without it."""
    temp = r.get("temperature_c", "nvmlDeviceGetTemperatureV", h, 0)
    if temp is None:
        temp = r.get("temperature_c", "nvmlDeviceGetTemperature", h, 0)
    return None if temp is None else int(temp)


def _read_clock_events(r: _Reader, h: Any, gpu: GpuInfo) -> None:
    """What slows the clocks (mask and names), by the current call or the older "throttle" name."""
    mask = r.get("clock_event_reasons", "nvmlDeviceGetCurrentClocksEventReasons", h)
    if mask is None:
        mask = r.get("clock_event_reasons", "nvmlDeviceGetCurrentClocksThrottleReasons", h)
    if mask is not None:
        gpu.clock_event_reasons_mask = int(mask)
        gpu.clock_event_reasons = nvmlcodes.decode_clock_event_reasons(int(mask))


def _probe_gpu(backend: Any, index: int) -> GpuInfo:
    gpu = GpuInfo(index=index, name="unknown")
    r = _Reader(backend, gpu.unavailable)
    h = r.get("handle", "nvmlDeviceGetHandleByIndex", index)
    if h is None:
        return gpu
    gpu.name = r.get("name", "nvmlDeviceGetName", h) or "unknown"
    gpu.uuid = r.get("uuid", "nvmlDeviceGetUUID", h)
    gpu.serial = r.get("serial", "nvmlDeviceGetSerial", h)
    pci = r.get("pci_bus_id", "nvmlDeviceGetPciInfo", h)
    if pci is not None:
        gpu.pci_bus_id = _text(getattr(pci, "busId", None))
    cc = r.get("compute_capability", "nvmlDeviceGetCudaComputeCapability", h)
    if cc is not None:
        gpu.compute_capability = f"{cc[0]}.{cc[1]}"
    arch = r.get("architecture", "nvmlDeviceGetArchitecture", h)
    gpu.architecture = NVML_ARCHITECTURES.get(arch) if arch is not None else None
    if gpu.architecture is None:
        gpu.architecture = architecture_for_cc(gpu.compute_capability)
        if gpu.architecture is not None:
            gpu.unavailable.pop("architecture", None)

    v2 = getattr(backend, "nvmlMemory_v2", None)  # v1 counts reserved memory as used (R510+)
    mem = r.get("vram", "nvmlDeviceGetMemoryInfo", h, version=v2) if v2 else None
    if mem is None:  # drivers before R510 have no v2
        mem = r.get("vram", "nvmlDeviceGetMemoryInfo", h)
    if mem is not None:
        gpu.vram_total_mib = _mib(mem.total)
        gpu.vram_used_mib = _mib(mem.used)
        gpu.vram_free_mib = _mib(mem.free)
        gpu.vram_reserved_mib = _mib(getattr(mem, "reserved", None))

    gpu.power_limit_w = _w(r.get("power_limit_w", "nvmlDeviceGetPowerManagementLimit", h))
    gpu.power_default_limit_w = _w(r.get("power_default_limit_w", "nvmlDeviceGetPowerManagementDefaultLimit", h))
    constraints = r.get("power_constraints_w", "nvmlDeviceGetPowerManagementLimitConstraints", h)
    if constraints is not None:
        gpu.power_min_limit_w, gpu.power_max_limit_w = _w(constraints[0]), _w(constraints[1])
    gpu.power_enforced_limit_w = _w(r.get("power_enforced_limit_w", "nvmlDeviceGetEnforcedPowerLimit", h))
    gpu.power_draw_w = _w(r.get("power_draw_w", "nvmlDeviceGetPowerUsage", h))

    pm = r.get("persistence_mode", "nvmlDeviceGetPersistenceMode", h)
    gpu.persistence_mode = None if pm is None else bool(pm)
    gpu.performance_state = r.get("performance_state", "nvmlDeviceGetPerformanceState", h)
    if gpu.performance_state == 32:  # NVML_PSTATE_UNKNOWN
        gpu.performance_state = None

    gpu.temperature_c = _read_temperature(r, h)
    gpu.temperature_slowdown_c = r.get("temperature_slowdown_c", "nvmlDeviceGetTemperatureThreshold", h, 1)
    gpu.temperature_shutdown_c = r.get("temperature_shutdown_c", "nvmlDeviceGetTemperatureThreshold", h, 0)

    _read_clock_events(r, h, gpu)

    gpu.max_sm_clock_mhz = r.get("max_sm_clock_mhz", "nvmlDeviceGetMaxClockInfo", h, 1)  # NVML_CLOCK_SM
    gpu.max_memory_clock_mhz = r.get("max_memory_clock_mhz", "nvmlDeviceGetMaxClockInfo", h, 2)  # MEM
    gpu.pcie_generation_current = r.get("pcie_generation_current", "nvmlDeviceGetCurrPcieLinkGeneration", h)
    gpu.pcie_generation_max = r.get("pcie_generation_max", "nvmlDeviceGetMaxPcieLinkGeneration", h)
    gpu.pcie_width_current = r.get("pcie_width_current", "nvmlDeviceGetCurrPcieLinkWidth", h)
    gpu.pcie_width_max = r.get("pcie_width_max", "nvmlDeviceGetMaxPcieLinkWidth", h)

    ecc = r.get("ecc_enabled", "nvmlDeviceGetEccMode", h)
    gpu.ecc_enabled = None if ecc is None else bool(ecc[0])
    mig = r.get("mig_enabled", "nvmlDeviceGetMigMode", h)
    gpu.mig_enabled = None if mig is None else bool(mig[0])
    cm = r.get("compute_mode", "nvmlDeviceGetComputeMode", h)
    gpu.compute_mode = None if cm is None else nvmlcodes.COMPUTE_MODES.get(cm, str(cm))
    da = r.get("display_active", "nvmlDeviceGetDisplayActive", h)
    gpu.display_active = None if da is None else bool(da)
    return gpu


# -- repeated cheap readings (benchmarks) ----------------------------------------------------------


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
        self._count = _Reader(self.backend, {}).get("device_count", "nvmlDeviceGetCount") or 0
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
        r = _Reader(self.backend, gpu.unavailable)
        h = r.get("handle", "nvmlDeviceGetHandleByIndex", index)
        if h is None:
            return gpu
        gpu.name = r.get("name", "nvmlDeviceGetName", h) or "unknown"
        util = r.get("utilization_gpu_pct", "nvmlDeviceGetUtilizationRates", h)
        gpu.utilization_gpu_pct = None if util is None else int(util.gpu)
        gpu.power_draw_w = _w(r.get("power_draw_w", "nvmlDeviceGetPowerUsage", h))
        gpu.temperature_c = _read_temperature(r, h)
        _read_clock_events(r, h, gpu)
        v2 = getattr(self.backend, "nvmlMemory_v2", None)  # as in _probe_gpu: v1 counts reserved as used
        mem = r.get("vram", "nvmlDeviceGetMemoryInfo", h, version=v2) if v2 else None
        if mem is None:
            mem = r.get("vram", "nvmlDeviceGetMemoryInfo", h)
        if mem is not None:
            gpu.vram_total_mib = _mib(mem.total)
            gpu.vram_used_mib = _mib(mem.used)
        if self.detail:
            gpu.power_enforced_limit_w = _w(r.get("power_enforced_limit_w", "nvmlDeviceGetEnforcedPowerLimit", h))
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
