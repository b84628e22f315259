"""The one way gpuprov makes a rich console for people (JSON output needs none)."""

from __future__ import annotations

import shutil

from rich.console import Console


def make_console(*, stderr: bool = False) -> Console:
    """The terminal's width; 240 columns when output goes to a pipe or a file, where rich would use 80 and
    fold every table."""
    return Console(highlight=False, stderr=stderr, width=shutil.get_terminal_size((240, 24)).columns)
