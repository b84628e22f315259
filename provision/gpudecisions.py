"""Pure decisions about GPU settings: which settings a profile wants on a GPU, which of them differ
from what a GPU has, and the refused-power-limit rule. No NVML call, no file: the setters live in
:mod:`provision.gpusettings`, which applies what these functions decide.

Desired settings for one GPU are a mapping with only the keys to manage:
``{"power_limit_w": 110.0, "persistence_mode": True, "locked_clocks_mhz": [210, 1700]}`` —
``locked_clocks_mhz: None`` means "reset locked clocks". The same mapping travels through the plan,
the Ansible module's arguments, the boot-time settings file and the revert record.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from provision.plantypes import GpuSettingsTarget, HostState, PlanError
from provision.profiles.schema import GpuSection, Match, Profile
from provision.snapshot import GpuInfo

SETTINGS = ("power_limit_w", "persistence_mode", "locked_clocks_mhz")


def gpu_key(gpu: GpuInfo) -> str:
    """How gpuprov names a GPU across runs: its UUID, or its index when NVML gave none."""
    return gpu.uuid or f"index:{gpu.index}"


def current_settings(gpu: GpuInfo, recorded_clocks: dict[str, list[int] | None]) -> dict[str, Any]:
    return {
        "power_limit_w": gpu.power_limit_w,
        "persistence_mode": gpu.persistence_mode,
        "locked_clocks_mhz": recorded_clocks.get(gpu_key(gpu)),
    }


def same(setting: str, current: Any, desired: Any) -> bool:
    if setting == "power_limit_w":
        return current is not None and desired is not None and round(current * 1000) == round(desired * 1000)
    if setting == "locked_clocks_mhz":
        return (list(current) if current else None) == (list(desired) if desired else None)
    equal: bool = current == desired  # the readings' types vary by setting (float, bool, list of MHz)
    return equal


def pending(
    current: dict[str, Any],
    desired: dict[str, Any],
    *,
    fallback_locked_clocks_mhz: list[int] | None = None,
    power_limit_refused: bool = False,
) -> dict[str, Any]:
    """The managed settings whose current value differs from the desired one.

    A power limit the driver refused (``power_limit_refused``) whose fallback clock lock is in place is
    not pending: the fallback is what this GPU can do, and trying the setter again changes nothing.
    """
    # None is "reset" for a clock lock; for a power limit or persistence it is a value NVML could not read
    # when gpuprov recorded it (a laptop's power limit): nothing known to restore, so left as it is
    out = {
        k: v
        for k, v in desired.items()
        if k in SETTINGS and (v is not None or k == "locked_clocks_mhz") and not same(k, current.get(k), v)
    }
    if (
        "power_limit_w" in out
        and power_limit_refused
        and fallback_locked_clocks_mhz is not None
        and same("locked_clocks_mhz", current.get("locked_clocks_mhz"), fallback_locked_clocks_mhz)
    ):
        del out["power_limit_w"]
    return out


def power_limit_known_refused(gpu: GpuInfo, refused_keys: Collection[str]) -> bool:
    """The driver refuses a power-limit change on this GPU, as far as gpuprov knows: it refused when
    gpuprov last tried (``refused_keys``: :func:`provision.applystate.power_limit_refused`), or the
    snapshot says so (a reading whose requested limit is N/A). Then the profile's fallback clock lock
    stands in for the power limit, in the plan, at apply and at boot alike."""
    return gpu_key(gpu) in refused_keys or gpu.unavailable.get("set_power_limit") == "not_supported"


def _power_settable(gpu: GpuInfo) -> str | None:
    """None when the power limit can be set, else why not."""
    reason = gpu.unavailable.get("power_constraints_w")
    if reason == "not_supported" or gpu.power_min_limit_w is None or gpu.power_max_limit_w is None:
        return (
            "NVML reports no power-limit range for this GPU (not supported: "
            "on laptops Dynamic Boost / nvidia-powerd is in charge)"
        )
    return None


def _fallback_lock(gpu: GpuInfo, profile: Profile, label: str) -> list[int] | None:
    """The profile's locked-clock fallback for a GPU whose driver refuses power limits (checked here)."""
    if profile.gpu.fallback_locked_clocks_mhz is None:
        return None
    lock = list(profile.gpu.fallback_locked_clocks_mhz)
    top = gpu.max_sm_clock_mhz
    if top is not None and lock[1] > top:
        raise PlanError(
            f"{label}: locked clock maximum {lock[1]} MHz is above the GPU's {top} MHz: "
            f"change the profile {profile.name}"
        )
    return lock


def gpu_settings_for(
    gpu: GpuInfo, profile: Profile, host: HostState, notes: list[str]
) -> tuple[dict[str, Any], list[int] | None]:
    """(desired settings, the clock lock to use instead if the driver refuses the power limit at apply time).
    Lines about what is left alone or replaced are appended to ``notes``."""
    section = profile.gpu
    label = f"GPU {gpu.index} ({gpu.name})"
    settings: dict[str, Any] = {}
    lock = None
    on_refusal = None
    if section.sets_power_limit:
        if section.power_limit_w is not None:
            watts: float | None = section.power_limit_w
            what = f"{watts:g} W"
        elif gpu.power_default_limit_w is not None:
            watts = round(gpu.power_default_limit_w * (section.power_limit_percent or 0) / 100.0, 3)
            what = f"{watts:g} W"
        else:
            watts, what = None, f"{section.power_limit_percent:g} % of the default limit"
        why_not = _power_settable(gpu)
        if why_not is None and watts is None:
            why_not = "NVML reports no default power limit for this GPU, so a percentage of it cannot be set"
        if why_not is None:
            assert watts is not None
            lo, hi = gpu.power_min_limit_w, gpu.power_max_limit_w
            assert lo is not None and hi is not None
            if not lo <= watts <= hi:
                raise PlanError(
                    f"{label}: power limit {watts:g} W is outside what this GPU accepts "
                    f"({lo:g}-{hi:g} W, NVML constraints): change the profile {profile.name}"
                )
            on_refusal = _fallback_lock(gpu, profile, label)
            # known refused: gpuprov tried, or the snapshot says so (a reading whose requested limit is N/A);
            # either way the boot file keeps the limit and its fallback, so render --from equals what apply writes
            refused = power_limit_known_refused(gpu, host.power_limit_refused)
            why = (
                "the driver refused a power-limit change when gpuprov last tried (not supported)"
                if gpu_key(gpu) in host.power_limit_refused
                else "the driver refuses power-limit changes on this GPU (not supported, as the snapshot says)"
            )
            if refused and on_refusal is None:
                notes.append(f"{label}: {why} and the profile has no fallback, so the power limit is left alone")
            else:
                settings["power_limit_w"] = watts
            if refused and on_refusal is not None:
                notes.append(
                    f"{label}: {why}: "
                    f"the profile's fallback keeps the GPU clocks locked to {on_refusal[0]}-{on_refusal[1]} MHz"
                )
            elif on_refusal is not None:
                notes.append(
                    f"{label}: if the driver refuses the power limit (many laptop drivers do, even when NVML "
                    f"reports a range), apply locks the GPU clocks to {on_refusal[0]}-{on_refusal[1]} MHz instead "
                    "(the profile's fallback)"
                )
        else:
            lock = _fallback_lock(gpu, profile, label)
            if lock is not None:
                notes.append(
                    f"{label}: {why_not}; using the profile's fallback instead of {what}: "
                    f"GPU clocks locked to {lock[0]}-{lock[1]} MHz"
                )
            else:
                notes.append(f"{label}: {why_not}; the profile has no fallback, so the power limit is left alone")
    if lock is not None:
        settings["locked_clocks_mhz"] = lock
    elif host.locked_clocks_mhz.get(gpu_key(gpu)) and on_refusal is None:
        settings["locked_clocks_mhz"] = None  # gpuprov locked them for an earlier profile: unlock
    if section.persistence is not None:
        settings["persistence_mode"] = section.persistence
    return settings, on_refusal


def image_settings(profile: Profile) -> dict[str, Any]:
    """What the boot unit of an image applies to the GPUs it finds that match the profile (its GPU section)."""
    section = profile.gpu
    return {
        "match": {
            "gpu_names": list(profile.match.gpu_names),
            "compute_capabilities": list(profile.match.compute_capabilities),
        },
        "gpu": {
            "power_limit_w": section.power_limit_w,
            "power_limit_percent": section.power_limit_percent,
            "persistence": section.persistence,
            "fallback_locked_clocks_mhz": None
            if section.fallback_locked_clocks_mhz is None
            else list(section.fallback_locked_clocks_mhz),
        },
    }


def image_targets(
    settings: dict[str, Any], name: str, gpus: list[GpuInfo], host: HostState
) -> tuple[list[GpuSettingsTarget], list[str]]:
    """At boot: the settings of an image's boot file (:func:`image_settings`) for the GPUs found here.
    Returns the targets, and lines about the GPUs left alone and the fallbacks used."""
    try:
        match, gpu = settings["match"], settings["gpu"]
        lock = gpu.get("fallback_locked_clocks_mhz")
        section = GpuSection(
            gpu.get("power_limit_w"),
            gpu.get("power_limit_percent"),
            gpu.get("persistence"),
            None if lock is None else (int(lock[0]), int(lock[1])),
        )
        wanted = Match(tuple(match.get("gpu_names") or ()), tuple(match.get("compute_capabilities") or ()))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise PlanError(f"the image's GPU settings of profile {name} are not readable ({exc!r})") from None
    profile = Profile(name, "", "", (), wanted, (), False, {"gpu": section})
    targets, notes = [], []
    for g in gpus:
        if not wanted.matches(g.name, g.compute_capability):
            notes.append(f"GPU {g.index} ({g.name}) does not match profile {name}: left alone")
            continue
        values, on_refusal = gpu_settings_for(g, profile, host, notes)
        targets.append(GpuSettingsTarget(gpu_key(g), g.index, g.name, values, on_refusal))
    return targets, notes
