"""The code that changes GPU settings through NVML setters (``provision.nvml.backend()``): power
limit, persistence mode, locked GPU clocks. Everything else only reads snapshots. What to set is
decided in :mod:`provision.gpudecisions` (pure); this module applies it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

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
from provision.plantypes import GpuSettingsTarget, HostState
from provision.snapshot import GpuInfo

_Result = TypeVar("_Result")


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


def target_from_dict(item: dict[str, Any]) -> GpuSettingsTarget:
    """A GPU's target as the plan writes it (``GpuSettingsTarget.to_dict``: the boot unit's settings file,
    the module's ``gpus`` items). Raises KeyError/TypeError/ValueError on another shape."""
    fallback = item.get("fallback_locked_clocks_mhz")
    settings = dict(item["settings"])
    unknown = set(settings) - set(SETTINGS)
    if unknown:
        raise ValueError(f"unknown GPU setting(s) {', '.join(sorted(unknown))}: allowed {', '.join(SETTINGS)}")
    index = item.get("index")
    return GpuSettingsTarget(
        key=str(item["key"]),
        index=int(index) if index is not None else -1,
        name=str(item.get("name") or ""),
        settings=settings,
        fallback_locked_clocks_mhz=[int(v) for v in fallback] if fallback is not None else None,
    )


def with_nvml(fn: Callable[[Any, list[GpuInfo]], _Result], *, root: Path = Path("/")) -> _Result:
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
        targets = [target_from_dict(t) for t in config["gpus"]]
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


def _reapply(backend: Any, gpus: list[GpuInfo], targets: list[GpuSettingsTarget], state_dir: Path | None) -> list[str]:
    done = apply_targets(backend, gpus, targets, state_dir=state_dir, record=False)
    return [f"GPU {o.index}: {line}" for o in done for line in o.lines]


def _reapply_image(
    backend: Any, gpus: list[GpuInfo], image: dict[str, Any], name: str, state_dir: Path | None
) -> list[str]:
    """The first boots of an image: the profile's settings for the GPUs of this machine that match it,
    recorded first as an apply does (what this machine had, for `gpuprov revert` here)."""
    host = HostState(
        locked_clocks_mhz=applystate.recorded_locked_clocks(state_dir) if state_dir else {},
        power_limit_refused=applystate.power_limit_refused(state_dir) if state_dir else set(),
    )
    targets, notes = image_targets(image, name, gpus, host)
    done = apply_targets(backend, gpus, targets, state_dir=state_dir, record=True)
    return list(notes) + [f"GPU {o.index}: {line}" for o in done for line in o.lines]


@dataclass(frozen=True)
class GpuOutcome:
    """What :func:`apply_targets` did to one GPU."""

    key: str
    index: int
    name: str
    #: the settings that differed from the target, with their values before
    before: dict[str, Any]
    #: the same settings, with the target's values
    after: dict[str, Any]
    #: one line per setting set (in check mode: ``setting before -> after``, nothing set)
    lines: list[str]


def apply_targets(
    backend: Any,
    gpus: list[GpuInfo],
    targets: Sequence[GpuSettingsTarget],
    *,
    state_dir: Path | None,
    record: bool,
    check: bool = False,
) -> list[GpuOutcome]:
    """Bring each GPU of ``targets`` to its settings: the one loop behind the ``gpuprov_gpu_settings``
    module (apply, revert) and the boot unit's re-apply. NVML must be initialised (:func:`with_nvml`).

    Per GPU: its current settings (the probe, and the clock lock gpuprov recorded this boot), the ones that
    differ (:func:`provision.gpudecisions.pending`, with the refused-power-limit rule), and, unless
    ``check``, first the previous values recorded for revert (``record``, before the first change only),
    then the setters. The fallback clock lock of a target is used when the driver refuses its power limit.
    """
    recorded = applystate.recorded_locked_clocks(state_dir) if state_dir else {}
    refused = applystate.power_limit_refused(state_dir) if state_dir else set()
    out = []
    for target in targets:
        gpu = find_gpu(gpus, target.key, target.index)
        current = current_settings(gpu, recorded)
        fallback = target.fallback_locked_clocks_mhz
        todo = pending(
            current,
            target.settings,
            fallback_locked_clocks_mhz=fallback,
            power_limit_refused=power_limit_known_refused(gpu, refused),
        )
        before = {k: current.get(k) for k in todo}
        lines = [f"{k} {current.get(k)} -> {v}" for k, v in todo.items()]
        if todo and not check:
            if record and state_dir is not None:
                managed = set(target.settings) | ({"locked_clocks_mhz"} if fallback else set())
                was = {k: current.get(k) for k in sorted(managed)}
                entry = {"index": gpu.index, "name": gpu.name, "settings": was}
                applystate.record_previous(state_dir, "gpus", gpu_key(gpu), entry)
            lines = apply_settings(backend, gpu, todo, state_dir=state_dir, fallback_locked_clocks_mhz=fallback)
        out.append(GpuOutcome(gpu_key(gpu), gpu.index, gpu.name, before, dict(todo), lines))
    return out
