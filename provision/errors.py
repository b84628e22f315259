"""The one family of errors gpuprov raises on purpose.

Each carries a one-line message meant for the user (what is wrong and how to fix it) and the exit
code the CLI uses for it. The CLI catches :class:`GpuprovError` at its edge and prints the message;
anything else is a bug.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class GpuprovError(Exception):
    """Base class: a failure the user can understand and act on."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(GpuprovError):
    """Bad input from the user: a file, a flag value, a name."""

    exit_code = 2


class SnapshotError(UsageError):
    """A snapshot file that cannot be read: missing, not JSON, wrong schema."""


#: the exit code of a command stopped by Ctrl-C (SIGINT), as shells report it: 128 + 2
INTERRUPTED_EXIT = 130


def guarded(work: Callable[[], int]) -> int:
    """``work``'s exit code; a :class:`~provision.errors.GpuprovError` becomes one line on stderr and
    its exit code, Ctrl-C a line and 130."""
    try:
        return work()
    except GpuprovError as exc:
        from provision.console import printable

        # the message may quote a file, a snapshot or a server: its control characters are shown, not sent
        print(f"gpuprov: error: {printable(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("gpuprov: interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT
