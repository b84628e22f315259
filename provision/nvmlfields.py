"""Asking NVML for one field at a time, for the probe and the watchers alike.

Every query goes through :class:`FieldReader`, which turns "not supported", "no permission" and missing
functions (old driver, old bindings) into a recorded reason instead of an exception, so one field a GPU
lacks never sinks a reading. NVML failing to start is classified (:func:`classify_init_failure`). The
readings NVML offers two ways (a newer call and the one older drivers have) are read here once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from provision import nvml, nvmlcodes
from provision.snapshot import DriverInfo, GpuInfo, NvmlStatus


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


class FieldReader:
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
        return as_text(value)


def as_text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def watts(mw: Any) -> float | None:
    return None if mw is None else round(mw / 1000.0, 2)


def mib(b: Any) -> int | None:
    return None if b is None else int(b) // (1024 * 1024)


def read_temperature(r: FieldReader, h: Any) -> int | None:
    """The GPU core temperature: nvmlDeviceGetTemperatureV, or the deprecated call on drivers without it."""
    temp = r.get("temperature_c", "nvmlDeviceGetTemperatureV", h, 0)
    if temp is None:
        temp = r.get("temperature_c", "nvmlDeviceGetTemperature", h, 0)
    return None if temp is None else int(temp)


def read_clock_events(r: FieldReader, h: Any, gpu: GpuInfo) -> None:
    """What slows the clocks (mask and names), by the current call or the older "throttle" name."""
    mask = r.get("clock_event_reasons", "nvmlDeviceGetCurrentClocksEventReasons", h)
    if mask is None:
        mask = r.get("clock_event_reasons", "nvmlDeviceGetCurrentClocksThrottleReasons", h)
    if mask is not None:
        gpu.clock_event_reasons_mask = int(mask)
        gpu.clock_event_reasons = nvmlcodes.decode_clock_event_reasons(int(mask))


def read_memory(r: FieldReader, h: Any) -> Any:
    """nvmlDeviceGetMemoryInfo: v2 where the bindings have it (v1 counts reserved memory as used, R510+),
    v1 on drivers before R510, which have no v2."""
    v2 = getattr(r.backend, "nvmlMemory_v2", None)
    mem = r.get("vram", "nvmlDeviceGetMemoryInfo", h, version=v2) if v2 else None
    if mem is None:
        mem = r.get("vram", "nvmlDeviceGetMemoryInfo", h)
    return mem
