"""systemd unit files on a host or an image tree: where a unit lives, whether it is enabled, and
enabling it without a running systemd.

``systemctl enable`` on a host whose PID 1 is not systemd (containers, chroots, image builds) does
what :func:`enable_offline` does: read the unit's ``[Install]`` section and create the symlinks in
``/etc/systemd/system/<target>.wants/`` (``systemd.unit(5)``, "[Install] Section Options";
``systemctl(1)``, ``--root``). Nothing is started. With a running systemd, gpuprov calls
``systemctl`` itself (:func:`systemctl`).
"""

from __future__ import annotations

import configparser
import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from provision.errors import GpuprovError

#: the unit search path for system units, most specific first (systemd.unit(5), "Unit File Load Path")
UNIT_DIRS = (
    "etc/systemd/system",
    "run/systemd/system",
    "usr/local/lib/systemd/system",
    "usr/lib/systemd/system",
    "lib/systemd/system",
)
ADMIN_DIR = "etc/systemd/system"


class SystemdError(GpuprovError):
    """A unit that cannot be enabled or read."""


@dataclass(frozen=True)
class UnitState:
    name: str
    #: the unit file, as a path inside ``root`` ("/lib/systemd/system/nvidia-suspend.service"), None: absent
    path: str | None
    enabled: bool


def running_systemd(root: Path = Path("/")) -> bool:
    """Is systemd PID 1 of *this* host (sd_booted(3): /run/systemd/system exists)? False for image trees."""
    return root.resolve() == Path("/") and Path("/run/systemd/system").is_dir()


def _in_root(root: Path, path: str, *, follow_last: bool = True) -> Path:
    """``path`` inside the tree at ``root``, links followed as inside ``chroot root`` (provision.roottree)."""
    from provision.roottree import is_image, resolve

    return resolve(root, path, follow_last=follow_last) if is_image(root) else root / path.lstrip("/")


def find_unit(name: str, *, root: Path = Path("/")) -> str | None:
    for d in UNIT_DIRS:
        p = _in_root(root, f"/{d}/{name}", follow_last=False)
        if p.is_file() or p.is_symlink():
            return "/" + d + "/" + name
    return None


def install_targets(unit_text: str) -> list[tuple[str, str]]:
    """``[Install]`` WantedBy=/RequiredBy=/UpheldBy= → [(".wants", "multi-user.target"), ...]."""
    parser = configparser.RawConfigParser(strict=False, delimiters=("=",), interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(unit_text)
    except configparser.Error as exc:
        raise SystemdError(f"cannot read the unit file: {exc}") from None
    out: list[tuple[str, str]] = []
    if parser.has_section("Install"):
        for key, suffix in (("WantedBy", ".wants"), ("RequiredBy", ".requires"), ("UpheldBy", ".upholds")):
            value = parser.get("Install", key, fallback="")
            out.extend((suffix, target) for target in value.split())
    return out


def _links(name: str, unit_text: str, root: Path) -> list[Path]:
    return [
        _in_root(root, f"/{ADMIN_DIR}/{target}{suffix}/{name}", follow_last=False)
        for suffix, target in install_targets(unit_text)
    ]


def unit_state(name: str, *, root: Path = Path("/")) -> UnitState:
    path = find_unit(name, root=root)
    if path is None:
        return UnitState(name, None, False)
    try:
        text = _in_root(root, path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return UnitState(name, path, False)
    links = _links(name, text, root)
    enabled = bool(links) and all(p.is_symlink() or p.exists() for p in links)
    return UnitState(name, path, enabled)


def enable_offline(name: str, *, root: Path = Path("/")) -> list[str]:
    """Create the ``[Install]`` symlinks (what ``systemctl --root=ROOT enable`` does). Returns the links made."""
    state = unit_state(name, root=root)
    if state.path is None:
        raise SystemdError(f"{name}: no such unit file under {root}")
    text = _in_root(root, state.path).read_text(encoding="utf-8", errors="replace")
    links = _links(name, text, root)
    if not links:
        raise SystemdError(f"{name}: has no [Install] WantedBy=/RequiredBy=, so it cannot be enabled")
    made = []
    for link in links:
        if link.is_symlink() or link.exists():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(state.path, link)
        made.append(str(link))
    return made


def disable_offline(name: str, *, root: Path = Path("/")) -> list[str]:
    """Remove every ``*.wants``/``*.requires``/``*.upholds`` link to ``name`` under /etc/systemd/system."""
    removed: list[str] = []
    admin = _in_root(root, "/" + ADMIN_DIR)
    if not admin.is_dir():
        return removed
    for d in sorted(admin.iterdir()):
        if d.is_dir() and d.suffix in (".wants", ".requires", ".upholds"):
            link = _in_root(root, f"/{ADMIN_DIR}/{d.name}/{name}", follow_last=False)  # d may be a link
            if link.is_symlink():
                link.unlink()
                removed.append(str(link))
                with contextlib.suppress(OSError):
                    link.parent.rmdir()  # only when empty: enable made it, or nothing else wants the target any more
    return removed


def systemctl(*args: str) -> str:
    """Run systemctl on this host's running systemd; a failure is a SystemdError with its message."""
    exe = shutil.which("systemctl")
    if exe is None:
        raise SystemdError("systemctl not found, but systemd is running: install the systemd package")
    proc = subprocess.run([exe, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise SystemdError(f"systemctl {' '.join(args)} failed: {msg[-1] if msg else proc.returncode}")
    return proc.stdout


def is_active(name: str) -> bool:
    """Is the unit running now (on this host's running systemd)?"""
    exe = shutil.which("systemctl")
    if exe is None:
        return False
    proc = subprocess.run([exe, "is-active", "--quiet", name], capture_output=True, check=False)
    return proc.returncode == 0
