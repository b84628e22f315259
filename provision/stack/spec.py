"""What a serving environment must hold (pure: no I/O): from the profile's ``stack:`` and ``serving:``
sections, the compat plan for the host's GPUs and driver (or the profile's pins, which compat check must
accept), and — for llama.cpp — the llama-cpp-python build decided for the GPUs present.

The environment is built in a directory of its own named by the digest of everything that decides its
content (``/opt/gpuprov/envs/.vllm-3fa2b1c9d0e1``) and the server's path (``/opt/gpuprov/envs/vllm``) is a
symbolic link switched to it once it is checked: a changed plan builds beside the old environment, and a
failed build leaves the old one serving.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from provision.compat.plan import NoPlanError
from provision.compat.plan import plan as compat_plan
from provision.compat.target import Target, target_from_snapshot
from provision.compat.verdict import check
from provision.engineflags import ENGINE_WORDS, LLAMA_CPP_ENGINE, OLLAMA_ENGINE, VLLM_ENGINE
from provision.errors import GpuprovError, UsageError

if TYPE_CHECKING:
    from provision.llama_build.buildhost import BuildHost
    from provision.serving.settings import ServingSection
    from provision.snapshot import Snapshot
    from provision.stack.section import StackSection

#: the profile's section (``stack:``)
SECTION = "stack"
#: uv-managed interpreters an environment needs go here (not under /root, which ProtectHome= hides from the server)
PYTHONS_DIR = "/opt/gpuprov/python"
#: the distribution each engine's environment is for
ENGINE_PACKAGE = {VLLM_ENGINE: "vllm", LLAMA_CPP_ENGINE: "llama-cpp-python"}
#: llama-cpp-python's OpenAI-compatible server (``python -m llama_cpp.server``) needs its extra
LLAMA_SERVER_REQUIREMENT = "llama-cpp-python[server]"
_PLACEHOLDER_PYTHON = "/gpuprov-stack-placeholder/bin/python"


class StackError(GpuprovError):
    """The environment cannot be planned or made: one line saying why and what to do."""


@dataclass(frozen=True)
class StackSpec:
    engine: str
    #: the server's path: a symbolic link gpuprov switches (``serving.<engine>.venv``)
    link: str
    #: the directory this content is built in, beside the link
    home: str
    #: the interpreter request given to ``uv venv --python`` ("3.12" or a path)
    python: str
    #: what is asked for (extras included: "vllm[flashinfer]") and the exact versions it must resolve to
    requirements: tuple[str, ...]
    constraints: tuple[str, ...]
    #: canonical name → version: the set compat chose (auto) or accepted (pins)
    pins: dict[str, str]
    #: indexes besides PyPI a pin must come from (a PyTorch CUDA variant)
    indexes: tuple[str, ...] = ()
    wheelhouse: str | None = None
    prune: tuple[str, ...] = ()
    #: llama-cpp-python's build (provision.llama_build.BuildPlan.to_dict), its python the new home's
    build: dict[str, Any] | None = None
    keep: int = 1
    digest: str = ""
    #: where the set came from ("compat plan" / "pins checked by compat check") and its caveats
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("requirements", "constraints", "indexes", "prune", "notes"):
            out[key] = list(out[key])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StackSpec:
        known = {f for f in cls.__dataclass_fields__}
        fields = {k: v for k, v in data.items() if k in known}
        for key in ("requirements", "constraints", "indexes", "prune", "notes"):
            fields[key] = tuple(fields.get(key) or ())
        return cls(**fields)

    def generation(self, path: str | None) -> bool:
        """Whether ``path`` is this spec's directory: its home, or a rebuild of the same plan beside it
        (``HOME.2``, ``HOME.3``: the environment in use had changed by hand and could not be built over)."""
        if path is None:
            return False
        suffix = path.removeprefix(self.home)
        return suffix == "" or (path != suffix and suffix[:1] == "." and suffix[1:].isdigit())

    def at(self, home: str) -> StackSpec:
        """The same spec built in ``home`` (a generation of its own): the build's interpreter moves with it."""
        build = None
        if self.build is not None:
            build = {k: (v.replace(self.home, home) if isinstance(v, str) else v) for k, v in self.build.items()}
            build["command"] = [part.replace(self.home, home) for part in self.build["command"]]
        return replace(self, home=home, build=build)

    @property
    def python_exe(self) -> str:
        return f"{self.home}/bin/python"

    def summary(self) -> str:
        """One line: "vllm 0.19.1, torch 2.10.0, flashinfer-python 0.6.6"."""
        return ", ".join(f"{name} {version}" for name, version in self.pins.items())


@dataclass(frozen=True)
class SpecInputs:
    """What deciding the spec needs besides the sections: the Python version gpuprov runs with (the
    default request) and, for llama.cpp, what the build decision reads on the host."""

    default_python: str
    build_host: BuildHost | None = None
    mem_available_mib: int | None = None
    extra_notes: tuple[str, ...] = field(default_factory=tuple)


def engine_and_link(serving: ServingSection | None) -> tuple[str, str]:
    """(engine id, the environment's path) from the serving section, or StackError saying what to set."""
    if serving is None:
        raise StackError("stack: needs a serving section: the environment is made for the server it names")
    if serving.engine == OLLAMA_ENGINE:
        raise StackError(
            "stack: Ollama is a program with its own installer (https://ollama.com/download), not a Python "
            "environment: remove the stack section, install Ollama, and gpuprov writes its drop-in"
        )
    word = serving.engine  # the profile's key: serving.vllm / serving.llama_cpp
    venv = getattr(serving.settings, "venv", None)
    if not venv:
        what = "executable" if serving.engine == VLLM_ENGINE else "server (llama-server, a binary)"
        raise StackError(
            f"stack: serving.{word} runs its {what}, not a virtualenv: set serving.{word}.venv instead "
            f"(e.g. /opt/gpuprov/envs/{word}) for gpuprov to make that environment"
        )
    path = PurePosixPath(venv)
    if str(path.parent) == "/" or path.name.startswith("."):
        raise StackError(
            f"stack: {venv}: the environment needs a directory of its own below another (e.g. /opt/gpuprov/envs/{word})"
        )
    return serving.engine, str(path)


def _target(snapshot: Snapshot) -> Target:
    """The host's GPUs and driver (not the packages of gpuprov's own environment: a new one is planned)."""
    try:
        found = target_from_snapshot(snapshot)
    except UsageError:
        found = Target(driver=snapshot.driver.driver_version)
    return Target(driver=found.driver, gpus=list(found.gpus))


def _auto(engine: str, target: Target) -> tuple[dict[str, str], list[str], list[str], list[str]]:
    """(pins, requirements, indexes, notes) from the compat plan."""
    try:
        chosen = compat_plan(target, engine)
    except NoPlanError as exc:
        raise StackError(f"stack: {exc}") from None
    if chosen.driver_needed:
        raise StackError(
            f"stack: driver {target.driver} is too old for every {ENGINE_WORDS[engine]} release gpuprov knows for "
            f"this GPU: upgrade the driver to ≥ {chosen.driver_needed} first (gpuprov never installs drivers)"
        )
    if chosen.report is not None and chosen.report.verdict == "incompatible":
        problems = "; ".join(p.reason for p in chosen.report.problems)
        raise StackError(f"stack: the compat plan's own set is incompatible here: {problems}")
    pins = {p.name: p.version for p in chosen.pins}
    indexes = sorted({p.index for p in chosen.pins if p.index})
    notes = [f"versions: compat plan for this host ({', '.join(target.cc_list()) or 'no GPU'}, driver {target.driver})"]
    notes += [f"assumes {name}[{','.join(extras)}]" for name, extras in chosen.extras.items()]
    notes += list(chosen.notes)
    notes += [w for w in chosen.warnings(driver=False)]
    return pins, chosen.install_requirements(), indexes, notes


def _pinned(engine: str, pins: dict[str, str], target: Target) -> tuple[list[str], list[str]]:
    """(requirements, notes) for explicit pins, after compat check accepted them (StackError if not)."""
    package = ENGINE_PACKAGE[engine]
    if package not in pins:
        raise StackError(f"stack.versions pins no {package}: pin it too (e.g. {package}: ...), or use versions: auto")
    report = check(Target(driver=target.driver, gpus=list(target.gpus), packages=dict(pins)))
    if report.verdict == "incompatible":
        problems = "; ".join(f"{p.pair}: {p.reason}" for p in report.problems if p.severity == "incompatible")
        raise StackError(f"stack.versions: compat check rejects these pins here: {problems or report.verdict}")
    notes = ["versions: the profile's pins, accepted by compat check"]
    notes += [f"compat check: {p.severity}: {p.pair}: {p.reason}" for p in report.problems]
    return [package, *(name for name in pins if name != package)], notes


def _digest(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def make_spec(
    section: StackSection, serving: ServingSection | None, snapshot: Snapshot, inputs: SpecInputs
) -> StackSpec:
    """The environment the profile asks for on this host (StackError when it cannot be made here)."""
    engine, link = engine_and_link(serving)
    if engine == VLLM_ENGINE and (section.cpu or section.archs):
        raise StackError("stack: cpu and arch are for llama.cpp's build; vLLM's wheels carry their own kernels")
    target = _target(snapshot)
    python = section.python or inputs.default_python
    if section.pins is None:
        pins, requirements, indexes, notes = _auto(engine, target)
    else:
        pins = dict(section.pins)
        requirements, notes = _pinned(engine, pins, target)
        indexes = []
    if section.wheelhouse:
        notes.append(f"installs offline from {section.wheelhouse} (--no-index)")
    build = None
    if engine == LLAMA_CPP_ENGINE:
        build = _llama_build(section, snapshot, inputs, pins["llama-cpp-python"])
        requirements = [r for r in requirements if not r.startswith("llama-cpp-python")]
        indexes = []  # built from source for the GPUs here, not a prebuilt wheel from another index
    pinned_and_pruned = sorted(set(section.prune) & set(pins))
    if pinned_and_pruned:
        raise StackError(
            f"stack.prune names {', '.join(pinned_and_pruned)}, which the planned set pins: a pinned package is "
            "the environment's own; take it out of prune"
        )
    requirements = [*requirements, *section.packages]
    constraints = [f"{name}=={version}" for name, version in pins.items()]
    decided = {
        "engine": engine,
        "python": python,
        "requirements": requirements,
        "constraints": constraints,
        "indexes": indexes,
        "wheelhouse": section.wheelhouse,
        "prune": list(section.prune),
        "build": {k: build[k] for k in ("spec", "cpu", "archs", "cmake_args", "cuda_version", "nvcc", "host_compiler")}
        if build
        else None,
    }
    digest = _digest(decided)
    parent, name = str(PurePosixPath(link).parent), PurePosixPath(link).name
    home = f"{parent}/.{name}-{digest[:12]}"
    if build is not None:
        build = _with_python(build, f"{home}/bin/python")
    return StackSpec(
        engine=engine,
        link=link,
        home=home,
        python=python,
        requirements=tuple(requirements),
        constraints=tuple(constraints),
        pins=pins,
        indexes=tuple(indexes),
        wheelhouse=section.wheelhouse,
        prune=section.prune,
        build=build,
        keep=section.keep,
        digest=digest,
        notes=tuple([*notes, *inputs.extra_notes]),
    )


def _llama_build(section: StackSection, snapshot: Snapshot, inputs: SpecInputs, version: str) -> dict[str, Any]:
    from provision.llama_build.buildplan import BuildError
    from provision.llama_build.decision import decide_build

    if inputs.build_host is None:
        raise StackError("stack: the host was not gathered for llama-cpp-python's build")
    try:
        plan = decide_build(
            snapshot,
            inputs.build_host,
            python=_PLACEHOLDER_PYTHON,
            cpu=section.cpu,
            archs=list(section.archs) if section.archs else None,
            version=version,
            mem_available=inputs.mem_available_mib,
        )
    except (BuildError, UsageError) as exc:
        raise StackError(f"stack: llama-cpp-python build: {exc}") from None
    server = f"{LLAMA_SERVER_REQUIREMENT}=={version}"
    command = [server if part == plan.spec else part for part in plan.command]
    return replace(plan, command=command).to_dict()


def _with_python(build: dict[str, Any], python: str) -> dict[str, Any]:
    out = dict(build)
    out["python"] = python
    out["command"] = [python if part == _PLACEHOLDER_PYTHON else part for part in build["command"]]
    out["shell"] = out["shell"].replace(_PLACEHOLDER_PYTHON, python)
    return out
