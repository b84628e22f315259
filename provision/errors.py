"""The one family of errors gpuprov raises on purpose.

Each carries a one-line message meant for the user (what is wrong and how to fix it) and the exit
code the CLI uses for it. The CLI catches :class:`GpuprovError` at its edge and prints the message;
anything else is a bug.
"""

from __future__ import annotations


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
