"""The ``gpuprov`` executable. ``gpuprov prune`` in its plain forms (a project, ``--python``,
``--ignore``, ``--json``) runs here without loading Typer — ``import typer`` is ~45 ms, most of a
re-run served from the report cache and an eighth of a first run on a large project; every other
command and form goes to :func:`provision.cli.main`, which parses, checks and reports errors as
always. Both call the same :func:`provision.prune.command.run` and fail the same way
(:func:`provision.errors.guarded`): one line on stderr and the error's exit code, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

from provision.errors import guarded

#: ``prune`` options this front door reads; any other argument hands the run to the full command
_VALUE_OPTIONS = ("--python", "--ignore")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    parsed = _parse(args[1:]) if args[:1] == ["prune"] else None
    if parsed is not None:
        project, python, ignore, as_json = parsed

        def prune() -> int:
            from provision.prune.command import run

            return run(project, as_json=as_json, python=python, ignore=ignore)

        sys.exit(guarded(prune))
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
