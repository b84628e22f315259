"""What applying a profile would change: a pure function of (snapshot, profile, host state).

:func:`make_plan` is the one decision procedure. ``gpuprov plan`` prints it; ``gpuprov apply`` runs
the Ansible playbook whose first task (the ``gpuprov_plan`` module) calls the same function on the
host and hands its desired state to the changing modules; ``gpuprov revert`` plans back to the
recorded previous state with :func:`make_revert_plan`.

Refusals — no driver, a profile that fits none of the GPUs, a power limit outside a GPU's NVML
constraints — are raised as :class:`PlanError` before anything is changed.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import replace
from typing import Any

from provision import llama_build
from provision.gpudecisions import (
    current_settings,
    gpu_key,
    gpu_settings_for,
    image_settings,
    power_limit_known_refused,
    same,
)
from provision.monitor.section import UNIT as EXPORTER_UNIT
from provision.monitor.section import UNIT_FILE as EXPORTER_UNIT_FILE
from provision.plantypes import (
    Change,
    Desired,
    FileTarget,
    GpuSettingsTarget,
    HostState,
    PlanError,
    TuningPlan,
    UnitTarget,
)
from provision.profiles.schema import SECTIONS, Profile
from provision.render import render
from provision.roottree import record_type
from provision.serving import units as serving_units
from provision.serving.keyfiles import KEY_FILES
from provision.serving.sandbox import gpuprov_sandbox
from provision.snapshot import Snapshot

SETTINGS_FILE = "/etc/gpuprov/gpu-settings.json"
#: the boot unit's sandbox (templates/gpuprov-serving-hardening.inc.j2): root with only CAP_SYS_ADMIN,
#: the capability the NVIDIA driver checks for NVML's setters; no network; writes only gpuprov's state
BOOT_UNIT_HARDENING = {
    "capabilities": "CAP_SYS_ADMIN",
    "private_network": True,
    # hidden ("yes"), or a tmpfs with the interpreter bound in where it lives in a home directory (desired_state)
    "protect_home": "yes",
    "bind_ro": [],
    "bind_rw": [],
    "read_write": ["-/var/lib/gpuprov"],  # "-": it may not exist yet
}
BOOT_UNIT = "gpuprov-gpu-settings.service"
BOOT_UNIT_FILE = f"/etc/systemd/system/{BOOT_UNIT}"
MODPROBE_FILE = "/etc/modprobe.d/gpuprov-nvidia-preserve-vram.conf"
PERSISTENCED = "nvidia-persistenced.service"
#: the driver's own suspend/resume helpers (shipped with the driver, in /usr/lib/systemd/system)
SLEEP_UNITS = ("nvidia-suspend.service", "nvidia-resume.service", "nvidia-hibernate.service")
#: every file and unit a profile can make gpuprov touch: what the host state reader looks at
MANAGED_FILES = (SETTINGS_FILE, BOOT_UNIT_FILE, MODPROBE_FILE, *serving_units.MANAGED_FILES, EXPORTER_UNIT_FILE)
MANAGED_UNITS = (BOOT_UNIT, PERSISTENCED, *SLEEP_UNITS, *serving_units.MANAGED_UNITS, EXPORTER_UNIT)
#: boot unit: how long it waits for the GPU, and how often systemd retries it
BOOT_WAIT_S = 120
BOOT_RESTART_TRIES = 5
BOOT_RESTART_WINDOW_S = 900
#: NVreg_TemporaryFilePath: where the driver saves video memory on suspend (the README's example;
#: the default /tmp is often a small tmpfs)
SUSPEND_TEMP_PATH = "/var/tmp"
IMAGE_NOTE = (
    "image tree: GPU settings are applied by the boot unit at first boot (no GPU of this machine is read or changed)"
)


# -- desired state from a profile ---------------------------------------------------------------------


def desired_state(snapshot: Snapshot, profile: Profile, host: HostState, *, force: bool = False) -> Desired:
    status = snapshot.driver.nvml
    if not status.ok and not host.image:
        raise PlanError(
            f"no usable NVIDIA driver ({status.message or status.kind}): install the distribution's "
            "driver packages first (gpuprov doctor says which); gpuprov never installs drivers"
        )
    desired = Desired(profile.name)
    matching = [g for g in snapshot.gpus if profile.match.matches(g.name, g.compute_capability)]
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

    by_unit = profile.gpu.persistence is True and host.systemd_running and _exists(host, PERSISTENCED)
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

    if profile.gpu.persistence is True and _exists(host, PERSISTENCED):
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
            FileTarget(SETTINGS_FILE, json.dumps(config, indent=2, sort_keys=True) + "\n", "0644",
                       "what the boot unit re-applies")
        )  # fmt: skip
        unit = render(
            "gpuprov-gpu-settings.service.j2",
            {
                "profile": profile.name,
                "settings_path": SETTINGS_FILE,
                "python": host.python,
                "wait_s": BOOT_WAIT_S,
                "restart_tries": BOOT_RESTART_TRIES,
                "restart_window_s": BOOT_RESTART_WINDOW_S,
                "hardening": {
                    **BOOT_UNIT_HARDENING,
                    "protect_home": "tmpfs" if boot_binds else "yes",
                    "bind_ro": boot_binds,
                },
            },
        )
        desired.files.append(FileTarget(BOOT_UNIT_FILE, unit, "0644", "re-applies the GPU settings at boot"))
        desired.units.append(
            UnitTarget(BOOT_UNIT, True, note="runs at boot: power limits and locked clocks do not survive a reboot")
        )
    if profile.suspend.preserve_video_memory:
        desired.files.append(suspend_file(profile))
        for name in SLEEP_UNITS:
            if _exists(host, name) or not host.known:
                note = "the driver's suspend/resume helper" + ("" if host.known else ", where installed")
                desired.units.append(UnitTarget(name, True, note=note))
            else:
                desired.notes.append(f"{name} is not installed here (it ships with the NVIDIA driver packages)")
    for section_type in SECTIONS.values():  # the capability sections (serving, llama_cpp) plan themselves
        if section_type.plan is not None:
            section_type.plan(desired, snapshot, profile, host)
    if not host.systemd_running:
        desired.notes.append(
            "systemd is not running as PID 1 here: units are written and enabled for the next boot, nothing is started"
        )
    return desired


def suspend_file(profile: Profile) -> FileTarget:
    """The modprobe file that makes the driver keep video memory across suspend (the profile's
    ``suspend.preserve_video_memory``): the same for apply and ``gpuprov render``."""
    text = render(
        "gpuprov-nvidia-preserve-vram.conf.j2", {"profile": profile.name, "temporary_file_path": SUSPEND_TEMP_PATH}
    )
    return FileTarget(MODPROBE_FILE, text, "0644", "takes effect after a reboot (or reloading the nvidia module)")


def _exists(host: HostState, unit: str) -> bool:
    state = host.units.get(unit)
    return state is not None and state.path is not None


# -- desired → changes ------------------------------------------------------------------------------


def _unified(path: str, old: str | None, new: str | None) -> str:
    a = (old or "").splitlines(keepends=True)
    b = (new or "").splitlines(keepends=True)
    return "".join(difflib.unified_diff(a, b, f"{path} (current)", f"{path} (desired)"))


def _elsewhere(note: str, host: HostState) -> str:
    """A row's note for a snapshot of another host: its current state is unknown, what it says still holds."""
    if host.known:
        return note
    return f"not this host: {note}" if note else "not this host"


def changes_for(snapshot: Snapshot, desired: Desired, host: HostState) -> list[Change]:
    out: list[Change] = []
    gpus = {gpu_key(g): g for g in snapshot.gpus}
    for target in desired.gpus:
        gpu = gpus.get(target.key)
        if gpu is None:
            out.append(Change(f"gpu:{target.key}", "present", "absent", "present", "skip",
                              "this GPU is not on the host any more"))  # fmt: skip
            continue
        current = current_settings(gpu, host.locked_clocks_mhz)
        for setting, value in target.settings.items():
            cur = current.get(setting)
            lock = target.fallback_locked_clocks_mhz
            refused = power_limit_known_refused(gpu, host.power_limit_refused)
            if setting == "power_limit_w" and lock is not None and refused:
                have = current.get("locked_clocks_mhz")
                out.append(Change(f"gpu{gpu.index}", "locked_clocks_mhz", have, lock,
                                  "ok" if same("locked_clocks_mhz", have, lock) else "change",
                                  "the profile's fallback: the driver refuses the power limit"))  # fmt: skip
                continue
            note = ""
            if setting == "locked_clocks_mhz" and not host.known:
                note = "NVML cannot read locked clocks back: from gpuprov's record, not available here"
            if setting == "persistence_mode" and value and host.systemd_running and _exists(host, PERSISTENCED):
                note = f"by {PERSISTENCED}"
            action = "ok" if same(setting, cur, value) else "change"
            if value is None and setting != "locked_clocks_mhz":  # a revert of a value NVML could not read
                action, note = "skip", "unknown before gpuprov's change (NVML could not read it): left as it is"
            out.append(Change(f"gpu{gpu.index}", setting, cur, value, action, note))
    for f in [*desired.files, *desired.serving_files]:
        state = host.files.get(f.path) if host.known else None
        if state is None or f.restore:  # a secret put back from the record: the plan holds no content to compare
            want = "as recorded (a secret)" if f.restore else _describe(f.content)
            out.append(Change(f.path, "content", "unknown", want, "change" if host.known else "skip",
                              _elsewhere(f.note, host)))  # fmt: skip
            continue
        if f.link_target is not None or state.link_target is not None:
            have, want = _kind(state.content, state.link_target), _kind(f.content, f.link_target)
            if f.link_target is not None or f.content is not None:  # a removal's row is the content's
                out.append(Change(f.path, "type", have, want, "ok" if have == want else "change", f.note))
        if f.link_target is None:
            action = "ok" if state.content == f.content and state.link_target is None else "change"
            out.append(
                Change(f.path, "content", _describe(state.content), _describe(f.content), action, f.note,
                       _unified(f.path, state.content, f.content) if action == "change" and not f.secret else "")
            )  # fmt: skip
        if f.content is not None and state.content is not None and state.mode != f.mode:
            out.append(Change(f.path, "mode", state.mode, f.mode, "change"))
        if (f.content is not None or f.link_target is not None) and (f.uid, f.gid) != (None, None):
            have_owner, want_owner = f"{state.uid}:{state.gid}", f"{f.uid}:{f.gid}"
            if have_owner != want_owner:
                out.append(Change(f.path, "owner", have_owner, want_owner, "change"))
    if desired.llama_cpp:
        out.append(_llama_cpp_change(desired.llama_cpp, host))
    for u in [*desired.units, *desired.serving_units]:
        state = host.units.get(u.name)
        if state is None or not host.known:
            out.append(Change(u.name, "enabled", "unknown", u.enabled, "skip" if not host.known else "change",
                              _elsewhere(u.note, host)))  # fmt: skip
            continue
        written = any(
            f.path.endswith("/" + u.name) and f.content is not None for f in [*desired.files, *desired.serving_files]
        )
        if state.path is None and not written and u.enabled:
            out.append(Change(u.name, "enabled", "not installed", True, "skip", "unit file not installed"))
            continue
        action = "ok" if state.enabled == u.enabled else "change"
        out.append(Change(u.name, "enabled", state.enabled, u.enabled, action, u.note))
    return out


def _llama_cpp_change(build: dict[str, Any], host: HostState) -> Change:
    target = "CPU build" if build["cpu"] else "CUDA " + ", ".join("sm_" + a for a in build["archs"])
    subject = f"llama-cpp-python ({build['python']})"
    if not host.known:
        return Change(subject, "build", "unknown", target, "skip", "not this host")
    plan = llama_build.BuildPlan(**{k: v for k, v in build.items() if k != "shell"})
    same_build, why = llama_build.build_matches(host.llama_cpp_installed, plan)
    return Change(subject, "build", why if not same_build else target, target, "ok" if same_build else "change",
                  "" if same_build else f"compiles with: {plan.env['CMAKE_ARGS']}")  # fmt: skip


def _kind(content: str | None, link_target: str | None) -> str:
    if link_target is not None:
        return f"symlink to {link_target}"
    return "absent" if content is None else "file"


def _describe(content: str | None) -> str:
    if content is None:
        return "absent"
    lines = content.count("\n")
    return f"{lines} line{'s' if lines != 1 else ''}"


def make_plan(snapshot: Snapshot, profile: Profile, host: HostState, *, force: bool = False) -> TuningPlan:
    desired = desired_state(snapshot, profile, host, force=force)
    return TuningPlan(desired, changes_for(snapshot, desired, host))


# -- revert -------------------------------------------------------------------------------------------


def revert_desired(previous: dict[str, dict[str, Any]]) -> Desired:
    """The state recorded before gpuprov's first change (``applystate.load_previous``)."""
    desired = Desired("(revert)")
    for key, item in sorted(previous.get("gpus", {}).items()):
        desired.gpus.append(GpuSettingsTarget(key, int(item.get("index", 0)), str(item.get("name", "")),
                                      dict(item.get("settings") or {})))  # fmt: skip
    for name, item in sorted(previous.get("units", {}).items()):
        enabled = bool(item.get("enabled"))
        # "now": restore whether it ran too — stop it if it was not running before, start it if it was
        # (unknown, e.g. recorded offline: leave it as it is)
        now = item.get("active") is enabled
        desired.units.append(UnitTarget(name, enabled, now=now))
    # a directory gpuprov created for one file (/etc/gpuprov) may hold others' (/etc/gpuprov/serving/...):
    # every removal tries every such directory, deepest first, and only empty ones go
    # type, link target, owner and group are in the records made since revert became exact; older records
    # have content and mode only, and revert as before (a regular file, or none)
    files = previous.get("files", {})
    created = sorted(
        {str(d) for item in files.values() if record_type(item) == "absent" for d in item.get("created_dirs") or ()},
        key=lambda d: (-d.count("/"), d),
    )
    for path, item in sorted(files.items()):
        kind = record_type(item)
        dirs = tuple(created) if kind == "absent" else ()
        link = str(item.get("link_target")) if kind == "symlink" else None
        uid, gid = (item.get("uid"), item.get("gid")) if kind != "absent" else (None, None)
        desired.files.append(
            FileTarget(path, item.get("content") if kind == "file" else None, str(item.get("mode") or "0644"), "",
                       dirs, link, uid if isinstance(uid, int) else None, gid if isinstance(gid, int) else None)
        )  # fmt: skip
        # a key file recorded by a gpuprov that did not mark secrets yet is one all the same
        secret = bool(item.get("secret")) or path in KEY_FILES
        if secret and kind != "absent":  # restored by gpuprov_file from the record itself
            desired.files[-1] = replace(desired.files[-1], content=None, link_target=None, secret=True, restore=True)
        elif secret:
            desired.files[-1] = replace(desired.files[-1], secret=True)
    if not (desired.gpus or desired.units or desired.files):
        desired.notes.append("nothing recorded: gpuprov has not changed this host")
    return desired


def make_revert_plan(snapshot: Snapshot, previous: dict[str, dict[str, Any]], host: HostState) -> TuningPlan:
    desired = revert_desired(previous)
    if host.image and desired.gpus:  # recorded on this machine's GPUs by an apply to "/": not the image's to change
        desired.notes.append(f"{IMAGE_NOTE}: the GPU settings gpuprov recorded are left alone")
        desired.gpus = []
    elif host.image:
        desired.notes.append(IMAGE_NOTE)
    return TuningPlan(desired, changes_for(snapshot, desired, host))
