"""Is the GPU ready for a server? What ``gpuprov wait-gpu`` (a serving unit's ``ExecStartPre=``) waits for.

After a reboot an inference server can start before the NVIDIA driver has initialised its GPUs; it
then finds no CUDA device and runs on the CPU without failing (ollama#7669, whose workaround is
``ExecStartPre=sleep 10``). Waiting for a fixed time is a guess; this waits until NVML sees the GPUs
the server needs, up to a timeout, and fails the start (so systemd retries it) when they never come.

Where the driver's control device exists, CUDA also needs ``/dev/nvidia-uvm``: a hardened service
cannot create it (it has no privileges for nvidia-modprobe), so its absence is reported as not ready.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provision.errors import GpuprovError


class GpuNotReady(GpuprovError):
    """The GPUs a server needs did not become ready in time."""


@dataclass(frozen=True)
class Readiness:
    ready: bool
    #: what is missing (not ready) or which GPUs are there (ready)
    detail: str


def check(backend: Any, indices: tuple[int, ...], *, root: Path = Path("/")) -> Readiness:
    """One look: NVML up, every needed GPU index present (any GPU when ``indices`` is empty), CUDA's
    device files there."""
    from provision.probe import probe_gpus

    driver, gpus = probe_gpus(backend, root=root)
    if not driver.nvml.ok:
        return Readiness(False, f"NVML: {driver.nvml.message or driver.nvml.kind}")
    seen = {g.index: g for g in gpus}
    missing = [i for i in indices if i not in seen]
    if missing:
        return Readiness(
            False, f"NVML sees GPU {', '.join(map(str, sorted(seen)))}, not GPU {', '.join(map(str, missing))}"
        )
    if not gpus:
        return Readiness(False, "NVML sees no GPU")
    dev = root / "dev"
    if (dev / "nvidiactl").exists() and not (dev / "nvidia-uvm").exists():
        return Readiness(
            False,
            "/dev/nvidia-uvm is missing (the nvidia-uvm module is not loaded): CUDA cannot start in a "
            "hardened service; load it at boot (echo nvidia-uvm > /etc/modules-load.d/nvidia-uvm.conf)",
        )
    wanted = [seen[i] for i in indices] if indices else gpus
    return Readiness(True, ", ".join(f"GPU {g.index} ({g.name})" for g in wanted))


#: the longest wait (and polling interval) accepted: a week. Serving units wait serving.WAIT_GPU_S; a much
#: longer value is a typo, and time.sleep overflows (time_t) a little above 1e9 s
MAX_WAIT_S = 7 * 24 * 3600
#: the shortest polling interval: below it the wait busy-polls NVML (and a fake clock never advances)
MIN_INTERVAL_S = 0.01


def interval_problem(timeout_s: float, interval_s: float) -> str | None:
    """What is wrong with a timeout and polling interval (None: nothing). Infinity and NaN are refused:
    ``inf`` overflows the sleep, and ``nan`` compares false with everything, so the wait never ends."""
    if not (math.isfinite(timeout_s) and 0 <= timeout_s <= MAX_WAIT_S):
        return f"--timeout-s {timeout_s:g}: expected a number of seconds from 0 to {MAX_WAIT_S} (a week)"
    if not (math.isfinite(interval_s) and MIN_INTERVAL_S <= interval_s <= MAX_WAIT_S):
        return f"--interval-s {interval_s:g}: expected a number of seconds from {MIN_INTERVAL_S:g} to {MAX_WAIT_S}"
    return None


def wait_for_gpus(
    indices: tuple[int, ...],
    *,
    timeout_s: float,
    interval_s: float = 1.0,
    backend: Callable[[], Any] | None = None,
    root: Path = Path("/"),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Poll :func:`check` until ready; returns a line saying what is ready and after how long.
    Raises :class:`GpuNotReady` with the last reason once ``timeout_s`` has passed."""
    problem = interval_problem(timeout_s, interval_s)
    if problem is not None:
        raise ValueError(problem)
    if backend is None:
        from provision import nvml

        backend = nvml.backend
    start = clock()
    while True:
        result = check(backend(), indices, root=root)
        waited = clock() - start
        if result.ready:
            return f"ready after {waited:.1f} s: {result.detail}"
        if waited >= timeout_s:
            raise GpuNotReady(f"GPUs not ready after {timeout_s:g} s: {result.detail}")
        sleep(min(interval_s, max(0.0, timeout_s - waited)))
