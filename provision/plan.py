"""What applying a profile would change: a pure function of (snapshot, profile, host state).

:func:`make_plan` is the one decision procedure. ``gpuprov plan`` prints it; ``gpuprov apply`` runs
the Ansible playbook whose first task (the ``gpuprov_plan`` module) calls the same function on the
host and hands its desired state to the changing modules; ``gpuprov revert`` plans back to the
recorded previous state with :func:`make_revert_plan`.

Refusals — no driver, a profile that fits none of the GPUs, a power limit outside a GPU's NVML
constraints — are raised as :class:`PlanError` before anything is changed.

The plan reads nothing: the host state it takes was gathered first (:mod:`provision.hoststate`). Its
parts: types (:mod:`provision.plantypes`), GPU decisions (:mod:`provision.gpudecisions`), the boot and
suspend files (:mod:`provision.bootfiles`), the rows that differ (:mod:`provision.plandiff`), the
revert (:mod:`provision.planrevert`); each profile section beyond ``gpu`` and ``suspend`` plans itself
through its ``register_section`` hook.
"""

from __future__ import annotations

import json
from typing import Any

from provision.bootfiles import (
    BOOT_UNIT,
    BOOT_UNIT_FILE,
    IMAGE_NOTE,
    MODPROBE_FILE,
    PERSISTENCED,
    SETTINGS_FILE,
    SLEEP_UNITS,
    SUSPEND_TEMP_PATH,
    boot_unit_file,
    suspend_file,
    unit_installed,
)
from provision.gpudecisions import (
    gpu_key,
    gpu_settings_for,
    image_settings,
    same,
)
from provision.monitor.section import UNIT as EXPORTER_UNIT
from provision.monitor.section import UNIT_FILE as EXPORTER_UNIT_FILE
from provision.plandiff import changes_for
from provision.planrevert import make_revert_plan, revert_desired
from provision.plantypes import (
    Desired,
    FileTarget,
    GpuSettingsTarget,
    HostState,
    PlanError,
    TuningPlan,
    UnitTarget,
)
from provision.profiles.schema import Profile, plan_order
from provision.serving import units as serving_units
from provision.serving.sandbox import gpuprov_sandbox
from provision.snapshot import Snapshot

__all__ = [
    "BOOT_UNIT",
    "BOOT_UNIT_FILE",
    "IMAGE_NOTE",
    "MANAGED_FILES",
    "MANAGED_UNITS",
    "MODPROBE_FILE",
    "SETTINGS_FILE",
    "SUSPEND_TEMP_PATH",
    "changes_for",
    "desired_state",
    "make_plan",
    "make_revert_plan",
    "revert_desired",
    "suspend_file",
]

#: every file and unit a profile can make gpuprov touch: what the host state reader looks at
MANAGED_FILES = (SETTINGS_FILE, BOOT_UNIT_FILE, MODPROBE_FILE, *serving_units.MANAGED_FILES, EXPORTER_UNIT_FILE)
MANAGED_UNITS = (BOOT_UNIT, PERSISTENCED, *SLEEP_UNITS, *serving_units.MANAGED_UNITS, EXPORTER_UNIT)


# -- desired state from a profile ---------------------------------------------------------------------


def desired_state(snapshot: Snapshot, profile: Profile, host: HostState, *, force: bool = False) -> Desired:
    status = snapshot.driver.nvml
    if not status.ok and not host.image:
        raise PlanError(
            f"no usable NVIDIA driver ({status.message or status.kind}): install the distribution's "
            "driver packages first (gpuprov doctor says which); gpuprov never installs drivers"
        )
    desired = Desired(profile.name)
    matching = profile.match.matching(snapshot.gpus)
    if host.image:  # the GPUs are the booting machine's: its boot unit matches them against the profile
        desired.notes.append(IMAGE_NOTE)
    elif not matching:
        found = ", ".join(f"{g.name} (compute capability {g.compute_capability or '?'})" for g in snapshot.gpus)
        if not force:
            raise PlanError(
                f"profile {profile.name} is for {profile.match.describe()}; this host has {found or 'no GPU'}: "
                "pick a profile that matches (gpuprov profiles) or use --force"
            )
        desired.notes.append(f"--force: profile {profile.name} ({profile.match.describe()}) applied to {found}")
        matching = list(snapshot.gpus)
    for gpu in snapshot.gpus:
        if gpu not in matching:
            desired.notes.append(f"GPU {gpu.index} ({gpu.name}) does not match profile {profile.name}: left alone")

    by_unit = profile.gpu.persistence is True and host.systemd_running and unit_installed(host, PERSISTENCED)
    boot_settings = []
    for gpu in matching:
        settings, on_refusal = gpu_settings_for(gpu, profile, host, desired.notes)
        target = GpuSettingsTarget(gpu_key(gpu), gpu.index, gpu.name, settings, on_refusal)
        desired.gpus.append(target)
        # what the boot unit re-applies: not an unlock, not persistence the daemon keeps
        boot = {
            k: v
            for k, v in settings.items()
            if not (k == "persistence_mode" and by_unit)
            and not (k == "locked_clocks_mhz" and v is None)
            and not (k == "power_limit_w" and same(k, gpu.power_default_limit_w, v))  # a reboot restores it
        }
        if boot:
            boot_settings.append(
                GpuSettingsTarget(
                    target.key, target.index, target.name, boot, on_refusal if "power_limit_w" in boot else None
                )
            )

    if profile.gpu.persistence is True and unit_installed(host, PERSISTENCED):
        how = "started now" if host.systemd_running else "enabled for the next boot (systemd is not running here)"
        desired.units.append(
            UnitTarget(PERSISTENCED, True, now=host.systemd_running, note=f"the driver's persistence daemon, {how}")
        )
    image_boot = host.image and not profile.gpu.empty
    if boot_settings or image_boot:
        # the interpreter may live in a home directory (a venv under /root): bound read-only past ProtectHome=
        if host.sandbox is None:
            raise PlanError(f"profile {profile.name}: the host was not gathered for the boot unit's sandbox")
        boot_binds, boot_refusals = gpuprov_sandbox(BOOT_UNIT, host.python, host.sandbox)
        for line in boot_refusals:
            desired.refusals.append(line)
            desired.notes.append(f"WARNING: {line} (apply refuses this)")
        config: dict[str, Any] = {"profile": profile.name, "gpus": [t.to_dict() for t in boot_settings]}
        if image_boot:
            config["image"] = image_settings(profile)
        desired.files.append(
            FileTarget(
                SETTINGS_FILE,
                json.dumps(config, indent=2, sort_keys=True) + "\n",
                "0644",
                "what the boot unit re-applies",
            )
        )
        unit_file = boot_unit_file(profile, host.python, boot_binds)
        desired.files.append(unit_file)
        desired.units.append(
            UnitTarget(BOOT_UNIT, True, note="runs at boot: power limits and locked clocks do not survive a reboot")
        )
    if profile.suspend.preserve_video_memory:
        desired.files.append(suspend_file(profile))
        for name in SLEEP_UNITS:
            if unit_installed(host, name) or not host.known:
                note = "the driver's suspend/resume helper" + ("" if host.known else ", where installed")
                desired.units.append(UnitTarget(name, True, note=note))
            else:
                desired.notes.append(f"{name} is not installed here (it ships with the NVIDIA driver packages)")
    for section_type in plan_order():  # the capability sections (serving, llama_cpp) plan themselves
        if section_type.plan is not None:
            section_type.plan(desired, snapshot, profile, host)
    if not host.systemd_running:
        desired.notes.append(
            "systemd is not running as PID 1 here: units are written and enabled for the next boot, nothing is started"
        )
    return desired


def make_plan(snapshot: Snapshot, profile: Profile, host: HostState, *, force: bool = False) -> TuningPlan:
    desired = desired_state(snapshot, profile, host, force=force)
    return TuningPlan(desired, changes_for(snapshot, desired, host))
