"""Facts about the host read from files (``/proc``, ``/sys``, ``/etc``): no subprocess, no NVML.

Every function takes ``root`` so tests can point it at a recorded tree.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
from pathlib import Path

from provision.snapshot import DriverInfo, HostInfo

#: SMBIOS chassis types that are portable machines (DMTF DSP0134 7.4.1)
_PORTABLE_CHASSIS = {8, 9, 10, 11, 14, 30, 31, 32}
_GRAPHICAL = ("Xorg", "Xwayland", "gnome-shell", "kwin_wayland", "sway", "weston", "gdm", "sddm", "lightdm")

_NVRM = re.compile(r"NVRM version:\s*(?P<desc>.*?Kernel Module(?: for \S+)?)\s+(?P<ver>\d+\.\d+(?:\.\d+)?)")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def parse_nvrm_version(text: str) -> tuple[str | None, str | None]:
    """``/proc/driver/nvidia/version`` → (version, "open" | "proprietary")."""
    m = _NVRM.search(text)
    if not m:
        return None, None
    flavor = "open" if "Open Kernel Module" in m.group("desc") else "proprietary"
    return m.group("ver"), flavor


def read_driver_files(*, root: Path = Path("/")) -> DriverInfo:
    info = DriverInfo()
    text = _read(root / "proc/driver/nvidia/version")
    if text:
        info.kernel_module_version, info.kernel_module_flavor = parse_nvrm_version(text)
    info.nvml_library_version = nvml_library_version(root=root)
    return info


_LIB_DIRS = (
    "usr/lib/x86_64-linux-gnu",
    "usr/lib/aarch64-linux-gnu",
    "usr/lib64",
    "usr/lib",
    "lib/x86_64-linux-gnu",
    "usr/lib/wsl/lib",
)


def nvml_library_version(*, root: Path = Path("/")) -> str | None:
    """The version in the real file name of libnvidia-ml.so (libnvidia-ml.so.580.159.04)."""
    for d in _LIB_DIRS:
        base = root / d
        try:
            names = [n for n in os.listdir(base) if n.startswith("libnvidia-ml.so.")]
        except OSError:
            continue
        for name in sorted(names, key=len, reverse=True):
            ver = name.removeprefix("libnvidia-ml.so.")
            if re.fullmatch(r"\d+\.\d+(\.\d+)?", ver):
                return ver
    return None


def process_running(name: str, *, root: Path = Path("/")) -> bool:
    """Is a process whose comm (first 15 characters of the name) matches running?"""
    return bool(running_processes({name}, root=root))


def running_processes(names: set[str], *, root: Path = Path("/")) -> set[str]:
    wanted = {n[:15]: n for n in names}
    found: set[str] = set()
    proc = root / "proc"
    try:
        entries = os.listdir(proc)
    except OSError:
        return found
    for pid in entries:
        if not pid.isdigit():
            continue
        comm = _read(proc / pid / "comm")
        if comm is None:
            continue
        comm = comm.strip()
        if comm in wanted:
            found.add(wanted[comm])
            if len(found) == len(wanted):
                break
    return found


def read_host(*, root: Path = Path("/")) -> HostInfo:
    host = HostInfo()
    host.hostname = socket.gethostname() if root == Path("/") else (_read(root / "etc/hostname") or "").strip()
    host.kernel = (_read(root / "proc/sys/kernel/osrelease") or "").strip() or None
    host.distro = _os_release(root)
    host.cpu_model, host.cpu_cores = _cpu(root)
    host.ram_mib = _ram_mib(root)
    host.is_root = os.geteuid() == 0 if root == Path("/") else False
    comm1 = (_read(root / "proc/1/comm") or "").strip()
    host.systemd_pid1 = comm1 == "systemd" and (root / "run/systemd/system").is_dir()
    host.graphical_session = bool(running_processes(set(_GRAPHICAL), root=root)) or bool(
        root == Path("/") and (os.environ.get("WAYLAND_DISPLAY") or os.environ.get("DISPLAY"))
    )
    chassis = (_read(root / "sys/class/dmi/id/chassis_type") or "").strip()
    host.laptop = int(chassis) in _PORTABLE_CHASSIS if chassis.isdigit() else None
    return host


def _os_release(root: Path) -> str | None:
    text = _read(root / "etc/os-release") or _read(root / "usr/lib/os-release")
    if not text:
        return None
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    name = fields.get("PRETTY_NAME") or fields.get("NAME")
    return name.strip().strip('"') if name else None


def _cpu(root: Path) -> tuple[str | None, int | None]:
    text = _read(root / "proc/cpuinfo") or ""
    model = None
    count = 0
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "processor":
            count += 1
        elif key == "model name" and model is None:
            model = value.strip()
    if root == Path("/"):
        with contextlib.suppress(OSError):
            count = len(os.sched_getaffinity(0))
    return model, count or None


def _ram_mib(root: Path) -> int | None:
    for line in (_read(root / "proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) // 1024
    return None
