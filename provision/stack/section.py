"""The profile's ``stack:`` section: the environment the profile's server runs from, made by gpuprov::

    stack:
      python: "3.12"          # a version (uv finds or installs it) or an interpreter's absolute path;
                              # default: the version gpuprov runs with
      versions: auto          # the compat plan for this host's GPUs and driver, or pins compat check accepts:
                              # {vllm: 0.10.2, torch: 2.7.1}
      packages: [hf-transfer] # more requirements installed beside the engine's set
      prune: [torchvision]    # removed after the install when nothing kept requires them
      wheelhouse: /srv/wheels # install offline from this folder (scripts/wheelhouse --engine fills it)
      cpu: false              # llama_cpp: a CPU build of llama-cpp-python instead of CUDA
      arch: auto              # llama_cpp: the CUDA architectures (default: the GPUs present)
      keep: 1                 # earlier environments kept beside the current one (for a quick way back)

The engine and the environment's path are the serving section's (``serving.vllm.venv``, or
``serving.llama_cpp.venv`` for llama-cpp-python's server, e.g. ``/opt/gpuprov/envs/vllm``); Ollama is a
binary with its own installer and has no stack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from provision.profiles.schema import SECTIONS, SectionType, _int, _mapping, _text, _Where, register_section
from provision.stack.spec import SECTION

_KEYS = ("python", "versions", "packages", "prune", "wheelhouse", "cpu", "arch", "keep")
_VERSION_REQUEST = re.compile(r"^3\.\d{1,2}(\.\d{1,2})?$")


@dataclass(frozen=True)
class StackSection:
    #: "3.12", an absolute interpreter path, or None (the version gpuprov runs with)
    python: str | None = None
    #: None: auto (the compat plan); else canonical name → exact version
    pins: tuple[tuple[str, str], ...] | None = None
    packages: tuple[str, ...] = ()
    prune: tuple[str, ...] = ()
    wheelhouse: str | None = None
    cpu: bool = False
    #: None: auto (the GPUs present)
    archs: tuple[str, ...] | None = None
    keep: int = 1


def _abs_path(value: Any, where: _Where, what: str) -> str:
    text = _text(value, where, what)
    if not text.startswith("/") or "\n" in text or "/../" in text + "/" or text.rstrip("/") == "":
        raise where.error(f"expected {what} (an absolute path), got {text!r}")
    return text.rstrip("/")


def _python(value: Any, where: _Where) -> str:
    text = _text(str(value), where, "a Python version or interpreter path")
    if text.startswith("/"):
        return _abs_path(text, where, "a Python interpreter")
    if not _VERSION_REQUEST.match(text):
        raise where.error(f"expected a Python version like 3.12 or an interpreter's absolute path, got {text!r}")
    return text


def _pins(value: Any, where: _Where) -> tuple[tuple[str, str], ...] | None:
    if value is None or value == "auto":
        return None
    if not isinstance(value, dict) or not value:
        raise where.error(f"expected auto or a mapping of package to version ({{vllm: 0.10.2}}), got {value!r}")
    out = []
    for name, version in value.items():
        key = str(name)
        try:
            Requirement(key)
        except InvalidRequirement:
            raise where[key].error(f"{key!r} is not a package name") from None
        text = _text(str(version), where[key], "a version")
        try:
            Version(text)
        except InvalidVersion:
            raise where[key].error(f"expected one exact version like 0.10.2, got {text!r}") from None
        out.append((canonicalize_name(key), text))
    return tuple(sorted(out))


def _requirements(value: Any, where: _Where, *, names_only: bool) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise where.error(f"expected a list, got {value!r}")
    out = []
    for i, item in enumerate(value):
        text = _text(item, where[str(i)], "a requirement")
        try:
            req = Requirement(text)
        except InvalidRequirement:
            raise where[str(i)].error(f"{text!r} is not a requirement (PEP 508, e.g. hf-transfer>=0.1)") from None
        if req.url:
            raise where[str(i)].error(f"{text!r}: a URL requirement is not reproducible; give a name and version")
        if names_only and (req.specifier or req.extras or req.marker):
            raise where[str(i)].error(f"{text!r}: give a package name only")
        out.append(str(canonicalize_name(req.name)) if names_only else str(req))
    return tuple(out)


def parse_section(value: Any, where: _Where) -> StackSection:
    data = _mapping(value, where, _KEYS)
    from provision.llama_build.section import parse_build_target

    archs, cpu = parse_build_target(data, where)
    section = StackSection(
        python=_python(data["python"], where["python"]) if data.get("python") is not None else None,
        pins=_pins(data.get("versions"), where["versions"]),
        packages=_requirements(data.get("packages"), where["packages"], names_only=False),
        prune=_requirements(data.get("prune"), where["prune"], names_only=True),
        wheelhouse=_abs_path(data["wheelhouse"], where["wheelhouse"], "a folder of wheels")
        if data.get("wheelhouse")
        else None,
        cpu=cpu,
        archs=archs,
        keep=_int(data["keep"], where["keep"], "a number of earlier environments", 0, 5)
        if data.get("keep") is not None
        else 1,
    )
    both = set(section.prune) & {str(canonicalize_name(Requirement(p).name)) for p in section.packages}
    if both:
        raise where["prune"].error(f"{', '.join(sorted(both))} is both in packages and in prune")
    return section


def section_dict(s: StackSection) -> dict[str, Any]:
    out: dict[str, Any] = {"versions": dict(s.pins) if s.pins is not None else "auto"}
    if s.python:
        out["python"] = s.python
    if s.packages:
        out["packages"] = list(s.packages)
    if s.prune:
        out["prune"] = list(s.prune)
    if s.wheelhouse:
        out["wheelhouse"] = s.wheelhouse
    if s.cpu:
        out["cpu"] = True
    if s.archs:
        out["arch"] = list(s.archs)
    if s.keep != 1:
        out["keep"] = s.keep
    return out


def register() -> None:
    if SECTION in SECTIONS:
        return
    from provision.stack.facts import gather
    from provision.stack.planning import plan_section

    # the environment is the server's: a child profile switching to another engine drops its parent's
    register_section(
        SECTION, SectionType(parse_section, section_dict, plan=plan_section, gather=gather, follows="serving")
    )


register()
