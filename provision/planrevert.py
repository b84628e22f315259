"""Planning a revert: back to the state recorded before gpuprov's first change."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from provision.bootfiles import IMAGE_NOTE
from provision.plandiff import changes_for
from provision.plantypes import Desired, FileTarget, GpuSettingsTarget, HostState, TuningPlan, UnitTarget
from provision.roottree import record_type
from provision.serving.keyfiles import KEY_FILES
from provision.snapshot import Snapshot


def revert_desired(previous: dict[str, dict[str, Any]]) -> Desired:
    """The state recorded before gpuprov's first change (``applystate.load_previous``)."""
    desired = Desired("(revert)")
    for key, item in sorted(previous.get("gpus", {}).items()):
        desired.gpus.append(
            GpuSettingsTarget(
                key, int(item.get("index", 0)), str(item.get("name", "")), dict(item.get("settings") or {})
            )
        )
    for name, item in sorted(previous.get("units", {}).items()):
        enabled = bool(item.get("enabled"))
        # "now": restore whether it ran too — stop it if it was not running before, start it if it was
        # (unknown, e.g. recorded offline: leave it as it is)
        now = item.get("active") is enabled
        desired.units.append(UnitTarget(name, enabled, now=now))
    # a directory gpuprov created for one file (/etc/gpuprov) may hold others' (/etc/gpuprov/serving/...):
    # every removal tries every such directory, deepest first, and only empty ones go
    # type, link target, owner and group are in the records made since revert became exact; older records
    # have content and mode only, and revert as before (a regular file, or none)
    files = previous.get("files", {})
    created = sorted(
        {str(d) for item in files.values() if record_type(item) == "absent" for d in item.get("created_dirs") or ()},
        key=lambda d: (-d.count("/"), d),
    )
    for path, item in sorted(files.items()):
        kind = record_type(item)
        dirs = tuple(created) if kind == "absent" else ()
        link = str(item.get("link_target")) if kind == "symlink" else None
        uid, gid = (item.get("uid"), item.get("gid")) if kind != "absent" else (None, None)
        desired.files.append(
            FileTarget(
                path,
                item.get("content") if kind == "file" else None,
                str(item.get("mode") or "0644"),
                "",
                dirs,
                link,
                uid if isinstance(uid, int) else None,
                gid if isinstance(gid, int) else None,
            )
        )
        # a key file recorded by a gpuprov that did not mark secrets yet is one all the same
        secret = bool(item.get("secret")) or path in KEY_FILES
        if secret and kind != "absent":  # restored by gpuprov_file from the record itself
            desired.files[-1] = replace(desired.files[-1], content=None, link_target=None, secret=True, restore=True)
        elif secret:
            desired.files[-1] = replace(desired.files[-1], secret=True)
    if not (desired.gpus or desired.units or desired.files):
        desired.notes.append("nothing recorded: gpuprov has not changed this host")
    return desired


def make_revert_plan(snapshot: Snapshot, previous: dict[str, dict[str, Any]], host: HostState) -> TuningPlan:
    desired = revert_desired(previous)
    if host.image and desired.gpus:  # recorded on this machine's GPUs by an apply to "/": not the image's to change
        desired.notes.append(f"{IMAGE_NOTE}: the GPU settings gpuprov recorded are left alone")
        desired.gpus = []
    elif host.image:
        desired.notes.append(IMAGE_NOTE)
    return TuningPlan(desired, changes_for(snapshot, desired, host))
