"""The ``llama_cpp`` profile section: a build a profile asks for, planned with the same decision as
``gpuprov build llama-cpp``."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from provision.engineflags import LLAMA_CPP_ENGINE
from provision.errors import GpuprovError, UsageError
from provision.llama_build.buildhost import BuildHost, gather_build_host
from provision.llama_build.buildplan import BuildPlan
from provision.llama_build.decision import current_python, decide_build, parse_arch_option
from provision.llama_build.record import installed_build
from provision.plantypes import Desired, HostState, PlanError
from provision.profiles.schema import SECTIONS, Profile, SectionType, _bool, _mapping, _text, register_section
from provision.snapshot import Snapshot

#: the profile's section (``llama_cpp:``) is named by the engine's id
SECTION = LLAMA_CPP_ENGINE


@dataclass(frozen=True)
class LlamaCppSection:
    """Profile section ``llama_cpp:``: build llama-cpp-python for this host's GPUs during apply."""

    build: bool
    #: None: the interpreter gpuprov runs with (:func:`current_python`, the ``host.python`` of a plan)
    python: str | None
    version: str | None
    archs: tuple[str, ...] | None  # None: auto (the detected GPUs)
    cpu: bool
    source: str | None
    wheelhouse: str | None


_SECTION_KEYS = ("build", "python", "version", "arch", "cpu", "source", "wheelhouse")


def parse_build_target(data: dict[str, Any], where: Any) -> tuple[tuple[str, ...] | None, bool]:
    """A section's ``arch`` (None: auto, the GPUs present) and ``cpu`` keys, checked together: the build target
    of the ``llama_cpp`` section and of a llama.cpp ``stack``."""
    archs = None
    arch = data.get("arch", "auto")
    if arch not in (None, "auto"):
        values = [str(a) for a in arch] if isinstance(arch, list) else [str(arch)]
        try:
            archs = tuple(parse_arch_option(values))
        except UsageError:
            raise where["arch"].error(f"expected auto or CUDA architectures like [89, 86], got {arch!r}") from None
    cpu = _bool(data["cpu"], where["cpu"]) if data.get("cpu") is not None else False
    if cpu and archs:
        raise where["cpu"].error("cpu: true and arch do not go together")
    return archs, cpu


def _parse_section(value: Any, where: Any) -> LlamaCppSection:
    data = _mapping(value, where, _SECTION_KEYS)
    build = _bool(data["build"], where["build"]) if data.get("build") is not None else False
    python = (
        _text(data["python"], where["python"], "the path of the Python interpreter to build into")
        if data.get("python")
        else None
    )
    if python is not None and not python.startswith("/"):
        raise where["python"].error(f"expected an absolute path, got {python!r}")
    version = None
    if data.get("version") is not None:
        version = _text(str(data["version"]), where["version"], "a version")
        try:
            Version(version)
        except InvalidVersion:
            raise where["version"].error(f"expected a version like 0.3.16, got {version!r}") from None
    archs, cpu = parse_build_target(data, where)
    source = _text(data["source"], where["source"], "a path") if data.get("source") else None
    wheelhouse = _text(data["wheelhouse"], where["wheelhouse"], "a directory") if data.get("wheelhouse") else None
    return LlamaCppSection(build, python, version, archs, cpu, source, wheelhouse)


def _section_dict(s: LlamaCppSection) -> dict[str, Any]:
    out: dict[str, Any] = {"build": s.build}
    if s.python:
        out["python"] = s.python
    if s.version:
        out["version"] = s.version
    out["arch"] = list(s.archs) if s.archs else "auto"
    if s.cpu:
        out["cpu"] = True
    if s.source:
        out["source"] = s.source
    if s.wheelhouse:
        out["wheelhouse"] = s.wheelhouse
    return out


def plan_from_section(
    snapshot: Snapshot, section: LlamaCppSection, host: BuildHost, *, mem_available: int | None
) -> BuildPlan:
    """The build a profile asks for on this host: the same decision as `gpuprov build llama-cpp`, from
    what :func:`gather_for_section` read on the host.

    ``mem_available`` bounds -j as planned; the build itself re-bounds it by the memory available when it
    starts (:func:`rebound_jobs`, in the gpuprov_llama_build module)."""
    return decide_build(
        snapshot,
        host,
        python=section.python or current_python(),
        cpu=section.cpu,
        archs=list(section.archs) if section.archs else None,
        version=section.version,
        mem_available=mem_available,
    )


def gather_for_section(snapshot: Snapshot, section: LlamaCppSection) -> BuildHost:
    return gather_build_host(snapshot, source=section.source, wheelhouse=section.wheelhouse)


def _gather(profile: Profile, snapshot: Snapshot, host: HostState) -> HostState:
    """The section's hook: what the build decision and the comparison with the installed build need."""
    section = profile.sections.get(SECTION)
    if section is None or not section.build:
        return host
    python = section.python or current_python()
    installed = installed_build(python) if host.known and Path(python).is_file() else None
    return replace(host, llama_build=gather_for_section(snapshot, section), llama_cpp_installed=installed)


def _plan(desired: Desired, snapshot: Snapshot, profile: Profile, host: HostState) -> None:
    """The section's part of a plan: the build it asks for (compared with what is installed by the diff)."""
    section = profile.sections.get(SECTION)
    if section is None or not section.build:
        return
    if host.llama_build is None:
        raise PlanError(f"profile {profile.name}: llama-cpp-python build: the host was not gathered for it")
    try:
        build = plan_from_section(snapshot, section, host.llama_build, mem_available=snapshot.host.ram_mib)
    except GpuprovError as exc:
        raise PlanError(f"profile {profile.name}: llama-cpp-python build: {exc}") from None
    desired.llama_cpp = build.to_dict()


if SECTION not in SECTIONS:
    register_section(SECTION, SectionType(_parse_section, _section_dict, plan=_plan, gather=_gather))


def profile_build_python(profile: Profile) -> str | None:
    """The interpreter a profile's ``llama_cpp`` section builds into (None: the profile builds nothing)."""
    section = profile.sections.get(SECTION)
    if section is None or not section.build:
        return None
    return section.python or current_python()
