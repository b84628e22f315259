"""``gpuprov apply PROFILE`` and ``gpuprov revert``: run playbooks/local.yml with the real
ansible-playbook on this host, and summarise what each task did."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer

from provision.cli import app

CheckOption = Annotated[
    bool, typer.Option("--check", help="Ansible check mode: show what would change, change nothing.")
]
DiffOption = Annotated[bool, typer.Option("--diff", help="Ansible diff mode: show file and setting differences.")]
RootOption = Annotated[
    Path, typer.Option("--root", metavar="DIR", help="Write files and enable units in the image tree at DIR.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the per-item results as JSON.")]


def _refuse_unless_root(check: bool, command: str) -> None:
    from provision.gpusettings import running_as_root
    from provision.plantypes import PlanError

    if not check and not running_as_root():
        raise PlanError(f"{command} changes GPU settings and system files: run it with sudo, or add --check to preview")


@contextlib.contextmanager
def _progress() -> Iterator[Callable[[str], None] | None]:
    """On a terminal, a status line on stderr naming the task (and the environment's phase) running now,
    with the time since the start; elsewhere nothing (stdout, --json included, stays as it was)."""
    if not sys.stderr.isatty():
        yield None
        return
    import time

    from rich.console import Console
    from rich.markup import escape

    started = time.monotonic()
    console = Console(stderr=True)
    with console.status("starting ansible-playbook") as status:

        def show(line: str) -> None:
            elapsed = time.monotonic() - started
            status.update(f"[{elapsed:5.0f} s] {escape(line.strip())}")
            if line.startswith("  "):  # a phase of a long task (the environment): kept on screen
                console.print(f"[dim][{elapsed:5.0f} s] {escape(line.strip())}[/]")

        yield show


def _run(
    action: str,
    extra: dict[str, object],
    *,
    root: Path,
    check: bool,
    diff: bool,
    as_json: bool,
    title: str,
) -> None:
    from provision import applystate
    from provision.ansiblerun import run_playbook

    state = applystate.state_dir(root.resolve())
    extra_vars = {
        "gpuprov_gpu_action": action,
        "gpuprov_gpu_root": str(root.resolve()),
        "gpuprov_gpu_state_dir": str(state),
        "gpuprov_gpu_python": sys.executable,
        **extra,
    }
    # one apply or revert at a time (the playbook's plan checks it holds the lock); --check changes
    # nothing, so it takes none and runs beside an apply
    if not check:
        extra_vars["gpuprov_gpu_lock_pid"] = os.getpid()
    fresh = not state.exists()  # a refused first apply leaves no state directory behind
    with contextlib.nullcontext() if check else applystate.exclusive_lock(state), _progress() as progress:
        result = run_playbook("local.yml", extra_vars, check=check, diff=diff, progress=progress)
        if result.refusal is not None and fresh and not check:
            (state / applystate.LOCK_FILE).unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # only if nothing else is in it
                state.rmdir()
    if result.refusal is not None:  # the run's plan (its first task) refused before any change: exit 3
        from provision.plantypes import PlanError

        raise PlanError(result.refusal)
    # what the plan says a person must know: fallbacks, reboots, a model that cannot load
    notes = result.notes
    # which profile is in effect (profile.json) is recorded by the playbook's last task
    code = 0 if result.returncode == 0 and not result.failed else 1
    if result.refused is not None:  # the environment failed compat check: the server was not set up
        code = 3
    if as_json:
        payload = {
            "returncode": result.returncode,
            "check": check,
            "changed": result.count("changed"),
            "ok": result.count("ok"),
            "failed": len(result.failed),
            "results": [r.__dict__ for r in result.results],
            "notes": list(notes or []),
        }
        typer.echo(json.dumps(payload, indent=2, default=str))
        raise typer.Exit(code)
    from provision.console import make_console
    from provision.tuningreport import render_run

    console = make_console()
    render_run(result, console, title=title, check=check, diff=diff)
    if notes:
        from rich.markup import escape

        for note in notes:  # what the plan says a person must know: fallbacks, reboots, a model that cannot load
            style = "bold yellow" if note.startswith("WARNING") else "dim"
            console.print(f"[{style}]{escape(note)}[/]")
    if code and not result.failed:
        typer.echo(result.output[-4000:], err=True)
    raise typer.Exit(code)


@app.command()
def apply(
    profile: Annotated[str, typer.Argument(help="Profile name (see gpuprov profiles).")],
    check: CheckOption = False,
    diff: DiffOption = False,
    force: Annotated[bool, typer.Option("--force", help="Apply even if the profile does not match the GPUs.")] = False,
    root: RootOption = Path("/"),
    as_json: JsonOption = False,
) -> None:
    """Make this host match PROFILE through Ansible (playbooks/local.yml); idempotent.

    Refused before any change (exit 3): no driver, profile does not fit the GPUs (without --force),
    a power limit outside the GPU's range, a unit whose sandbox would hide what it runs (gpuprov or the
    server under /tmp or /var/tmp), not root (without --check), a stack whose versions compat check rejects
    or that no release fits this driver. Exit 3 too when the server's new environment fails compat check
    after its install (it is removed, the previous one stays, the server is not set up). Exit 1 when a
    task failed.
    """
    from provision.profiles.loader import load_profile

    load_profile(profile, root=root)  # a profile that does not load: one line, before Ansible starts
    _refuse_unless_root(check, "gpuprov apply")
    # the plan is made once, by the playbook's first task; its refusals and notes come back in the results
    _run(
        "apply",
        {"gpuprov_gpu_profile": profile, "gpuprov_gpu_force": force},
        root=root,
        check=check,
        diff=diff,
        as_json=as_json,
        title=f"apply {profile}",
    )


@app.command()
def revert(
    check: CheckOption = False,
    diff: DiffOption = False,
    root: RootOption = Path("/"),
    as_json: JsonOption = False,
) -> None:
    """Restore the state recorded before gpuprov's first change (GPU settings, files, units). Idempotent."""
    _refuse_unless_root(check, "gpuprov revert")
    from provision import applystate

    applystate.load_previous(applystate.state_dir(root.resolve()))  # a damaged record: one line, before Ansible
    _run("revert", {}, root=root, check=check, diff=diff, as_json=as_json, title="revert")


@app.command("reapply-gpu-settings", hidden=True)
def reapply_gpu_settings(
    settings_file: Annotated[Path, typer.Argument(help="GPU settings file written by apply.")],
    wait_s: Annotated[float, typer.Option("--wait-s", help="Wait this long for the GPU to be ready.")] = 120.0,
) -> None:
    """Boot-time re-apply of the GPU settings (run by gpuprov-gpu-settings.service)."""
    from provision import applystate, gpusettings

    state = applystate.state_dir()
    # not alongside an apply or revert; a state directory the sandbox cannot write holds no lock to honour
    with applystate.exclusive_lock(state, required=False):
        lines = gpusettings.reapply(settings_file, wait_s=wait_s, state_dir=state)
    for line in lines:
        typer.echo(line)
