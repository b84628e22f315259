"""The one place that imports ``pynvml`` (package ``nvidia-ml-py``).

:func:`backend` returns the module-like object the probe and the GPU-settings code call: the real
``pynvml`` module, or — when ``GPUPROV_NVML_REPLAY`` names a state file — a
:class:`provision.replay.ReplayNvml` that answers from a recorded snapshot with the same function
names and the same error classes. Code above this layer never knows which one it talks to.
"""

from __future__ import annotations

import os
from typing import Any

import pynvml

NVMLError = pynvml.NVMLError

#: environment variable naming a replay state file (a snapshot JSON); see provision.replay
REPLAY_ENV = "GPUPROV_NVML_REPLAY"

ERROR_NOT_SUPPORTED = pynvml.NVML_ERROR_NOT_SUPPORTED
ERROR_NO_PERMISSION = pynvml.NVML_ERROR_NO_PERMISSION
ERROR_INVALID_ARGUMENT = pynvml.NVML_ERROR_INVALID_ARGUMENT
ERROR_FUNCTION_NOT_FOUND = pynvml.NVML_ERROR_FUNCTION_NOT_FOUND
ERROR_LIBRARY_NOT_FOUND = pynvml.NVML_ERROR_LIBRARY_NOT_FOUND
ERROR_DRIVER_NOT_LOADED = pynvml.NVML_ERROR_DRIVER_NOT_LOADED
ERROR_LIB_RM_VERSION_MISMATCH = pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH
ERROR_GPU_NOT_FOUND = getattr(pynvml, "NVML_ERROR_GPU_NOT_FOUND", 28)
ERROR_TIMEOUT = pynvml.NVML_ERROR_TIMEOUT

#: nvmlClocksEventReasons bits (nvml.h; "ThrottleReasons" is the deprecated name)
CLOCK_EVENT_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}

#: reasons that mean the GPU is being held back by heat or power, not by choice or idleness
THROTTLE_REASONS = {
    "sw_power_cap",
    "hw_slowdown",
    "sw_thermal_slowdown",
    "hw_thermal_slowdown",
    "hw_power_brake_slowdown",
}

COMPUTE_MODES = {0: "default", 1: "exclusive_thread", 2: "prohibited", 3: "exclusive_process"}


def decode_clock_event_reasons(mask: int) -> list[str]:
    names = [name for bit, name in CLOCK_EVENT_REASONS.items() if mask & bit]
    unknown = mask & ~sum(CLOCK_EVENT_REASONS)
    if unknown:
        names.append(f"unknown_0x{unknown:x}")
    return names


def backend() -> Any:
    """The NVML backend for this process: real pynvml, or the replay named by GPUPROV_NVML_REPLAY."""
    state = os.environ.get(REPLAY_ENV)
    if state:
        from provision.replay import ReplayNvml

        return ReplayNvml.from_state_file(state)
    return pynvml


def error_code(exc: BaseException) -> int | None:
    return getattr(exc, "value", None) if isinstance(exc, NVMLError) else None
