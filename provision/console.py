"""How gpuprov prints for people: the one rich console, and :func:`printable` for text it did not write.

Text from a snapshot, a server or a file can hold anything: an ESC sequence that recolours or clears
the terminal, a newline that forges a line of the report ("ERROR ..."), a bidi override that reorders
what is shown. :func:`printable` turns every such character into its visible escape (``\\x1b``,
``\\n``, ``\\u202e``); it is applied where untrusted text enters (snapshot loading, error lines).
"""

from __future__ import annotations

import os
import shutil
import sys
import unicodedata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

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


def printable_copy(value: Any) -> Any:
    """``value`` with every text in it, names included, made printable: a string, or a list, tuple, dict or
    dataclass of them (a snapshot built from this host, a model read from a file). A copy; the original
    is untouched."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, list | tuple):
        return type(value)(printable_copy(item) for item in value)
    if isinstance(value, dict):
        return {printable_copy(k): printable_copy(v) for k, v in value.items()}
    import dataclasses  # here: a served ``prune`` re-run prints through this module and needs none of it

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(
            value, **{f.name: printable_copy(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        )
    return value


def inert(text: object) -> str:
    """Text that is not ours (a server's error message, a user's file name), safe to print through rich:
    :func:`printable`, and rich markup escaped, so ``[/x]`` is printed, not parsed."""
    from rich.markup import escape

    return escape(printable(str(text)))


def make_console(*, stderr: bool = False) -> Console:
    """The terminal's width; 240 columns when output goes to a pipe or a file, where rich would use 80 and
    fold every table."""
    from rich.console import Console

    return Console(highlight=False, stderr=stderr, width=_terminal_size().columns)


def _terminal_size() -> os.terminal_size:
    """The terminal's size; 240 x 24 when output goes to a pipe or a file (``$COLUMNS`` wins)."""
    return shutil.get_terminal_size((240, 24))


#: what rich reads from the environment when it decides colour, width and whether it writes to a terminal
_RICH_ENVIRONMENT = (
    "COLUMNS",
    "LINES",
    "NO_COLOR",
    "FORCE_COLOR",
    "TTY_COMPATIBLE",
    "TTY_INTERACTIVE",
    "TERM",
    "COLORTERM",
    "JUPYTER_COLUMNS",
    "JUPYTER_LINES",
    "DATABRICKS_RUNTIME_VERSION",
)


def output_key() -> list[Any]:
    """Everything besides the text that decides what :func:`make_console` writes to stdout: rich's
    installed files (path, size, ``mtime_ns`` of its package), the stream (a terminal or not, its
    encoding), the terminal's size and the environment variables rich reads. Two renderings made
    under equal keys are the same bytes, so one can be kept and written again without loading rich
    (:func:`rendered`). Nothing is imported."""
    import importlib.util

    spec = importlib.util.find_spec("rich")
    origin = spec.origin if spec is not None else None
    try:
        st = os.stat(origin or "")
        rich_file = [origin, st.st_size, st.st_mtime_ns]
    except OSError:
        rich_file = [origin, None, None]
    stream = sys.stdout
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError):
        tty = False
    size = _terminal_size()
    return [
        rich_file,
        sys.platform,
        tty,
        getattr(stream, "encoding", None),
        [size.columns, size.lines],
        [os.environ.get(name) for name in _RICH_ENVIRONMENT],
    ]


def rendered(draw: Callable[[Console], None]) -> str:
    """What ``draw`` prints on :func:`make_console`, as the characters it would write to stdout
    (colour codes included when stdout is a colour terminal), without writing them."""
    console = make_console()
    with console.capture() as capture:
        draw(console)
    return capture.get()
