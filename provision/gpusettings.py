"""The code that changes GPU settings through NVML setters (``provision.nvml.backend()``): power
limit, persistence mode, locked GPU clocks. Everything else only reads snapshots. What to set is
decided in :mod:`provision.gpudecisions` (pure); this module applies it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from provision import applystate, nvml
from provision.errors import GpuprovError
from provision.gpudecisions import (
    SETTINGS,
    current_settings,
    gpu_key,
    image_targets,
    pending,
    power_limit_known_refused,
)
from provision.plantypes import HostState
from provision.snapshot import GpuInfo


class GpuSettingsError(GpuprovError):
    """NVML refused a setting (permission, not supported, out of range) or the GPU is not there."""


def running_as_root() -> bool:
    """Root, as NVML setters see it (the replay backend can simulate a user: GPUPROV_NVML_REPLAY_AS_USER)."""
    from provision.replay import AS_USER_ENV

    if os.environ.get(nvml.REPLAY_ENV) and os.environ.get(AS_USER_ENV, "") not in ("", "0"):
        return False
    return os.geteuid() == 0


def _explain(exc: BaseException, what: str, gpu: GpuInfo) -> GpuSettingsError:
    code = nvml.error_code(exc)
    where = f"GPU {gpu.index} ({gpu.name})"
    if code == nvml.ERROR_NO_PERMISSION:
        return GpuSettingsError(f"{where}: setting {what} needs root: run with sudo (or use --check)")
    if code == nvml.ERROR_NOT_SUPPORTED:
        return GpuSettingsError(f"{where}: the driver does not support setting {what} on this GPU")
    if code == nvml.ERROR_INVALID_ARGUMENT:
        return GpuSettingsError(f"{where}: the driver refused {what} as out of range")
    return GpuSettingsError(f"{where}: setting {what} failed: {exc}")


def apply_settings(
    backend: Any,
    gpu: GpuInfo,
    changes: dict[str, Any],
    *,
    state_dir: Path | None = None,
    fallback_locked_clocks_mhz: list[int] | None = None,
) -> list[str]:
    """Call the setters for ``changes`` (from :func:`pending`) on ``gpu``. NVML must be initialised.
    Returns one line per setting changed. Locked clocks are remembered in ``state_dir``.

    ``fallback_locked_clocks_mhz``: when the driver refuses the power limit as not supported (many
    laptops, even where NVML reports a range), lock the GPU clocks to this range instead, and remember
    the refusal in ``state_dir`` so later plans use the fallback directly.
    """
    done = []
    handle = backend.nvmlDeviceGetHandleByIndex(gpu.index)
    for setting in SETTINGS:
        if setting not in changes:
            continue
        value = changes[setting]
        try:
            if setting == "power_limit_w":
                try:
                    backend.nvmlDeviceSetPowerManagementLimit(handle, round(float(value) * 1000))
                except nvml.NVMLError as exc:
                    if fallback_locked_clocks_mhz is None or nvml.error_code(exc) != nvml.ERROR_NOT_SUPPORTED:
                        raise
                    done += _lock_instead(backend, handle, gpu, list(fallback_locked_clocks_mhz), state_dir)
                    continue
                if state_dir is not None:
                    applystate.set_power_limit_refused(state_dir, gpu_key(gpu), False)
                done.append(f"power limit {value:g} W")
            elif setting == "persistence_mode":
                backend.nvmlDeviceSetPersistenceMode(handle, 1 if value else 0)
                done.append(f"persistence mode {'on' if value else 'off'}")
            elif value:
                backend.nvmlDeviceSetGpuLockedClocks(handle, int(value[0]), int(value[1]))
                done.append(f"GPU clocks locked to {value[0]}-{value[1]} MHz")
            else:
                backend.nvmlDeviceResetGpuLockedClocks(handle)
                done.append("GPU clock lock reset")
        except nvml.NVMLError as exc:
            raise _explain(exc, setting.replace("_", " "), gpu) from None
        if setting == "locked_clocks_mhz" and state_dir is not None:
            applystate.set_locked_clocks(state_dir, gpu_key(gpu), list(value) if value else None)
    return done


def _lock_instead(backend: Any, handle: Any, gpu: GpuInfo, lock: list[int], state_dir: Path | None) -> list[str]:
    """The power limit was refused as not supported: lock the clocks (unless gpuprov already did, this boot)."""
    key = gpu_key(gpu)
    if state_dir is not None:
        applystate.set_power_limit_refused(state_dir, key, True)
        if applystate.recorded_locked_clocks(state_dir).get(key) == lock:
            return []
    try:
        backend.nvmlDeviceSetGpuLockedClocks(handle, int(lock[0]), int(lock[1]))
    except nvml.NVMLError as exc:
        raise _explain(exc, "locked clocks (the fallback for the refused power limit)", gpu) from None
    if state_dir is not None:
        applystate.set_locked_clocks(state_dir, key, lock)
    return [f"power limit refused by the driver (not supported): GPU clocks locked to {lock[0]}-{lock[1]} MHz instead"]


def find_gpu(gpus: list[GpuInfo], key: str, index: int | None) -> GpuInfo:
    for gpu in gpus:
        if gpu_key(gpu) == key:
            return gpu
    if key.startswith("index:") and index is not None and 0 <= index < len(gpus):
        return gpus[index]
    raise GpuSettingsError(f"GPU {key} is not on this host (any more): run gpuprov plan again")


def with_nvml(fn: Callable[[Any, list[GpuInfo]], Any], *, root: Path = Path("/")) -> Any:
    """Initialise NVML, probe the GPUs, call ``fn(backend, gpus)``, shut NVML down."""
    from provision.probe import probe_gpus

    backend = nvml.backend()
    driver, gpus = probe_gpus(backend, root=root)
    if not driver.nvml.ok:
        raise GpuSettingsError(f"no usable NVIDIA driver: {driver.nvml.message or driver.nvml.kind}")
    backend.nvmlInit()
    try:
        return fn(backend, gpus)
    finally:
        backend.nvmlShutdown()


def reapply(settings_file: Path, *, wait_s: float = 120.0, state_dir: Path | None = None) -> list[str]:
    """Boot-time re-apply of a settings file written by apply; waits up to ``wait_s`` for the GPU."""
    try:
        config = json.loads(settings_file.read_text(encoding="utf-8"))
        targets = [
            (str(t["key"]), t.get("index"), dict(t["settings"]), t.get("fallback_locked_clocks_mhz"))
            for t in config["gpus"]
        ]
        # written by an apply to an image tree: the profile's GPU section, for the GPUs found at boot
        image = config.get("image")
        name = str(config.get("profile", ""))
        if image is not None and not isinstance(image, dict):
            raise TypeError("image is not a mapping")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise GpuSettingsError(f"{settings_file}: not a gpuprov GPU settings file ({exc})") from None

    def run(backend: Any, gpus: list[GpuInfo]) -> list[str]:
        if image is None:
            return _reapply(backend, gpus, targets, state_dir)
        return _reapply_image(backend, gpus, image, name, state_dir)

    deadline = time.monotonic() + wait_s
    while True:
        try:
            return with_nvml(run)
        except GpuSettingsError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(2)


def _reapply(backend: Any, gpus: list[GpuInfo], targets: list, state_dir: Path | None) -> list[str]:
    recorded = applystate.recorded_locked_clocks(state_dir) if state_dir else {}
    refused = applystate.power_limit_refused(state_dir) if state_dir else set()
    done = []
    for key, index, settings, fallback in targets:
        gpu = find_gpu(gpus, key, index)
        changes = pending(current_settings(gpu, recorded), settings, fallback_locked_clocks_mhz=fallback,
                          power_limit_refused=power_limit_known_refused(gpu, refused))  # fmt: skip
        lines = apply_settings(backend, gpu, changes, state_dir=state_dir, fallback_locked_clocks_mhz=fallback)
        done += [f"GPU {gpu.index}: {line}" for line in lines]
    return done


def _reapply_image(backend: Any, gpus: list[GpuInfo], image: dict, name: str, state_dir: Path | None) -> list[str]:
    """The first boots of an image: the profile's settings for the GPUs of this machine that match it."""
    host = HostState(
        locked_clocks_mhz=applystate.recorded_locked_clocks(state_dir) if state_dir else {},
        power_limit_refused=applystate.power_limit_refused(state_dir) if state_dir else set(),
    )
    targets, notes = image_targets(image, name, gpus, host)
    if state_dir is not None:  # as an apply does: what this machine had, for `gpuprov revert` here
        for t in targets:
            gpu = find_gpu(gpus, t.key, t.index)
            managed = set(t.settings) | ({"locked_clocks_mhz"} if t.fallback_locked_clocks_mhz else set())
            current = current_settings(gpu, host.locked_clocks_mhz)
            record = {"index": gpu.index, "name": gpu.name, "settings": {k: current.get(k) for k in sorted(managed)}}
            applystate.record_previous(state_dir, "gpus", t.key, record)
    todo = [(t.key, t.index, t.settings, t.fallback_locked_clocks_mhz) for t in targets]
    return list(notes) + _reapply(backend, gpus, todo, state_dir)
