"""``gpuprov prune``: declared dependencies the code never uses, which are safe to remove, and removal."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from provision.cli import app


@app.command()
def prune(
    project: Annotated[Path, typer.Argument(help="The project directory (default: the current one).")] = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdicts as JSON.")] = False,
    python: Annotated[
        str | None,
        typer.Option(
            "--python",
            metavar="PATH",
            help=(
                "The project's interpreter (default: PROJECT/.venv/bin/python if present, else $VIRTUAL_ENV's, "
                "else gpuprov's own, which --apply refuses unless named here)."
            ),
        ),
    ] = None,
    ignore: Annotated[
        list[str] | None,
        typer.Option("--ignore", metavar="NAME", help="Never remove this distribution (repeatable)."),
    ] = None,
    apply: Annotated[
        bool,
        typer.Option(
            "--apply", help="Remove the safe ones (uv remove / uv pip uninstall), verify, roll back on failure."
        ),
    ] = False,
    verify: Annotated[
        list[str] | None,
        typer.Option(
            "--verify",
            metavar="CMD",
            help=(
                "With --apply: a check of yours run before and after (sh -c, the project's environment first "
                'on PATH), e.g. --verify "python manage.py check"; failing after the removal rolls it back '
                "(repeatable)."
            ),
        ),
    ] = None,
    allow_relock: Annotated[
        bool,
        typer.Option(
            "--allow-relock",
            help="With --apply: go ahead when uv.lock is already out of date (other packages may change; listed).",
        ),
    ] = False,
) -> None:
    """Find declared dependencies the project's code never uses, and which of them nothing kept needs.

    Exit code: 0 nothing removable (or --apply removed it all), 1 something removable (or removal
    failed and was rolled back), 2 bad usage or a refusal that changed nothing (an out-of-date uv.lock
    without --allow-relock, a --verify command that already fails).
    """
    from provision.prune.command import run

    code = run(
        project,
        as_json=as_json,
        python=python,
        ignore=tuple(ignore or ()),
        apply=apply,
        verify=tuple(verify or ()),
        allow_relock=allow_relock,
    )
    raise typer.Exit(code)
