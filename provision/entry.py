"""The ``gpuprov`` executable. A ``prune`` re-run on an unchanged project is answered here from the
report cache (:mod:`provision.prune.reportcache`) without loading Typer, which is most of such a
run's time (``import typer`` ~45 ms of ~70 ms); everything else — and any ``prune`` this does not
serve — goes to :func:`provision.cli.main`, which parses, checks and reports errors as always.
"""

from __future__ import annotations

import sys
from pathlib import Path

#: ``prune`` options this front door understands; any other argument hands the run to the full command
_VALUE_OPTIONS = ("--python", "--ignore")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["prune"]:
        code = served_prune(args[1:])
        if code is not None:
            sys.exit(code)
    from provision.cli import main as command

    command(argv)


def _parse(args: list[str]) -> tuple[Path, str | None, tuple[str, ...], bool] | None:
    """(project, --python, --ignore values, --json) of the plain forms; None for anything else
    (``--apply``, ``--help``, an unknown option, two projects, a missing value)."""
    project: str | None = None
    python: str | None = None
    ignore: list[str] = []
    as_json = False
    rest = iter(args)
    for arg in rest:
        name, eq, value = arg.partition("=")
        if arg == "--json":
            as_json = True
        elif name in _VALUE_OPTIONS:
            if not eq:
                value = next(rest, "")
                if not value or value.startswith("-"):
                    return None
            if name == "--python":
                python = value
            else:
                ignore.append(value)
        elif arg.startswith("-") or project is not None or not arg:
            return None
        else:
            project = arg
    return Path(project or "."), python, tuple(ignore), as_json


def served_prune(args: list[str]) -> int | None:
    """Print the saved report of an unchanged project and return the run's exit code, or None when
    it is not served (not a plain form, no saved report, anything unexpected)."""
    parsed = _parse(args)
    if parsed is None:
        return None
    project, python, ignore, as_json = parsed
    try:
        from provision.prune.reportcache import open_report, report_json

        kept = open_report(project, python, ignore, remember=True)[2]
        data = kept.load() if kept is not None else None
        if data is None:
            return None
        code = int(data["exit_code"])
        text = report_json(data, code, None) if as_json else None
    except Exception:
        return None
    if text is None:
        from provision.prune.report import render_prune

        render_prune(data)
    else:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    return code
