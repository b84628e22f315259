"""``gpuprov doctor``: what is here, what is wrong, how to fix it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from provision.cli import app

if TYPE_CHECKING:
    from provision.snapshot import Snapshot


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the snapshot and findings as JSON.")] = False,
    save: Annotated[
        Path | None, typer.Option("--save", metavar="FILE", help="Write the snapshot to FILE (JSON).")
    ] = None,
    redact: Annotated[
        bool,
        typer.Option(
            "--redact",
            help="Drop hostname, GPU UUIDs and serials; replace your user name, the hostname and home directories "
            "in every text (table, --json, --save). Secret environment values are never shown, with or without it.",
        ),
    ] = False,
    from_file: Annotated[
        Path | None,
        typer.Option("--from", metavar="FILE", help="Diagnose a saved snapshot instead of this host (no NVML)."),
    ] = None,
    python: Annotated[
        str | None,
        typer.Option("--python", metavar="PATH", help="Report this interpreter's environment (default: ours)."),
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Warnings count as errors for the exit code.")] = False,
) -> None:
    """Probe the GPUs, driver, CUDA and Python stack; report problems with remedies.

    Exit code: 0 no error finding, 1 at least one (with --strict: or a warning), 2 bad usage.
    """
    from provision.diagnosis import diagnose, exit_code
    from provision.errors import UsageError

    if from_file is not None and python is not None:
        raise UsageError("--from and --python do not go together: a saved snapshot already has its environment")
    if python is not None and "/" not in python:
        import shutil

        python = shutil.which(python) or python  # a command name: the interpreter PATH gives
    if python is not None and not Path(python).is_file():
        raise UsageError(f"--python {python}: no such file (give the path of a Python interpreter)")
    if from_file is not None:
        from provision import snapshotfile  # a reading's parsers: not on the live path

        snap = snapshotfile.load(from_file)
    else:
        from provision.probe import probe

        snap = probe(python=python)
    if redact:
        snap = snap.redacted()
    if save is not None:
        try:
            _as_saved(snap).save(save)
        except OSError as exc:
            raise UsageError(f"cannot write {save}: {exc.strerror or exc}") from None
    findings = diagnose(snap)
    code = exit_code(findings, strict=strict)
    if as_json:
        payload = {
            "schema_version": snap.schema_version,
            "exit_code": code,
            "findings": [f.to_dict() for f in findings],
            "snapshot": snap.to_dict(),
        }
        typer.echo(json.dumps(payload, indent=2))
    else:
        from provision.report import render_doctor

        render_doctor(snap, findings, saved_to=save)
    raise typer.Exit(code)


def _as_saved(snap: Snapshot) -> Snapshot:
    """What --save writes: a live probe becomes a recording of this machine ("recorded"); a probe of the
    replay backend keeps the origin of the snapshot it replays (a constructed one stays constructed)."""
    import dataclasses
    import os

    from provision import nvml
    from provision.replay import ReplayNvml

    if snap.origin != "live":
        return snap
    replay = os.environ.get(nvml.REPLAY_ENV)
    origin = ReplayNvml.from_state_file(replay).snapshot.origin if replay else "recorded"
    return dataclasses.replace(snap, origin=origin)
