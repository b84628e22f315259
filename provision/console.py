"""How gpuprov prints for people: the one rich console, and :func:`printable` for text it did not write.

Text from a snapshot, a server or a file can hold anything: an ESC sequence that recolours or clears
the terminal, a newline that forges a line of the report ("ERROR ..."), a bidi override that reorders
what is shown. :func:`printable` turns every such character into its visible escape (``\\x1b``,
``\\n``, ``\\u202e``); it is applied where untrusted text enters (snapshot loading, error lines).
"""

from __future__ import annotations

import shutil
import unicodedata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

#: what is never printed as itself: controls (C0, C1, DEL: ESC, newline, tab...), the invisible format
#: characters that reorder or hide text (bidi overrides and isolates, zero-width characters, tag
#: characters, the BOM), lone surrogates (a terminal cannot be sent them) and line/paragraph separators
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(char: str) -> str:
    if unicodedata.category(char) not in _ESCAPED_CATEGORIES:
        return char
    code = ord(char)
    return _NAMED.get(char) or (
        f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
    )


def printable(text: str) -> str:
    """``text`` with every control or invisible format character shown as its escape (``\\x1b``, ``\\n``,
    ``\\u202e``): one line of visible characters. Idempotent: the escapes themselves are printable."""
    if text.isprintable():  # the common case, at C speed: no character of those categories
        return text
    return "".join(_escape(char) for char in text)


def make_console(*, stderr: bool = False) -> Console:
    """The terminal's width; 240 columns when output goes to a pipe or a file, where rich would use 80 and
    fold every table."""
    from rich.console import Console

    return Console(highlight=False, stderr=stderr, width=shutil.get_terminal_size((240, 24)).columns)
