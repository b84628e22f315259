"""The stack section's part of a plan (pure: reads only what :mod:`.facts` gathered): the environment the
server needs, whether the one in use already holds it, and the plan's row for it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from provision.stack.installed import missing_pins
from provision.stack.spec import SpecInputs, StackError, StackSpec, make_spec

if TYPE_CHECKING:
    from provision.plantypes import Change, Desired, HostState
    from provision.profiles.schema import Profile
    from provision.snapshot import Snapshot
    from provision.stack.facts import StackHost


def current_state(spec: StackSpec, facts: StackHost) -> tuple[str, str]:
    """("ok" | "create" | "rebuild", why) for the environment at the spec's link."""
    if facts.link_kind == "absent":
        return "create", f"{spec.link} does not exist"
    if not spec.generation(facts.link_target):
        return "rebuild", f"{spec.link} leads to {facts.link_target}, built for another plan"
    record = facts.record or {}
    if record.get("digest") != spec.digest or not record.get("complete"):
        return "rebuild", "gpuprov's record of it does not match this plan"
    missing = missing_pins(facts.installed, spec.pins)
    if missing:
        shown = ", ".join(f"{n} {v or 'absent'} (want {spec.pins[n]})" for n, v in missing.items())
        return "rebuild", f"its packages changed since gpuprov made it: {shown}"
    return "ok", "holds the planned set"


def _refusal(spec: StackSpec, facts: StackHost) -> str | None:
    """Why gpuprov must not touch what is at the link (it did not make it), or None."""
    made = set((facts.record or {}).get("homes", []))
    if facts.link_kind in ("directory", "other"):
        what = "a directory" if facts.link_kind == "directory" else "a file"
        return (
            f"{spec.link} is {what} gpuprov did not make (an environment made by hand?): gpuprov switches only "
            f"environments it made; move it away, or set serving.{spec.engine}.venv to another path"
        )
    if facts.link_kind == "symlink" and facts.link_target not in made and not spec.generation(facts.link_target):
        return f"{spec.link} is a link to {facts.link_target}, which gpuprov did not make: move the link away first"
    return None


def plan_section(desired: Desired, snapshot: Snapshot, profile: Profile, host: HostState) -> None:
    from provision.plantypes import PlanError
    from provision.stack.spec import SECTION

    section = profile.sections.get(SECTION)
    if section is None:
        return
    facts = host.stack
    if facts is None:
        raise PlanError(f"profile {profile.name}: stack: the host was not gathered for it")
    if not facts.here and host.known:
        desired.notes.append(
            f"stack: the server's environment is made when this profile is applied with / as the root ({host.root} "
            "is not: an environment names its own path in its scripts, so it cannot be built into another tree)"
        )
        return
    try:
        spec = make_spec(
            section,
            profile.sections.get("serving"),
            snapshot,
            SpecInputs(facts.default_python, facts.build_host, snapshot.host.ram_mib),
        )
    except StackError as exc:
        raise PlanError(f"profile {profile.name}: {exc}") from None
    refusal = _refusal(spec, facts) if host.known else None
    if refusal:
        raise PlanError(f"profile {profile.name}: stack: {refusal}")
    state, why = current_state(spec, facts) if host.known else ("unknown", "not this host")
    desired.stack = {
        **spec.to_dict(),
        "state": state,
        "why": why,
        "current": facts.link_target,
        "current_set": dict(sorted(facts.installed.items())) if facts.installed else {},
    }
    desired.notes.append(
        f"environment {spec.link}: {spec.summary()} ({'; '.join(spec.notes[:1])}); built beside the one in use in "
        f"{spec.home}, checked with compat check, then switched to"
    )
    drift = _drift((facts.record or {}).get("installed") or {}, facts.installed) if state == "ok" else []
    if drift:
        desired.notes.append(
            f"environment {spec.link}: changed since gpuprov made it (not by gpuprov): {', '.join(drift)}; the "
            "planned pins still hold, so it is kept (the lock file has the set gpuprov installed)"
        )
    if spec.prune:
        desired.notes.append(
            f"prune: {', '.join(spec.prune)} removed after the install unless something kept requires them"
        )


def stack_change(stack: dict[str, Any], host: HostState) -> Change:
    """The plan's row for the environment."""
    from provision.plantypes import Change

    spec = StackSpec.from_dict(stack)
    subject = f"environment {spec.link}"
    want = spec.summary()
    if not host.known:
        return Change(subject, "packages", "unknown", want, "skip", "not this host")
    current = stack.get("current_set") or {}
    have = ", ".join(f"{n} {current[n]}" for n in spec.pins if n in current) or "absent"
    if stack["state"] == "ok":
        return Change(subject, "packages", have, want, "ok", stack["why"])
    diff = _set_diff(current, spec.pins)
    return Change(subject, "packages", have, want, "change", f"{stack['why']}: built in {spec.home}", diff)


def _set_diff(current: dict[str, str], pins: dict[str, str]) -> str:
    lines = []
    for name, version in pins.items():
        have = current.get(name)
        if have is None:
            lines.append(f"+ {name}=={version}")
        elif have.split("+")[0] != version and have != version:
            lines.append(f"- {name}=={have}\n+ {name}=={version}")
    return "\n".join(lines) + ("\n" if lines else "")


def _drift(locked: dict[str, str], installed: dict[str, str]) -> list[str]:
    """What differs between the set gpuprov recorded and the one there now: "x 1.0 -> 1.1", "+y 2.0", "-z"."""
    out = []
    for name in sorted(set(locked) | set(installed)):
        old, new = locked.get(name), installed.get(name)
        if old == new:
            continue
        out.append(f"+{name} {new}" if old is None else f"-{name}" if new is None else f"{name} {old} -> {new}")
    return out
