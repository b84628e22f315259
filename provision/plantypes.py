"""The types of a tuning plan: what a host is (:class:`HostState`, gathered up front by
:mod:`provision.hostfacts`), what a profile wants it to be (:class:`Desired`), and the rows that differ
(:class:`Change`, gathered in a :class:`TuningPlan`). No I/O and no decisions here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from provision.engineflags import LLAMA_CPP_ENGINE
from provision.errors import GpuprovError
from provision.systemd import UnitState

if TYPE_CHECKING:
    from provision.llama_build.buildhost import BuildHost
    from provision.serving.facts import ServingHost
    from provision.serving.sandbox import SandboxFacts
    from provision.stack.facts import StackHost


class PlanError(GpuprovError):
    """The profile cannot be applied to this host as it is (refused); nothing was changed."""

    exit_code = 3


@dataclass(frozen=True)
class FileState:
    #: a symlink's: what it points to (followed inside the tree)
    content: str | None
    mode: str | None = None
    #: the file is a symbolic link to this (None: not a link)
    link_target: str | None = None
    uid: int | None = None
    gid: int | None = None


@dataclass(frozen=True)
class HostState:
    """What a plan needs besides the snapshot. ``known=False``: a snapshot of another host (``--from``)."""

    known: bool = True
    files: dict[str, FileState] = field(default_factory=dict)
    units: dict[str, UnitState] = field(default_factory=dict)
    locked_clocks_mhz: dict[str, list[int] | None] = field(default_factory=dict)
    #: GPUs whose driver refused a power-limit change when gpuprov last tried (applystate)
    power_limit_refused: set[str] = field(default_factory=set)
    systemd_running: bool = False
    #: the interpreter the boot unit runs gpuprov with
    python: str = "/usr/bin/python3"
    #: the tree files are read from ("/" or an image): where serving looks up virtualenvs and models
    root: str = "/"
    #: ``root`` is an image tree, not this host: no GPU is touched, the image's boot unit applies the settings
    image: bool = False
    #: what gpuprov recorded about the llama-cpp-python build in the profile's environment
    #: (provision.llama_build.installed_build; None: not installed or not looked at)
    llama_cpp_installed: dict[str, Any] | None = None
    #: what deciding the profile's llama-cpp-python build looks at (compilers, nvcc traits, source)
    llama_build: BuildHost | None = None
    #: what planning the profile's server looks at (installed vLLM, virtualenvs, paths, the model, key files)
    serving: ServingHost | None = None
    #: the interpreter directories and symlinks the boot unit's sandbox depends on (and the server's)
    sandbox: SandboxFacts | None = None
    #: what planning the profile's serving environment looks at (where its path leads, what gpuprov made)
    stack: StackHost | None = None


@dataclass(frozen=True)
class FileTarget:
    path: str
    #: None: the file must not exist
    content: str | None
    mode: str = "0644"
    note: str = ""
    #: with content None: directories to remove when empty (gpuprov created them for the file)
    remove_dirs: tuple[str, ...] = ()
    #: revert: the path was a symbolic link to this (content is then None); None: a regular file or absent
    link_target: str | None = None
    #: revert: the owner and group it had (None: whoever writes it, as records made before gpuprov kept them)
    uid: int | None = None
    gid: int | None = None
    #: an API key: its content is never shown (diff, results, logs: its size only; provision.apikeys)
    secret: bool = False
    #: revert of a secret: gpuprov_file puts back what it recorded, read from the record there (content is
    #: None: a secret never travels through a plan)
    restore: bool = False


@dataclass(frozen=True)
class UnitTarget:
    name: str
    enabled: bool
    #: start (or stop, when not enabled) it now — only where systemd is running
    now: bool = False
    note: str = ""


@dataclass(frozen=True)
class GpuSettingsTarget:
    """Desired settings for one GPU, as the plan computed them."""

    key: str
    index: int
    name: str
    settings: dict[str, Any]
    #: locked clocks to set instead if the driver refuses ``power_limit_w`` (the profile's fallback)
    fallback_locked_clocks_mhz: list[int] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"key": self.key, "index": self.index, "name": self.name, "settings": dict(self.settings)}
        if self.fallback_locked_clocks_mhz is not None:
            out["fallback_locked_clocks_mhz"] = list(self.fallback_locked_clocks_mhz)
        return out


@dataclass
class Desired:
    profile: str
    gpus: list[GpuSettingsTarget] = field(default_factory=list)
    files: list[FileTarget] = field(default_factory=list)
    units: list[UnitTarget] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: the inference server (provision.serving): written by the gpuprov_serving role, which restarts
    #: the server when one of its files changed
    serving_files: list[FileTarget] = field(default_factory=list)
    serving_units: list[UnitTarget] = field(default_factory=list)
    #: unit name, key file, sysusers file... (ServingFiles.to_dict); empty: no server
    serving: dict[str, Any] = field(default_factory=dict)
    #: the llama-cpp-python build the profile asks for (llama_build.BuildPlan.to_dict); empty: none
    llama_cpp: dict[str, Any] = field(default_factory=dict)
    #: the server's environment (provision.stack: StackSpec.to_dict and its state); empty: none
    stack: dict[str, Any] = field(default_factory=dict)
    #: why a unit could not start as planned (a path its sandbox hides): plan warns, apply refuses (exit 3)
    refusals: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "gpus": [g.to_dict() for g in self.gpus],
            "files": [asdict(f) for f in self.files],
            "units": [asdict(u) for u in self.units],
            "notes": list(self.notes),
            "serving_files": [asdict(f) for f in self.serving_files],
            "serving_units": [asdict(u) for u in self.serving_units],
            "serving": dict(self.serving),
            LLAMA_CPP_ENGINE: dict(self.llama_cpp),  # the llama_cpp section's build
            "stack": dict(self.stack),
            "refusals": list(self.refusals),
        }


@dataclass(frozen=True)
class Change:
    #: "gpu0", a file path, a unit name
    subject: str
    #: power_limit_w, persistence_mode, locked_clocks_mhz, content, mode, enabled
    setting: str
    current: Any
    desired: Any
    #: "change" (apply would change it), "ok" (already so), "skip" (cannot be done here; see note)
    action: str
    note: str = ""
    diff: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TuningPlan:
    desired: Desired
    changes: list[Change]

    @property
    def pending(self) -> list[Change]:
        return [c for c in self.changes if c.action == "change"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.desired.profile,
            "pending": len(self.pending),
            "changes": [c.to_dict() for c in self.changes],
            "notes": list(self.desired.notes),
            "desired": {k: v for k, v in self.desired.to_dict().items() if k != "notes"},  # the notes: above, once
        }
