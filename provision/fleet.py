"""What a fleet rollout (``playbooks/site.yml``) decides for one host before touching it: which
profile it gets — the one its inventory names, or with ``auto`` the built-in profile that fits its
GPUs — or why its GPU tasks are skipped (no driver, no GPU, no profile that fits).

A skipped host is not a failed host: the rollout goes on for the others and the summary says why.
A profile name that does not exist or does not load is a mistake in the inventory and fails the host.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from provision.profiles import Profile
from provision.profiles.loader import ProfileSet, builtin_dir, load_profile, profile_set
from provision.snapshot import GpuInfo, Snapshot

AUTO = "auto"


@dataclass(frozen=True)
class HostSelection:
    #: "apply" (the GPU tasks run with ``profile``) or "skip" (they do not; ``reason`` says why)
    action: str
    profile: str | None
    #: "2x NVIDIA GeForce RTX 4090", one entry per model, in index order
    gpus: list[str] = field(default_factory=list)
    reason: str = ""
    #: how the profile was chosen: "inventory" or "auto"
    chosen_by: str = "inventory"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe_gpus(gpus: list[GpuInfo]) -> list[str]:
    counts = Counter(g.name for g in gpus)
    return [f"{n}x {name}" for name, n in counts.items()]


def _matched(profile: Profile, gpus: list[GpuInfo]) -> int:
    return len(profile.match.matching(gpus))


def auto_order(profile: Profile, gpus: list[GpuInfo]) -> tuple[int, int, str]:
    """Sort key among the profiles that fit: most GPUs matched, then profiles that name the GPU model
    before those that only give a compute capability (h100 before datacenter), then by name."""
    return (-_matched(profile, gpus), 0 if profile.match.gpu_names else 1, profile.name)


def auto_profile(snapshot: Snapshot, profiles: ProfileSet | None = None) -> Profile | None:
    """The first built-in profile (in :func:`auto_order`) matching at least one of the host's GPUs."""
    loaded, _errors = (profiles or profile_set([builtin_dir()])).load_all()
    fitting = [p for p in loaded if _matched(p, snapshot.gpus)]
    return min(fitting, key=lambda p: auto_order(p, snapshot.gpus)) if fitting else None


def select(snapshot: Snapshot, requested: str, profiles: ProfileSet | None = None) -> HostSelection:
    """The decision for one host. Raises ``ProfileError`` for a named profile that does not load."""
    gpus = describe_gpus(snapshot.gpus)
    chosen_by = AUTO if requested == AUTO else "inventory"
    status = snapshot.driver.nvml
    if not status.ok:
        reason = f"no usable NVIDIA driver ({status.message or status.kind})"
        return HostSelection("skip", None if requested == AUTO else requested, gpus, reason, chosen_by)
    if not snapshot.gpus:
        return HostSelection("skip", None if requested == AUTO else requested, gpus, "no NVIDIA GPU", chosen_by)
    if requested == AUTO:
        profile = auto_profile(snapshot, profiles)
        if profile is None:
            names = ", ".join(sorted({g.name for g in snapshot.gpus}))
            return HostSelection("skip", None, gpus, f"no built-in profile matches {names}", chosen_by)
        return HostSelection("apply", profile.name, gpus, "", chosen_by)
    profile = profiles.load(requested) if profiles is not None else load_profile(requested)
    if not _matched(profile, snapshot.gpus):
        names = ", ".join(sorted({g.name for g in snapshot.gpus}))
        reason = f"profile {profile.name} is for {profile.match.describe()}, not {names}"
        return HostSelection("skip", profile.name, gpus, reason, chosen_by)
    return HostSelection("apply", profile.name, gpus, "", chosen_by)
