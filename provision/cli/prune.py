"""``gpuprov prune``: declared dependencies the code never uses, which are safe to remove, and removal."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from provision.cli import app

if TYPE_CHECKING:
    from provision.prune.removal import RemovalFailed, RemovalResult


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
    if (verify or allow_relock) and not apply:
        from provision.errors import UsageError

        raise UsageError("--verify and --allow-relock only mean something with --apply")
    from provision.prune.reportcache import open_report, report_json
    from provision.prune.scancache import cache_dir

    # the whole report of an unchanged project is kept for a run that changes nothing
    interpreter, why, kept = open_report(project, python, tuple(ignore or ()), cached=not apply)
    directory = cache_dir()
    data = kept.load() if kept is not None else None  # what the report prints (PruneReport.to_dict)
    code = data["exit_code"] if data is not None else 0
    applied: RemovalResult | None = None
    failure: RemovalFailed | None = None
    if data is None:
        from provision.prune.installed import PendingEnvironment

        # started first: the target interpreter collects while this one imports the analysis and scans
        pending = PendingEnvironment(interpreter, cache_dir=directory)
        try:
            from provision.prune.analysis import analyse

            report = analyse(project, pending, interpreter_source=why, ignore=tuple(ignore or ()), cache_dir=directory)
        finally:
            pending.cancel()
        env = pending.result()
        code = report.exit_code
        if apply:
            from provision.prune.removal import RemovalFailed, apply_removal, refuse_own_environment

            refuse_own_environment(env, explicit=python is not None)
            if report.removable:
                try:
                    applied = apply_removal(report, env, verify=tuple(verify or ()), allow_relock=allow_relock)
                    code = 0
                except RemovalFailed as exc:
                    applied, failure, code = exc.result, exc, exc.exit_code
        data = report.to_dict()
        if kept is not None and pending.fingerprint is not None:
            kept.save(data, report.declared.requirements_files, pending.fingerprint)
    if as_json:
        typer.echo(report_json(data, code, applied.to_dict() if applied is not None else None))
    else:
        from provision.prune.report import render_prune

        render_prune(data)
        if applied is not None and failure is None:
            typer.echo(
                f"removed {', '.join(applied.removed + applied.orphans_removed)} ({applied.mode}); "
                f"verified: uv pip check, import of {len(applied.checked_modules)} modules"
                + (f", {len(applied.checked_commands)} commands" if applied.checked_commands else "")
            )
            if applied.failing_before:
                shown = ", ".join(applied.failing_before[:5]) + (", ..." if len(applied.failing_before) > 5 else "")
                typer.echo(
                    f"not checked: {len(applied.failing_before)} modules that did not import before the change "
                    f"either ({shown})"
                )
            if applied.relocked:
                from provision.console import printable  # uv.lock is the project's text

                changes = ", ".join(f"{n} {b or '-'} -> {a or '-'}" for n, (b, a) in sorted(applied.relocked.items()))
                typer.echo("the re-lock also changed: " + printable(changes))
            if applied.unchecked_modules:
                typer.echo(
                    "not imported by the check (their module-level code would run): "
                    + ", ".join(applied.unchecked_modules)
                )
    if failure is not None:
        raise failure  # one line on stderr, exit 1: everything was rolled back
    raise typer.Exit(code)
