"""``gpuprov plan PROFILE``: what applying a profile would change, computed by the function apply uses."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from provision.cli import app

if TYPE_CHECKING:
    from provision.plantypes import TuningPlan


@app.command("plan")
def plan_cmd(
    profile: Annotated[str, typer.Argument(help="Profile name (see gpuprov profiles).")],
    from_file: Annotated[
        Path | None,
        typer.Option("--from", metavar="FILE", help="Plan for a saved snapshot (another host): GPU settings only."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Plan even if the profile does not match the GPUs.")] = False,
    diff: Annotated[bool, typer.Option("--diff", help="Show the content changes of files.")] = False,
    root: Annotated[
        Path, typer.Option("--root", metavar="DIR", help="Files and units of the image tree at DIR.")
    ] = Path("/"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Per GPU and per file/unit: current -> desired. Exit 0 whether or not changes are pending;
    3 when applying would be refused (no driver, profile does not fit, power limit out of range)."""
    from provision import snapshotfile
    from provision.hoststate import gather_sections, read_host_state
    from provision.plan import make_plan
    from provision.plantypes import HostState
    from provision.probe import plan_snapshot
    from provision.profiles.loader import load_profile

    prof = load_profile(profile, root=root)
    if from_file is not None:
        snap = snapshotfile.load(from_file)
        host = gather_sections(
            HostState(known=False, systemd_running=snap.host.systemd_pid1, python=sys.executable), snap, prof
        )
    else:
        snap = plan_snapshot(root=root)  # an image tree: no NVML (its boot unit applies the GPU settings)
        host = read_host_state(snap, prof, root=root, python=sys.executable)
    result = make_plan(snap, prof, host, force=force)
    _preview_stack(result)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, default=str))
        return
    from provision.console import make_console
    from provision.tuningreport import render_plan

    render_plan(result, make_console(), diff=diff)


def _preview_stack(result: TuningPlan) -> None:
    """An environment the plan would make: what uv would install and how big it is (a resolution, nothing
    installed), and why each prune candidate stays, into the plan's notes and ``desired.stack.preview``."""
    stack = result.desired.stack
    if not stack or stack.get("state") not in ("create", "rebuild"):
        return
    from provision.stack.preview import preview
    from provision.stack.spec import StackSpec

    seen = preview(StackSpec.from_dict(stack))
    stack["preview"] = seen.to_dict()
    result.desired.notes.append(f"environment {stack['link']}: would install {seen.line()}")
    for name in stack.get("prune", []):
        if name in seen.via:
            who = ", ".join(seen.via[name])
            result.desired.notes.append(f"prune: {name} stays: {who} requires it (uv's resolution)")
        elif not seen.error:
            result.desired.notes.append(f"prune: {name} is not in the resolved set: nothing to remove")
