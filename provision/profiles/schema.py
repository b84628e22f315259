"""The profile schema: what a tuning profile may say, and the one validator for it.

A profile file is a YAML mapping. Top-level keys are either the header (``description``,
``extends``, ``sources``, ``match``) or a *section*. Sections are registered in :data:`SECTIONS`
with a validator each; ``gpu`` and ``suspend`` live here, and later capabilities (serving units,
the llama.cpp build, the Python environment) add their own section with :func:`register_section`
without touching the others — an existing profile stays valid when a section is added.

Every error is a :class:`ProfileError` naming the file, the key and what is allowed.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from provision.errors import UsageError

if TYPE_CHECKING:
    from provision.plantypes import Desired, HostState
    from provision.snapshot import Snapshot

    #: a section's part of a plan (pure: no I/O): adds to the desired state, raises PlanError to refuse
    SectionPlan = Callable[[Desired, Snapshot, "Profile", HostState], None]
    #: what a section's plan needs from the host, read once before planning: the host state with it added
    SectionGather = Callable[["Profile", Snapshot, HostState], HostState]

SCHEMA_VERSION = 1
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
HEADER_KEYS = ("schema_version", "description", "extends", "sources", "match")


class _GpuLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def compute_capability(self) -> str | None: ...


_Gpu = TypeVar("_Gpu", bound=_GpuLike)


class ProfileError(UsageError):
    """A profile that cannot be used: unknown name, bad file, bad key or value."""


# -- typed sections ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    """Which GPUs a profile is meant for. Both lists empty: any NVIDIA GPU."""

    #: NVML device names, case-insensitive, ``*`` and ``?`` as wildcards
    gpu_names: tuple[str, ...] = ()
    #: "8.9"
    compute_capabilities: tuple[str, ...] = ()

    def matches(self, name: str, compute_capability: str | None) -> bool:
        if self.gpu_names and not any(fnmatch.fnmatchcase(name.casefold(), pat.casefold()) for pat in self.gpu_names):
            return False
        return not self.compute_capabilities or compute_capability in self.compute_capabilities

    def matching(self, gpus: Iterable[_Gpu]) -> list[_Gpu]:
        """The GPUs of a host this profile is for: the one profile-to-GPU match that plan, ``gpuprov
        profiles`` and the fleet's profile choice use."""
        return [g for g in gpus if self.matches(g.name, g.compute_capability)]

    def describe(self) -> str:
        parts = []
        if self.gpu_names:
            parts.append(" or ".join(self.gpu_names))
        if self.compute_capabilities:
            parts.append("compute capability " + "/".join(self.compute_capabilities))
        return ", ".join(parts) or "any NVIDIA GPU"


@dataclass(frozen=True)
class GpuSection:
    #: absolute power limit; exclusive with power_limit_percent
    power_limit_w: float | None = None
    #: power limit as a percentage of the GPU's default limit (100: back to the default)
    power_limit_percent: float | None = None
    #: persistence mode on/off (None: leave alone)
    persistence: bool | None = None
    #: when the GPU refuses power-limit changes ("not supported"): lock the GPU clock to this
    #: range instead (min, max MHz), what ``nvidia-smi -lgc MIN,MAX`` does
    fallback_locked_clocks_mhz: tuple[int, int] | None = None

    @property
    def sets_power_limit(self) -> bool:
        return self.power_limit_w is not None or self.power_limit_percent is not None

    @property
    def empty(self) -> bool:
        return not self.sets_power_limit and self.persistence is None


@dataclass(frozen=True)
class SuspendSection:
    #: ``NVreg_PreserveVideoMemoryAllocations=1`` and the driver's suspend/resume/hibernate services
    preserve_video_memory: bool = False


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    #: the file it was read from (the most specific one when it extends another)
    path: str
    #: the chain of files it was assembled from, most general first
    chain: tuple[str, ...]
    match: Match
    sources: tuple[str, ...]
    builtin: bool
    sections: Mapping[str, Any] = field(default_factory=dict)

    @property
    def gpu(self) -> GpuSection:
        return self.sections.get("gpu") or GpuSection()

    @property
    def suspend(self) -> SuspendSection:
        return self.sections.get("suspend") or SuspendSection()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "path": self.path,
            "chain": list(self.chain),
            "builtin": self.builtin,
            "match": {
                "gpu_names": list(self.match.gpu_names),
                "compute_capabilities": list(self.match.compute_capabilities),
            },
            "sources": list(self.sources),
        }
        for name, section in self.sections.items():
            out[name] = SECTIONS[name].to_dict(section)
        return out


# -- validation helpers -----------------------------------------------------------------------------


class _Where:
    """Names a position in a file for error messages: ``FILE: key gpu.power_limit_w: ...``."""

    def __init__(self, file: str, key: str = "") -> None:
        self.file = file
        self.key = key

    def __getitem__(self, key: str) -> _Where:
        return _Where(self.file, f"{self.key}.{key}" if self.key else key)

    def error(self, what: str) -> ProfileError:
        where = f"{self.file}: key {self.key}" if self.key else self.file
        return ProfileError(f"{where}: {what}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _mapping(value: Any, where: _Where, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise where.error(f"expected a mapping with keys {', '.join(allowed)}, got {_show(value)}")
    for key in value:
        if not isinstance(key, str) or key not in allowed:
            raise where.error(f"unknown key {_show(key)} (allowed: {', '.join(allowed)})")
    return value


def _number(value: Any, where: _Where, what: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise where.error(f"expected {what}, got {_show(value)}")
    if not lo < value <= hi:
        raise where.error(f"{value} is out of range: expected {what}, more than {lo:g} and at most {hi:g}")
    return float(value)


def _int(value: Any, where: _Where, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise where.error(f"expected {what} (a whole number), got {_show(value)}")
    if not lo <= value <= hi:
        raise where.error(f"{value} is out of range: expected {what} from {lo} to {hi}")
    return value


def _bool(value: Any, where: _Where) -> bool:
    if not isinstance(value, bool):
        raise where.error(f"expected true or false, got {_show(value)}")
    return value


def _text(value: Any, where: _Where, what: str = "a string") -> str:
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        raise where.error(f"expected {what}, got {_show(value)}")
    return value


def _text_list(value: Any, where: _Where, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise where.error(f"expected a list of {what}, got {_show(value)}")
    return tuple(_text(v, where, what) for v in value)


# -- sections ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """How a mapping inside a section merges when a child profile keeps the parent's key (serving.vllm
    when the child serves vLLM too): key by key, with its own exclusive groups and tied keys."""

    exclusive: tuple[tuple[str, ...], ...] = ()
    tied: tuple[str, ...] = ()


@dataclass(frozen=True)
class SectionType:
    """How one top-level section is validated and shown. ``exclusive``: groups of keys of which a
    profile extending another may set one, replacing whichever the parent set."""

    parse: Callable[[Any, _Where], Any]
    to_dict: Callable[[Any], dict[str, Any]]
    exclusive: tuple[tuple[str, ...], ...] = ()
    #: keys whose value belongs to the parent's choice in an exclusive group (serving.port to the
    #: engine): a child that chooses another key of the group drops them too, unless it sets them
    tied: tuple[str, ...] = ()
    #: keys whose value is a mapping merged key by key with the parent's (not replaced) when both set it
    blocks: Mapping[str, Block] = field(default_factory=dict)
    #: the section's part of a plan, called for every profile (with or without the section: a section
    #: an earlier profile had may leave things to remove); None: the core plan handles it (gpu, suspend)
    plan: SectionPlan | None = None
    #: reads what ``plan`` needs from the host (provision.hoststate calls it before planning)
    gather: SectionGather | None = None
    #: sections whose ``plan`` hook runs before this one's (serving's server runs from what stack makes)
    after: tuple[str, ...] = ()
    #: a section this one belongs to: a child profile that switches that section's choice (serving from vLLM
    #: to Ollama) drops this section of its parent unless it sets it itself (stack: vLLM's environment)
    follows: str | None = None


def plan_order() -> list[SectionType]:
    """The sections in the order their ``plan`` hooks run: each after those it names in ``after``."""
    done: list[str] = []
    pending = list(SECTIONS)
    while pending:
        ready = [n for n in pending if all(a in done or a not in SECTIONS for a in SECTIONS[n].after)]
        if not ready:  # pragma: no cover - a cycle in ``after`` is a programming error
            raise ValueError(f"profile sections order each other in a cycle: {pending}")
        done.append(ready[0])
        pending.remove(ready[0])
    return [SECTIONS[n] for n in done]


SECTIONS: dict[str, SectionType] = {}


def register_section(name: str, section: SectionType) -> None:
    """Add a top-level section (serving, llama_cpp, python ...). Names are unique."""
    if name in SECTIONS or name in HEADER_KEYS:
        raise ValueError(f"profile section {name!r} is already defined")
    SECTIONS[name] = section


_GPU_KEYS = ("power_limit_w", "power_limit_percent", "persistence", "power_limit_fallback")
_FALLBACK_KEYS = ("locked_clocks_mhz",)


def _parse_gpu(value: Any, where: _Where) -> GpuSection:
    data = _mapping(value, where, _GPU_KEYS)
    data = {k: v for k, v in data.items() if v is not None}
    if "power_limit_w" in data and "power_limit_percent" in data:
        raise where.error("set power_limit_w or power_limit_percent, not both")
    watts = percent = None
    if "power_limit_w" in data:
        watts = _number(data["power_limit_w"], where["power_limit_w"], "a power limit in watts", 0, 2000)
    if "power_limit_percent" in data:
        percent = _number(
            data["power_limit_percent"],
            where["power_limit_percent"],
            "a percentage of the default limit",
            0,
            200,
        )
    persistence = _bool(data["persistence"], where["persistence"]) if "persistence" in data else None
    clocks = None
    if "power_limit_fallback" in data:
        fw = where["power_limit_fallback"]
        fallback = _mapping(data["power_limit_fallback"], fw, _FALLBACK_KEYS)
        if "locked_clocks_mhz" not in fallback:
            raise fw.error("expected locked_clocks_mhz: [MIN, MAX]")
        cw = fw["locked_clocks_mhz"]
        pair = fallback["locked_clocks_mhz"]
        if not isinstance(pair, list) or len(pair) != 2:
            raise cw.error(f"expected [MIN, MAX] in MHz, got {_show(pair)}")
        lo = _int(pair[0], cw, "a minimum clock in MHz", 0, 10000)
        hi = _int(pair[1], cw, "a maximum clock in MHz", 1, 10000)
        if hi < lo:
            raise cw.error(f"the maximum ({hi} MHz) is below the minimum ({lo} MHz)")
        if watts is None and percent is None:
            raise fw.error("a fallback for the power limit needs power_limit_w or power_limit_percent")
        clocks = (lo, hi)
    return GpuSection(watts, percent, persistence, clocks)


def _gpu_dict(s: GpuSection) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if s.power_limit_w is not None:
        out["power_limit_w"] = s.power_limit_w
    if s.power_limit_percent is not None:
        out["power_limit_percent"] = s.power_limit_percent
    if s.persistence is not None:
        out["persistence"] = s.persistence
    if s.fallback_locked_clocks_mhz is not None:
        out["power_limit_fallback"] = {"locked_clocks_mhz": list(s.fallback_locked_clocks_mhz)}
    return out


def _parse_suspend(value: Any, where: _Where) -> SuspendSection:
    data = _mapping(value, where, ("preserve_video_memory",))
    pv = data.get("preserve_video_memory")
    return SuspendSection(False if pv is None else _bool(pv, where["preserve_video_memory"]))


register_section("gpu", SectionType(_parse_gpu, _gpu_dict, exclusive=(("power_limit_w", "power_limit_percent"),)))
register_section("suspend", SectionType(_parse_suspend, lambda s: {"preserve_video_memory": s.preserve_video_memory}))


def without_sections(profile: Profile, names: Iterable[str]) -> Profile:
    """``profile`` without the sections ``names`` (a fleet's host that makes them another way); a name that is
    no section is a ProfileError."""
    import dataclasses

    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        raise ProfileError(
            f"without: {', '.join(unknown)} is not a profile section (sections: {', '.join(sorted(SECTIONS))})"
        )
    return dataclasses.replace(profile, sections={k: v for k, v in profile.sections.items() if k not in set(names)})
