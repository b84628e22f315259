"""The rows a plan shows: each setting, file and unit of the desired state against what the host has
(``ok``, ``change``, or ``skip`` where it cannot be done or known here)."""

from __future__ import annotations

import difflib
from typing import Any

from provision import llama_build
from provision.bootfiles import PERSISTENCED, unit_installed
from provision.gpudecisions import current_settings, gpu_key, power_limit_known_refused, same
from provision.plantypes import Change, Desired, HostState
from provision.snapshot import Snapshot
from provision.stack.planning import stack_change


def _unified(path: str, old: str | None, new: str | None) -> str:
    a = (old or "").splitlines(keepends=True)
    b = (new or "").splitlines(keepends=True)
    return "".join(difflib.unified_diff(a, b, f"{path} (current)", f"{path} (desired)"))


def _elsewhere(note: str, host: HostState) -> str:
    """A row's note for a snapshot of another host: its current state is unknown, what it says still holds."""
    if host.known:
        return note
    return f"not this host: {note}" if note else "not this host"


def changes_for(snapshot: Snapshot, desired: Desired, host: HostState) -> list[Change]:
    out: list[Change] = []
    gpus = {gpu_key(g): g for g in snapshot.gpus}
    for target in desired.gpus:
        gpu = gpus.get(target.key)
        if gpu is None:
            out.append(
                Change(
                    f"gpu:{target.key}", "present", "absent", "present", "skip", "this GPU is not on the host any more"
                )
            )
            continue
        current = current_settings(gpu, host.locked_clocks_mhz)
        for setting, value in target.settings.items():
            cur = current.get(setting)
            lock = target.fallback_locked_clocks_mhz
            refused = power_limit_known_refused(gpu, host.power_limit_refused)
            if setting == "power_limit_w" and lock is not None and refused:
                have = current.get("locked_clocks_mhz")
                out.append(
                    Change(
                        f"gpu{gpu.index}",
                        "locked_clocks_mhz",
                        have,
                        lock,
                        "ok" if same("locked_clocks_mhz", have, lock) else "change",
                        "the profile's fallback: the driver refuses the power limit",
                    )
                )
                continue
            note = ""
            if setting == "locked_clocks_mhz" and not host.known:
                note = "NVML cannot read locked clocks back: from gpuprov's record, not available here"
            if setting == "persistence_mode" and value and host.systemd_running and unit_installed(host, PERSISTENCED):
                note = f"by {PERSISTENCED}"
            action = "ok" if same(setting, cur, value) else "change"
            if value is None and setting != "locked_clocks_mhz":  # a revert of a value NVML could not read
                action, note = "skip", "unknown before gpuprov's change (NVML could not read it): left as it is"
            out.append(Change(f"gpu{gpu.index}", setting, cur, value, action, note))
    for f in [*desired.files, *desired.serving_files]:
        state = host.files.get(f.path) if host.known else None
        if state is None or f.restore:  # a secret put back from the record: the plan holds no content to compare
            want = "as recorded (a secret)" if f.restore else _describe(f.content)
            out.append(
                Change(f.path, "content", "unknown", want, "change" if host.known else "skip", _elsewhere(f.note, host))
            )
            continue
        if f.link_target is not None or state.link_target is not None:
            have, want = _kind(state.content, state.link_target), _kind(f.content, f.link_target)
            if f.link_target is not None or f.content is not None:  # a removal's row is the content's
                out.append(Change(f.path, "type", have, want, "ok" if have == want else "change", f.note))
        if f.link_target is None:
            action = "ok" if state.content == f.content and state.link_target is None else "change"
            out.append(
                Change(
                    f.path,
                    "content",
                    _describe(state.content),
                    _describe(f.content),
                    action,
                    f.note,
                    _unified(f.path, state.content, f.content) if action == "change" and not f.secret else "",
                )
            )
        if f.content is not None and state.content is not None and state.mode != f.mode:
            out.append(Change(f.path, "mode", state.mode, f.mode, "change"))
        if (f.content is not None or f.link_target is not None) and (f.uid, f.gid) != (None, None):
            have_owner, want_owner = f"{state.uid}:{state.gid}", f"{f.uid}:{f.gid}"
            if have_owner != want_owner:
                out.append(Change(f.path, "owner", have_owner, want_owner, "change"))
    if desired.llama_cpp:
        out.append(_llama_cpp_change(desired.llama_cpp, host))
    if desired.stack:
        out.append(stack_change(desired.stack, host))
    for u in [*desired.units, *desired.serving_units]:
        unit = host.units.get(u.name)
        if unit is None or not host.known:
            out.append(
                Change(
                    u.name,
                    "enabled",
                    "unknown",
                    u.enabled,
                    "skip" if not host.known else "change",
                    _elsewhere(u.note, host),
                )
            )
            continue
        written = any(
            f.path.endswith("/" + u.name) and f.content is not None for f in [*desired.files, *desired.serving_files]
        )
        if unit.path is None and not written and u.enabled:
            out.append(Change(u.name, "enabled", "not installed", True, "skip", "unit file not installed"))
            continue
        action = "ok" if unit.enabled == u.enabled else "change"
        out.append(Change(u.name, "enabled", unit.enabled, u.enabled, action, u.note))
    return out


def _llama_cpp_change(build: dict[str, Any], host: HostState) -> Change:
    target = "CPU build" if build["cpu"] else "CUDA " + ", ".join("sm_" + a for a in build["archs"])
    subject = f"llama-cpp-python ({build['python']})"
    if not host.known:
        return Change(subject, "build", "unknown", target, "skip", "not this host")
    plan = llama_build.BuildPlan(**{k: v for k, v in build.items() if k != "shell"})
    same_build, why = llama_build.build_matches(host.llama_cpp_installed, plan)
    return Change(
        subject,
        "build",
        why if not same_build else target,
        target,
        "ok" if same_build else "change",
        "" if same_build else f"compiles with: {plan.env['CMAKE_ARGS']}",
    )


def _kind(content: str | None, link_target: str | None) -> str:
    if link_target is not None:
        return f"symlink to {link_target}"
    return "absent" if content is None else "file"


def _describe(content: str | None) -> str:
    if content is None:
        return "absent"
    lines = content.count("\n")
    return f"{lines} line{'s' if lines != 1 else ''}"
