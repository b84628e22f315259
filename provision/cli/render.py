"""``gpuprov render PROFILE --out DIR``: every file apply would write, under DIR, changing nothing else."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from provision.cli import app


@app.command("render")
def render_cmd(
    profile: Annotated[str, typer.Argument(help="Profile name (see gpuprov profiles).")],
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Write the files under DIR as if it were /.")],
    from_file: Annotated[
        Path | None,
        typer.Option("--from", metavar="FILE", help="Check the profile against a saved snapshot; adds GPU settings."),
    ] = None,
    python: Annotated[
        str | None,
        typer.Option("--python", metavar="PATH", help="Interpreter the units run gpuprov with (default: this one)."),
    ] = None,
    root: Annotated[
        Path, typer.Option("--root", metavar="DIR", help="Read profiles, virtualenvs and models from the tree at DIR.")
    ] = Path("/"),
    force: Annotated[bool, typer.Option("--force", help="With --from: even if the profile does not match.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was written as JSON.")] = False,
) -> None:
    """Units, drop-ins, sysusers entries and environment files (API keys as placeholders), for review,
    image baking and tests. Needs no GPU. Exit 2 on a bad profile, 3 when --from refuses the profile."""
    from provision import snapshotfile
    from provision.profiles.loader import load_profile
    from provision.rendertree import rendered_files, write_tree

    prof = load_profile(profile, root=root)
    snap = snapshotfile.load(from_file) if from_file is not None else None
    result = rendered_files(prof, python=python or sys.executable, snapshot=snap, root=root, force=force)
    written = write_tree(result, out)
    if as_json:
        typer.echo(json.dumps({**result.to_dict(), "out": str(out)}, indent=2))
        return
    for f, path in zip(result.files, written, strict=True):
        typer.echo(f"{path}  ({f.mode}) {f.note}")
    for note in result.notes:
        typer.echo(f"note: {note}")
    if not result.files:
        typer.echo(f"profile {profile} writes no files without a snapshot (give --from FILE)")
