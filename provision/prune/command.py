"""``gpuprov prune``'s run: the report (served from :mod:`~provision.prune.reportcache` when the
project is unchanged, else analysed), ``--apply``'s removal, and what is printed. Typer-free: the
Typer command (:mod:`provision.cli.prune`) and the executable's front door (:mod:`provision.entry`,
which runs the plain forms without loading Typer) both call :func:`run`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from provision.prune.removal import RemovalFailed, RemovalResult
    from provision.prune.reportcache import ReportCache


def run(
    project: Path,
    *,
    as_json: bool = False,
    python: str | None = None,
    ignore: tuple[str, ...] = (),
    apply: bool = False,
    verify: tuple[str, ...] = (),
    allow_relock: bool = False,
) -> int:
    """Print the report (and what ``--apply`` did); the exit code. A refusal or a failed removal
    (rolled back) is raised as its :class:`~provision.errors.GpuprovError`."""
    if (verify or allow_relock) and not apply:
        from provision.errors import UsageError

        raise UsageError("--verify and --allow-relock only mean something with --apply")
    from provision.prune.reportcache import open_report, report_json
    from provision.prune.scancache import cache_dir

    # the whole report of an unchanged project is kept for a run that changes nothing
    interpreter, why, kept = open_report(project, python, ignore, cached=not apply)
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

            report = analyse(project, pending, interpreter_source=why, ignore=ignore, cache_dir=directory)
        finally:
            pending.cancel()
        env = pending.result()
        code = report.exit_code
        if apply:
            from provision.prune.removal import RemovalFailed, apply_removal, refuse_own_environment

            refuse_own_environment(env, explicit=python is not None)
            if report.removable:
                try:
                    applied = apply_removal(report, env, verify=verify, allow_relock=allow_relock)
                    code = 0
                except RemovalFailed as exc:
                    applied, failure, code = exc.result, exc, exc.exit_code
        data = report.to_dict()
        if kept is not None and pending.fingerprint is not None:
            kept.save(data, report.declared.requirements_files, pending.fingerprint)
    if as_json:
        print(report_json(data, code, applied.to_dict() if applied is not None else None))
    else:
        _print_table(data, kept)
        if applied is not None and failure is None:
            print(
                f"removed {', '.join(applied.removed + applied.orphans_removed)} ({applied.mode}); "
                f"verified: uv pip check, import of {len(applied.checked_modules)} modules"
                + (f", {len(applied.checked_commands)} commands" if applied.checked_commands else "")
            )
            if applied.failing_before:
                shown = ", ".join(applied.failing_before[:5]) + (", ..." if len(applied.failing_before) > 5 else "")
                print(
                    f"not checked: {len(applied.failing_before)} modules that did not import before the change "
                    f"either ({shown})"
                )
            if applied.relocked:
                from provision.console import printable  # uv.lock is the project's text

                changes = ", ".join(f"{n} {b or '-'} -> {a or '-'}" for n, (b, a) in sorted(applied.relocked.items()))
                print("the re-lock also changed: " + printable(changes))
            if applied.unchecked_modules:
                print(
                    "not imported by the check (their module-level code would run): "
                    + ", ".join(applied.unchecked_modules)
                )
    if failure is not None:
        raise failure  # one line on stderr, exit 1: everything was rolled back
    return code


def _print_table(data: dict[str, Any], kept: ReportCache | None) -> None:
    """The report's table and notes: as the report cache kept them for this terminal when it has (no
    rich import: that was most of a served re-run), else drawn by rich and kept for the next run."""
    import sys

    from provision.console import output_key

    key = output_key()
    text = kept.rendering(key) if kept is not None else None
    if text is None:
        from provision.console import rendered
        from provision.prune.report import render_prune

        text = rendered(lambda console: render_prune(data, console))
        if kept is not None:
            kept.keep_rendering(key, text)
    sys.stdout.write(text)
    sys.stdout.flush()
