"""``gpuprov prune``: declared dependencies the code never uses, which are safe to remove, and removal."""

from __future__ import annotations

import json
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
) -> None:
    """Find declared dependencies the project's code never uses, and which of them nothing kept needs.

    Exit code: 0 nothing removable (or --apply removed it all), 1 something removable (or removal
    failed and was rolled back), 2 bad usage.
    """
    from provision.prune.analysis import analyse
    from provision.prune.installed import choose_interpreter, read_environment
    from provision.prune.removal import RemovalFailed, RemovalResult, apply_removal, refuse_own_environment

    interpreter, why = choose_interpreter(project, python)
    env = read_environment(interpreter)
    if apply:
        refuse_own_environment(env, explicit=python is not None)
    report = analyse(project, env, interpreter_source=why, ignore=tuple(ignore or ()))
    code = report.exit_code
    applied: RemovalResult | None = None
    failure: RemovalFailed | None = None
    if apply and report.removable:
        try:
            applied, code = apply_removal(report, env), 0
        except RemovalFailed as exc:
            applied, failure, code = exc.result, exc, exc.exit_code
    if as_json:
        payload = report.to_dict()
        payload["exit_code"] = code
        payload["applied"] = applied.to_dict() if applied is not None else None
        typer.echo(json.dumps(payload, indent=2))
    else:
        from provision.prune.report import render_prune

        render_prune(report)
        if applied is not None and failure is None:
            typer.echo(
                f"removed {', '.join(applied.removed + applied.orphans_removed)} ({applied.mode}); "
                f"verified: uv pip check, import of {len(applied.checked_modules)} modules"
            )
            if applied.unchecked_modules:
                typer.echo(
                    "not imported by the check (their module-level code would run): "
                    + ", ".join(applied.unchecked_modules)
                )
    if failure is not None:
        raise failure  # one line on stderr, exit 1: everything was rolled back
    raise typer.Exit(code)
