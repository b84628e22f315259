"""Which paths a hardened unit's sandbox must show (ProtectHome=, PrivateTmp=) for what it runs."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from provision.serving.settings import (
    _PLAIN_PATH,
    HOME_DIRS,
    OLLAMA_HOME,
    TMP_DIRS,
    LlamaCppSettings,
    OllamaSettings,
    ServingError,
    ServingSection,
    VllmSettings,
)

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


def _with_package(python: str, dirs: list[str]) -> list[str]:
    if python == sys.executable:
        return [*dirs, str(Path(__file__).parent.parent)]  # the provision package
    return dirs


@dataclass(frozen=True)
class SandboxFacts:
    """What deciding a unit's sandbox looks at on the host, read once by :func:`read_sandbox_facts`:
    the directories of each interpreter a unit runs, and where this host's symlinks lead."""

    #: interpreter → its directories (:func:`interpreter_paths`)
    interpreter_dirs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: path → os.path.realpath on this host; None: an image tree, whose links point into the image
    realpaths: dict[str, str] | None = None

    def dirs(self, python: str) -> list[str]:
        return list(self.interpreter_dirs[python])

    def gpuprov_paths(self, python: str) -> list[str]:
        return _with_package(python, self.dirs(python))

    def private_tmp_hidden(self, paths: list[str]) -> list[str]:
        """The paths a unit with ``PrivateTmp=yes`` cannot see: under /tmp or /var/tmp as written, or once
        this host's symlinks are resolved (an image tree's are not: they point into the image)."""
        return _hidden(paths, self.realpaths)

    def merged(self, other: SandboxFacts) -> SandboxFacts:
        realpaths = None if self.realpaths is None or other.realpaths is None else {**self.realpaths, **other.realpaths}
        return SandboxFacts({**self.interpreter_dirs, **other.interpreter_dirs}, realpaths)


def read_sandbox_facts(pythons: Iterable[str], paths: Iterable[str], root: Path) -> SandboxFacts:
    """Read the directories of ``pythons`` (their ``pyvenv.cfg``) and, on this host (``root`` "/"), where
    those and ``paths`` lead once symlinks are resolved."""
    dirs = {py: tuple(interpreter_paths(py, root)) for py in pythons}
    if root != Path("/"):
        return SandboxFacts(dirs, None)
    every = {p for py, d in dirs.items() for p in _with_package(py, list(d))} | set(paths)
    return SandboxFacts(dirs, {p: os.path.realpath(p) for p in sorted(every)})


def _outermost(paths: list[str]) -> list[str]:
    out: list[str] = []
    for p in sorted(set(paths)):
        if not any(_under(p, (q,)) for q in out):
            out.append(p)
    return out


def _hidden(paths: list[str], realpaths: dict[str, str] | None) -> list[str]:
    hidden = []
    for p in paths:
        real = p if realpaths is None else realpaths[p]
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


def gpuprov_sandbox(unit: str, python: str, facts: SandboxFacts) -> tuple[list[str], list[str]]:
    """For a hardened unit that runs only gpuprov (the boot unit): (the home directories to bind read-only
    past ProtectHome=, one line per reason it could not start)."""
    paths = facts.gpuprov_paths(python)
    refusals = []
    # in an image tree (no realpaths) the unit runs the image's gpuprov at that path: not this process's
    hidden = facts.private_tmp_hidden(paths) if facts.realpaths is not None else []
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


def unit_pythons(s: ServingSection, python: str) -> list[str]:
    """The interpreters whose directories the server's unit must see: gpuprov's (ExecStartPre) and the
    server's virtualenv's."""
    st = s.settings
    venv = st.venv if isinstance(st, VllmSettings | LlamaCppSettings) else None
    return [python, *([f"{venv}/bin/python"] if venv else [])]


def unit_paths(s: ServingSection, python: str, sandbox: SandboxFacts) -> tuple[list[str], list[str], list[str]]:
    """(gpuprov's paths, every path the server's unit reads, the paths it writes)."""
    own = sandbox.gpuprov_paths(python)  # ExecStartPre= runs gpuprov wait-gpu in the same sandbox
    readable = list(own)
    writable: list[str] = []
    st = s.settings
    if isinstance(st, VllmSettings):
        readable += (
            sandbox.dirs(f"{st.venv}/bin/python") if st.venv else [str(PurePosixPath(st.executable or "/").parent)]
        )
        if st.model.startswith("/"):
            readable.append(st.model)
    elif isinstance(st, LlamaCppSettings):
        readable += sandbox.dirs(f"{st.venv}/bin/python") if st.venv else [str(PurePosixPath(st.server or "/").parent)]
        readable.append(st.model)
    else:
        assert isinstance(st, OllamaSettings)
        writable.append(OLLAMA_HOME)
        if st.models_dir:
            writable.append(st.models_dir)
    return own, readable, writable
