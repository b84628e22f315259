"""What gpuprov remembers on a host, under ``/var/lib/gpuprov/`` (``$GPUPROV_STATE_DIR`` overrides):

- ``previous.json``: the state of every item (GPU settings, file, unit) as it was *before gpuprov
  first changed it*. An item is recorded once, just before its first change, and kept across later
  applies, so ``gpuprov revert`` always goes back to the host as it was before gpuprov.
- ``apply.lock``: held (``flock``, exclusive) by the one apply or revert running, with its pid inside;
  a second one waits :data:`LOCK_WAIT_S` seconds, then fails with "another gpuprov apply is running".
- ``applied.json``: what gpuprov set that NVML cannot read back — locked GPU clocks — with the
  boot it was set in (a reboot resets them, unless the boot unit re-applied them); and the GPUs whose
  driver refused a power-limit change (NOT_SUPPORTED, as on many laptops), so plans use the fallback.

``previous.json`` can hold the content of files gpuprov replaced: it is root's alone (0600). The other
files say nothing secret and are world-readable (0644, directory 0755), so ``gpuprov plan`` and
``apply --check`` work as a user on a host gpuprov already tuned.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from provision.errors import GpuprovError

STATE_DIR_ENV = "GPUPROV_STATE_DIR"
SECTIONS = ("gpus", "files", "units")
LOCK_FILE = "apply.lock"
#: how long a second apply/revert waits for the first one before it gives up
LOCK_WAIT_S = 5.0


class StateError(GpuprovError):
    """The state directory cannot be read or written."""


def state_dir(root: Path = Path("/")) -> Path:
    env = os.environ.get(STATE_DIR_ENV)
    if env:
        return Path(env)
    from provision import roottree

    # in an image tree, a link (var/lib -> /var/lib) means the image's directory, never this machine's
    return roottree.resolve(root, "/var/lib/gpuprov") if roottree.is_image(root) else root / "var/lib/gpuprov"


@contextlib.contextmanager
def exclusive_lock(directory: Path, *, wait_s: float = LOCK_WAIT_S, required: bool = True) -> Iterator[None]:
    """Hold gpuprov's apply lock in ``directory`` (one apply, revert or boot-time re-apply at a time).

    Waits up to ``wait_s`` seconds for another holder, then raises :class:`StateError` naming its pid.
    The lock goes with the process (``flock``): a holder that was killed leaves no stale lock.
    ``required=False``: where the lock file cannot be made (a read-only state directory, as in the boot
    unit's sandbox when the directory is missing), go on without it."""
    path = directory / LOCK_FILE
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o755)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        if not required:
            yield
            return
        raise StateError(f"cannot take gpuprov's apply lock {path}: {exc.strerror or exc}") from None
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StateError(
                        f"another gpuprov apply is running (pid {_lock_pid(fd)}): wait for it to finish "
                        f"(its lock: {path}), then run this again"
                    ) from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # the file stays (a waiter may have it open); an empty one names no holder
    finally:
        os.close(fd)


def _lock_pid(fd: int) -> str:
    text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    return text if text.isdigit() else "unknown"


def lock_holder(directory: Path) -> int | None:
    """The pid holding gpuprov's apply lock in ``directory`` (None: nobody; 0: a holder whose pid is unknown)."""
    try:
        fd = os.open(directory / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _lock_pid(fd)
            return int(pid) if pid.isdigit() else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return ""


#: file name → mode: previous.json may hold replaced files' content
_PRIVATE = {"previous.json"}


#: what to do about a state file gpuprov cannot use
_MOVE_AWAY = (
    "restore it from a backup, or move it away (gpuprov then forgets what it recorded: revert can no longer "
    "restore those items)"
)


def _read(path: Path, *, strict: bool = False) -> dict[str, Any]:
    """A state file's object ({} when absent). ``strict``: anything but an object is an error, not {}."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except PermissionError:
        raise StateError(
            f"{path}: only root can read gpuprov's state there: run this with sudo"
            + (" (gpuprov revert reads what it recorded before its first change)" if path.name in _PRIVATE else "")
        ) from None
    except json.JSONDecodeError as exc:
        raise StateError(f"{path}: gpuprov's state is not valid JSON (line {exc.lineno}): {_MOVE_AWAY}") from None
    except (ValueError, RecursionError):  # not UTF-8, a 5000-digit number, nested 100000 deep
        raise StateError(f"{path}: gpuprov's state is not JSON that gpuprov wrote: {_MOVE_AWAY}") from None
    except OSError as exc:
        raise StateError(f"{path}: cannot read gpuprov's state ({exc.strerror or exc})") from None
    if strict and not isinstance(data, dict):
        raise StateError(f"{path}: gpuprov's state is not a JSON object: {_MOVE_AWAY}")
    return data if isinstance(data, dict) else {}


def _read_previous(path: Path) -> dict[str, Any]:
    """previous.json, checked to be in the form gpuprov writes: {section: {item: {...}}}."""
    data = _read(path, strict=True)
    for section in SECTIONS:
        items = data.get(section)
        if items is None:
            continue
        bad = None if isinstance(items, dict) else section
        bad = bad or next((f"{section}.{key}" for key, item in items.items() if not isinstance(item, dict)), None)
        if bad is not None:
            raise StateError(f"{path}: gpuprov's state is not in the form gpuprov writes ({bad}): {_MOVE_AWAY}")
    return data


def _write(path: Path, data: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        if path.parent.stat().st_mode & 0o777 == 0o700 and path.parent.stat().st_uid == os.geteuid():
            path.parent.chmod(0o755)  # made 0700 by an older gpuprov: the public files must be readable
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.chmod(tmp, 0o600 if path.name in _PRIVATE else 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        raise StateError(f"cannot write gpuprov's state in {path.parent}: {exc.strerror or exc}") from None


def load_previous(directory: Path) -> dict[str, dict[str, Any]]:
    data = _read_previous(directory / "previous.json")
    return {s: dict(data.get(s) or {}) for s in SECTIONS}


def record_previous(directory: Path, section: str, key: str, value: dict[str, Any]) -> bool:
    """Remember ``value`` as the state of ``section``/``key`` before gpuprov's first change to it.
    Returns False (and keeps the old record) when the item was recorded already."""
    if section not in SECTIONS:
        raise ValueError(section)
    path = directory / "previous.json"
    data = _read_previous(path)
    items = data.setdefault(section, {})
    if key in items:
        old, new = items[key].get("settings"), value.get("settings")
        missing = {k: v for k, v in (new or {}).items() if isinstance(old, dict) and k not in old}
        if not missing:
            return False
        old.update(missing)  # a later profile manages one more setting of this GPU: record it too
    else:
        items[key] = value
    data["version"] = 1
    _write(path, data)
    return True


def recorded_locked_clocks(directory: Path) -> dict[str, list[int] | None]:
    """GPU key → the clock range gpuprov locked in this boot (absent/None: not locked by gpuprov)."""
    data = _read(directory / "applied.json")
    if data.get("boot_id") != boot_id():
        return {}
    clocks = data.get("locked_clocks_mhz") or {}
    return {str(k): (list(v) if v else None) for k, v in clocks.items()}


def set_locked_clocks(directory: Path, key: str, value: list[int] | None) -> None:
    path = directory / "applied.json"
    data = _read(path)
    if data.get("boot_id") != boot_id():
        # a new boot reset the clocks; what the driver refuses does not change with a reboot
        data = {"boot_id": boot_id(), "locked_clocks_mhz": {}, "power_limit_refused": _refused(data)}
    data.setdefault("locked_clocks_mhz", {})[key] = list(value) if value else None
    _write(path, data)


def _refused(data: dict[str, Any]) -> list[str]:
    value = data.get("power_limit_refused") or []
    return sorted(str(k) for k in value) if isinstance(value, list) else []


def power_limit_refused(directory: Path) -> set[str]:
    """Keys of the GPUs whose driver refused a power-limit change (NOT_SUPPORTED) when gpuprov tried."""
    return set(_refused(_read(directory / "applied.json")))


def set_power_limit_refused(directory: Path, key: str, refused: bool) -> None:
    path = directory / "applied.json"
    data = _read(path)
    keys = set(_refused(data))
    if (key in keys) == refused:
        return
    keys = keys | {key} if refused else keys - {key}
    data.setdefault("boot_id", boot_id())
    data.setdefault("locked_clocks_mhz", {})
    data["power_limit_refused"] = sorted(keys)
    _write(path, data)


def set_applied_profile(directory: Path, name: str | None) -> None:
    """Remember which profile the last successful apply made this host match (None: reverted)."""
    path = directory / "profile.json"
    if name is None:
        path.unlink(missing_ok=True)
        return
    import time

    _write(path, {"profile": name, "applied_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def applied_profile(directory: Path) -> str | None:
    """The profile in effect on this host, as the last `gpuprov apply` left it (None: none, or reverted)."""
    value = _read(directory / "profile.json").get("profile")
    return value if isinstance(value, str) else None
