"""Which paths a hardened unit's sandbox must show (ProtectHome=, PrivateTmp=) for what it runs."""

from __future__ import annotations

import os
import sys
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from provision.serving.settings import _PLAIN_PATH, HOME_DIRS, TMP_DIRS, ServingError

if TYPE_CHECKING:
    pass


# -- which paths the sandbox must show ------------------------------------------------------------------


def _under(path: str, dirs: tuple[str, ...]) -> bool:
    return any(path == d or path.startswith(d + "/") for d in dirs)


def _read_text(root: Path, path: str) -> str | None:
    try:
        return (root / path.lstrip("/")).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def interpreter_paths(python: str, root: Path) -> list[str]:
    """The directories an interpreter needs: its virtualenv, and the base installation the venv points
    at (``pyvenv.cfg`` ``home =``; a pyenv or uv Python under /root is hidden by ProtectHome=)."""
    exe = PurePosixPath(python)
    out = [str(exe.parent.parent)] if exe.parent.name == "bin" else [str(exe.parent)]
    cfg = _read_text(root, str(exe.parent.parent / "pyvenv.cfg")) if exe.parent.name == "bin" else None
    if cfg:
        for line in cfg.splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home" and value.strip().startswith("/"):
                home = PurePosixPath(value.strip())
                out.append(str(home.parent if home.name == "bin" else home))
    return out


def gpuprov_paths(python: str, root: Path) -> list[str]:
    """What a unit running ``python -m provision`` reads: the interpreter's directories and, when it is
    the interpreter running now, the package's own (an editable install's checkout is outside the venv)."""
    out = interpreter_paths(python, root)
    if python == sys.executable:
        out.append(str(Path(__file__).parent.parent))  # the provision package
    return out


def _outermost(paths: list[str]) -> list[str]:
    out: list[str] = []
    for p in sorted(set(paths)):
        if not any(_under(p, (q,)) for q in out):
            out.append(p)
    return out


def private_tmp_hidden(paths: list[str], root: Path) -> list[str]:
    """The paths a unit with ``PrivateTmp=yes`` cannot see: under /tmp or /var/tmp as written, or once
    this host's symlinks are resolved (an image tree's are not: they point into the image)."""
    hidden = []
    for p in paths:
        real = os.path.realpath(p) if root == Path("/") else p
        if _under(p, TMP_DIRS):
            hidden.append(p)
        elif _under(real, TMP_DIRS):
            hidden.append(f"{p} (a link into {real})")
    return _outermost(hidden)


def private_tmp_refusal(unit: str, hidden: list[str], what: str, remedy: str) -> str:
    """One line: which paths a unit needs that its PrivateTmp=yes hides, and what to do."""
    return (
        f"{unit} cannot see {what} {', '.join(hidden)}: /tmp and /var/tmp are the unit's own empty ones "
        f"(PrivateTmp=yes), so it would fail to start; {remedy}"
    )


#: the remedy when gpuprov itself runs from /tmp (a checkout cloned there, a venv made there)
GPUPROV_TMP_REMEDY = "run gpuprov from an installation outside them (e.g. a virtualenv in /opt/gpuprov)"


def gpuprov_sandbox(unit: str, python: str, root: Path) -> tuple[list[str], list[str]]:
    """For a hardened unit that runs only gpuprov (the boot unit): (the home directories to bind read-only
    past ProtectHome=, one line per reason it could not start)."""
    paths = gpuprov_paths(python, root)
    refusals = []
    # in an image tree (root not /) the unit runs the image's gpuprov at that path: not this process's
    hidden = private_tmp_hidden(paths, root) if root == Path("/") else []
    if hidden:
        refusals.append(private_tmp_refusal(unit, hidden, "gpuprov's interpreter or package", GPUPROV_TMP_REMEDY))
    try:
        binds = _needs_visible(paths)
    except ServingError as exc:
        binds, refusals = [], [*refusals, f"{unit}: {exc}"]
    return binds, refusals


def _needs_visible(paths: list[str]) -> list[str]:
    """The paths that ProtectHome= would hide, deduplicated, a path inside another dropped."""
    hidden = sorted({p for p in paths if _under(p, HOME_DIRS)})
    out: list[str] = []
    for p in hidden:
        if not any(_under(p, (q,)) for q in out):
            out.append(p)
    for p in out:
        if not _PLAIN_PATH.match(p):
            raise ServingError(
                f"{p!r} is under a home directory and must be bound into the sandbox, but has characters "
                "systemd's BindReadOnlyPaths= cannot carry: move it (e.g. to /opt or /srv)"
            )
    return out
