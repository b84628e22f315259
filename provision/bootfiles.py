"""The files and units gpuprov writes for the GPU settings themselves: the boot unit that re-applies them
(its settings file and its sandbox), the suspend modprobe file, and the driver's units it enables."""

from __future__ import annotations

from provision.plantypes import FileTarget, HostState
from provision.profiles.schema import Profile
from provision.render import render

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


def boot_unit_file(profile: Profile, python: str, binds: list[str]) -> FileTarget:
    """The boot unit: ``python -m provision reapply-gpu-settings`` in a sandbox that shows ``binds``
    (home directories the interpreter lives in) past ProtectHome=."""
    unit = render(
        "gpuprov-gpu-settings.service.j2",
        {
            "profile": profile.name,
            "settings_path": SETTINGS_FILE,
            "python": python,
            "wait_s": BOOT_WAIT_S,
            "restart_tries": BOOT_RESTART_TRIES,
            "restart_window_s": BOOT_RESTART_WINDOW_S,
            "hardening": {
                **BOOT_UNIT_HARDENING,
                "protect_home": "tmpfs" if binds else "yes",
                "bind_ro": binds,
            },
        },
    )
    return FileTarget(BOOT_UNIT_FILE, unit, "0644", "re-applies the GPU settings at boot")


def suspend_file(profile: Profile) -> FileTarget:
    """The modprobe file that makes the driver keep video memory across suspend (the profile's
    ``suspend.preserve_video_memory``): the same for apply and ``gpuprov render``."""
    text = render(
        "gpuprov-nvidia-preserve-vram.conf.j2", {"profile": profile.name, "temporary_file_path": SUSPEND_TEMP_PATH}
    )
    return FileTarget(MODPROBE_FILE, text, "0644", "takes effect after a reboot (or reloading the nvidia module)")


def unit_installed(host: HostState, unit: str) -> bool:
    state = host.units.get(unit)
    return state is not None and state.path is not None
