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


def backend() -> Any:
    """The NVML backend for this process: real pynvml, or the replay named by GPUPROV_NVML_REPLAY."""
    state = os.environ.get(REPLAY_ENV)
    if state:
        from provision.replay import ReplayNvml

        return ReplayNvml.from_state_file(state)
    return pynvml


def error_code(exc: BaseException) -> int | None:
    return getattr(exc, "value", None) if isinstance(exc, NVMLError) else None
