"""Paths inside the tree gpuprov writes to (``/``, or an image tree given with ``--root``), and what a
file there is (type, link target, owner, group, mode) so that revert can put it back exactly.

:func:`resolve` follows symbolic links the way the kernel does inside ``chroot ROOT``: an absolute
link target starts again at ROOT, and ``..`` stops at ROOT. A link in an image
(``img/etc/modprobe.d -> /etc/modprobe.d``) therefore means ``img/etc/modprobe.d``, never the build
machine's ``/etc/modprobe.d``: no path gpuprov reads or writes leaves the tree. A loop of links is
refused (:class:`RootPathError`), as the kernel refuses it (ELOOP).
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from provision.errors import GpuprovError

#: the kernel's limit on links followed while resolving one path (path_resolution(7): 40)
MAX_LINKS = 40


class RootPathError(GpuprovError):
    """A path inside the tree cannot be resolved (a loop of symbolic links)."""


#: with the GPU replayed (``GPUPROV_NVML_REPLAY``), the directory that stands for the replayed host's
#: ``/``: ``--root`` there is that host, not an image (how the tests apply GPU settings in a sandbox)
REPLAY_ROOT_ENV = "GPUPROV_NVML_REPLAY_ROOT"


def host_root() -> Path:
    """This host's ``/`` (or the replayed host's, see :data:`REPLAY_ROOT_ENV`)."""
    from provision.nvml import REPLAY_ENV

    sandbox = os.environ.get(REPLAY_ROOT_ENV)
    if sandbox and os.environ.get(REPLAY_ENV):
        return Path(os.path.realpath(sandbox))
    return Path("/")


def is_image(root: Path) -> bool:
    """An image tree (not this host's ``/``): nothing may touch this machine's GPU or running systemd."""
    return Path(os.path.realpath(root)) not in (Path("/"), host_root())


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def resolve(root: Path, path: str, *, follow_last: bool = True) -> Path:
    """``path`` (absolute, as seen inside ``root``) → the real path on this machine, under ``root``.

    Links are followed as inside ``chroot root``. ``follow_last=False`` keeps a link in the last
    component as it is (what writing, removing or recording the link itself needs)."""
    base = Path(os.path.realpath(root))
    todo = _parts(path)
    done: list[str] = []
    followed = 0
    while todo:
        name = todo.pop(0)
        if name == "..":
            if done:
                done.pop()
            continue
        candidate = base.joinpath(*done, name)
        if (todo or follow_last) and candidate.is_symlink():
            followed += 1
            if followed > MAX_LINKS:
                raise RootPathError(
                    f"{path}: too many levels of symbolic links under {root} (a loop, e.g. a link to itself "
                    "such as etc/modprobe.d -> /etc/modprobe.d): replace the link in the tree with a directory"
                )
            target = os.readlink(candidate)
            if target.startswith("/"):
                done = []
            todo = _parts(target) + todo
            continue
        done.append(name)
    return base.joinpath(*done)


def describe(path: Path) -> dict[str, Any]:
    """What is at ``path`` itself (a link is not followed): the record revert restores.

    ``type``: ``absent``, ``file``, ``symlink`` or ``other`` (a directory, a device...); ``content``
    (text, a file's only), ``mode`` (octal text), ``uid``/``gid`` (numbers: an image's names are not
    this machine's), ``link_target`` (a link's only)."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return {"type": "absent", "content": None, "mode": None, "uid": None, "gid": None, "link_target": None}
    out: dict[str, Any] = {"content": None, "mode": None, "uid": st.st_uid, "gid": st.st_gid, "link_target": None}
    if stat.S_ISLNK(st.st_mode):
        out.update(type="symlink", link_target=os.readlink(path))
    elif stat.S_ISREG(st.st_mode):
        out.update(type="file", mode=f"{stat.S_IMODE(st.st_mode):04o}")
        out["content"] = path.read_text(encoding="utf-8", errors="surrogateescape")
    else:
        out.update(type="other", mode=f"{stat.S_IMODE(st.st_mode):04o}")
    return out


def record_type(item: dict[str, Any]) -> str:
    """The type of a previous.json file record; records made before gpuprov kept the type: from the content."""
    kind = item.get("type")
    if kind in ("file", "symlink", "absent"):
        return str(kind)
    return "absent" if item.get("content") is None else "file"


def place_symlink(path: Path, link_target: str, *, uid: int | None = None, gid: int | None = None) -> None:
    """Make ``path`` a symbolic link to ``link_target`` (replacing what is there, atomically)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    os.unlink(tmp)
    os.symlink(link_target, tmp)
    try:
        if uid is not None or gid is not None:
            os.lchown(tmp, -1 if uid is None else uid, -1 if gid is None else gid)
        os.replace(tmp, path)
    except OSError:
        os.unlink(tmp)
        raise


def owner_differs(current: dict[str, Any], uid: int | None, gid: int | None) -> bool:
    return (uid is not None and current.get("uid") != uid) or (gid is not None and current.get("gid") != gid)
