"""What planning a ``stack:`` section reads on the host, once, before planning (the section's gather hook):
where the server's path leads now, what gpuprov recorded about the environments it made there, the set
installed in the one in use (from its metadata), and for llama.cpp what the build decision reads."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from provision import applystate
from provision.engineflags import LLAMA_CPP_ENGINE
from provision.stack.installed import installed_versions
from provision.stack.record import read_record

if TYPE_CHECKING:
    from provision.llama_build.buildhost import BuildHost
    from provision.plantypes import HostState
    from provision.profiles.schema import Profile
    from provision.snapshot import Snapshot


@dataclass(frozen=True)
class StackHost:
    #: "3.11": the version gpuprov runs with (the default interpreter request)
    default_python: str
    #: the plan's root is this machine's / (an environment names its own path: it is made only there)
    here: bool = True
    #: the server's path: "absent", "symlink", "directory" or "other"
    link_kind: str = "absent"
    #: where the link leads (absolute, inside the tree); None: not a link
    link_target: str | None = None
    #: gpuprov's record of the environments it made at the link (provision.stack.record)
    record: dict[str, Any] | None = None
    #: canonical name → version installed where the link leads (from metadata)
    installed: dict[str, str] = field(default_factory=dict)
    build_host: BuildHost | None = None


def default_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def read_link(root: Path, link: str) -> tuple[str, str | None]:
    """(kind, target) of ``link`` inside the tree at ``root``."""
    path = root / link.lstrip("/")
    try:
        if path.is_symlink():
            target = os.readlink(path)
            absolute = target if target.startswith("/") else str(PurePosixPath(link).parent / target)
            return "symlink", os.path.normpath(absolute)
        if path.is_dir():
            return "directory", None
        return ("other", None) if path.exists() else ("absent", None)
    except OSError:
        return "other", None


def gather(profile: Profile, snapshot: Snapshot, host: HostState) -> HostState:
    """The stack section's gather hook."""
    from provision.stack.spec import SECTION, StackError, engine_and_link

    section = profile.sections.get(SECTION)
    if section is None:
        return host
    facts = StackHost(default_python=default_python())
    try:
        engine, link = engine_and_link(profile.sections.get("serving"))
    except StackError:
        return replace(host, stack=facts)  # the plan hook says why
    if host.image or os.path.realpath(host.root) != "/":
        # made on the booted host, at its real path: the plan hook says so
        return replace(host, stack=replace(facts, here=False))
    if host.known:
        # an environment names its own path in its scripts: it lives at its real path on this machine,
        # never under a root (an image tree gets none; a replayed host's root holds only its files)
        kind, target = read_link(Path("/"), link)
        record = read_record(applystate.state_dir(Path(host.root)), link)
        installed = installed_versions(Path(target)) if target else {}
        facts = replace(facts, link_kind=kind, link_target=target, record=record, installed=installed)
    if engine == LLAMA_CPP_ENGINE:
        from provision.llama_build.buildhost import gather_build_host

        facts = replace(facts, build_host=gather_build_host(snapshot, wheelhouse=section.wheelhouse))
    return replace(host, stack=facts)
