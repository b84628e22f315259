"""The ``gpuprov`` command: a thin front door over the library.

Each subcommand lives in its own module here and registers itself on :data:`app`. Modules import
only Typer and the standard library at import time (``gpuprov --help`` must stay instant); the
library is imported inside the command functions. Every :class:`~provision.errors.GpuprovError`
is caught in :func:`main` and becomes one line on stderr and its exit code — never a traceback.
"""

from __future__ import annotations

import sys

import typer

from provision.errors import INTERRUPTED_EXIT, guarded

app = typer.Typer(
    name="gpuprov",
    help="Provision, verify and tune Linux hosts with NVIDIA GPUs for local LLM inference.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rich's help renderer costs ~0.3 s of imports
    context_settings={"help_option_names": ["-h", "--help"]},
)


#: command modules, in the order `gpuprov --help` lists them; each registers itself on `app` when imported
COMMAND_MODULES = (
    "doctor",
    "compat",
    "profiles",
    "plan",
    "apply",
    "render",
    "build",
    "fit",
    "bench",
    "monitor",
    "prune",
    "waitgpu",
)


#: each command (or command group) and the module that defines it: a run imports only its command's module
#: (tests/unit/test_cli_registry.py keeps this equal to what registering every module defines)
COMMANDS = {
    "doctor": "doctor",
    "compat": "compat",
    "profiles": "profiles",
    "plan": "plan",
    "apply": "apply",
    "revert": "apply",
    "reapply-gpu-settings": "apply",
    "render": "render",
    "build": "build",
    "fit": "fit",
    "bench": "bench",
    "monitor": "monitor",
    "exporter": "monitor",
    "prune": "prune",
    "wait-gpu": "waitgpu",
}


def _register(argv: list[str] | None = None) -> None:
    """Import the invoked command's module only (its options are parsed by it alone); every module when no
    known command is named (``--help``, a typo: Typer lists or suggests from all of them)."""
    import importlib

    args = sys.argv[1:] if argv is None else argv
    command = next((a for a in args if not a.startswith("-")), None)
    names = [COMMANDS[command]] if command in COMMANDS else COMMAND_MODULES
    for name in names:
        importlib.import_module(f"provision.cli.{name}")


def _version_callback(value: bool) -> None:
    if value:
        from provision import __version__

        typer.echo(f"gpuprov {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Provision, verify and tune Linux hosts with NVIDIA GPUs for local LLM inference."""


def main(argv: list[str] | None = None) -> None:
    def work() -> int:
        _register(argv)
        app(args=argv, prog_name="gpuprov")  # exits itself (SystemExit) with the command's code
        return 0

    try:
        # a GpuprovError: one line and its exit code; Ctrl-C before or after Typer's own handling
        # (while the commands are imported): a line and 130
        sys.exit(guarded(work))
    except SystemExit as exc:
        # Typer turns Ctrl-C in a command into a silent exit 130 (raise Exit(130) from the KeyboardInterrupt)
        if exc.code == INTERRUPTED_EXIT and isinstance(getattr(exc.__context__, "__cause__", None), KeyboardInterrupt):
            print("gpuprov: interrupted", file=sys.stderr)
        raise
