"""The import statements of a Python source read from its text, without building a syntax tree —
the scan's fast path (:mod:`~provision.prune.sourcescan` keeps :mod:`ast` for everything else).

CPython's ``ast.parse`` was three quarters of ``prune``'s first run (fastapi's 1281 files: 0.35 s of
0.48 s), while an import statement is a simple thing to read: the keyword ``import`` can stand
nowhere else in Python. So one pass of a regular expression steps over comments and strings
(single-quoted ones inside the engine, each triple-quoted one in one step) and stops only at the
keyword ``import`` in code; the statement around it is read from its line.

It answers only where it is sure and returns ``None`` otherwise, and the file is parsed with
:mod:`ast` as before: bytes that are not ASCII or UTF-8 text, a null byte, an encoding
declaration, a string or comment it cannot close, an ``import`` whose statement continues a line
ended by a backslash, starts after anything but an indentation, ``;`` or ``:``, or whose names are
not plain dotted ASCII names. On every file it answers, it gives exactly the imports the syntax
tree gives (module, line, kind) — tests/unit/test_prune_lexscan.py holds it to CPython's own parser
on the standard library and on generated sources.

What it does not do is check the rest of the grammar: a file in Python 2 (``print "x"``) that
CPython would refuse has its imports read all the same and is not listed as unparsed.
"""

from __future__ import annotations

import re

#: what a scan may step over in one go: code without quotes, ``#`` or the keyword ``import``;
#: a complete one-line string; a comment. Atomic and possessive: no backtracking, linear time.
_SKIP = re.compile(
    rb"""(?>
        [^"'\#i]++
      | \Bi | i(?!mport\b)
      | "(?!"")(?:[^"\\\n]|\\.)*+"
      | '(?!'')(?:[^'\\\n]|\\.)*+'
      | \#[^\n]*+
    )*+""",
    re.X | re.S,
)

_TRIPLE_END = {
    b'"""': re.compile(rb'(?:[^"\\]|\\.|"(?!""))*+"""', re.S),
    b"'''": re.compile(rb"(?:[^'\\]|\\.|'(?!''))*+'''", re.S),
}

_WS = rb"[ \t\f]"
#: white space inside a statement: a backslash may continue it on the next line
_SP = rb"(?:[ \t\f]|\\\r?\n)"

#: what may stand before ``import`` on its line: nothing (an indentation), a ``from`` clause, and
#: either after ``;`` or ``:`` (``try: import x``)
_BEFORE = re.compile(
    rb"(?:^|[;:])" + _WS + rb"*(?:from" + _WS + rb"+(\.*[A-Za-z_][\w.]*|\.+)" + _WS + rb"*)?\Z",
    re.M,
)

_NAME = rb"[A-Za-z_]\w*"
_DOTTED = _NAME + rb"(?:\." + _NAME + rb")*"
_ALIAS = rb"(?:" + _SP + rb"+as" + _SP + rb"+" + _NAME + rb")?"
#: the end of a simple statement: ``;``, a comment, the end of the line or of the file
_END = _WS + rb"*+(?=[;\#\r\n]|\Z)"

_IMPORT_NAMES = re.compile(
    _SP + rb"+(" + _DOTTED + _ALIAS + rb"(?:" + _SP + rb"*," + _SP + rb"*" + _DOTTED + _ALIAS + rb")*)" + _END
)
_FROM_NAMES = re.compile(
    _SP + rb"*(?:(\*)|\(((?:[\w \t\f,\r\n]|\\\r?\n|\#[^\n]*)*+)\)|" + _SP + rb"(" + _NAME + _ALIAS + rb"(?:" + _SP
    + rb"*," + _SP + rb"*" + _NAME + _ALIAS + rb")*))" + _END
)  # fmt: skip
_ITEM = re.compile(rb"\s*(" + _DOTTED + rb")(?:\s+as\s+" + _NAME + rb")?\s*")
_COMMENT = re.compile(rb"\#[^\n]*")
_CONTINUATION = re.compile(rb"\\\r?\n")
_CODING = re.compile(rb"^[ \t\f]*\#.*?coding[:=][ \t]*([-\w.]*)", re.M)
#: encoding declarations whose text this scan reads as it reads undeclared text (bytes as UTF-8)
_UTF8 = frozenset({b"utf-8", b"utf8", b"utf_8", b"utf-8-unix", b"utf-8-dos", b"utf-8-mac"})
_ASCII = frozenset({b"ascii", b"us-ascii", b"latin-1", b"latin1", b"iso-8859-1", b"iso8859-1", b"iso-latin-1"})
_KEYWORDS = frozenset(
    {b"False", b"None", b"True", b"and", b"as", b"assert", b"async", b"await", b"break", b"class", b"continue",
     b"def", b"del", b"elif", b"else", b"except", b"finally", b"for", b"from", b"global", b"if", b"import", b"in",
     b"is", b"lambda", b"nonlocal", b"not", b"or", b"pass", b"raise", b"return", b"try", b"while", b"with",
     b"yield"}
)  # fmt: skip


def _names(listed: bytes, dotted: bool) -> list[str] | None:
    """The imported names of ``a as b, c.d`` (aliases dropped); None when one is not a plain
    (``dotted``: dotted) name or is a keyword."""
    out = []
    for item in _CONTINUATION.sub(b" ", listed).split(b","):
        m = _ITEM.fullmatch(item)
        if m is None:
            return None
        name = m.group(1)
        if (not dotted and b"." in name) or any(part in _KEYWORDS for part in name.split(b".")):
            return None
        out.append(name.decode("ascii"))
    return out


def lex_imports(data: bytes) -> list[tuple[str, int, str]] | None:
    """``(module, line, kind)`` of every import statement of ``data`` in line order, as
    :func:`provision.prune.sourcescan.scan_source` records them (``from a import b`` → ``a.b``,
    kind ``import`` or ``from``; relative imports left out), or None when the text is not one it
    reads exactly."""
    found = lex(data)
    return found if isinstance(found, list) else None


def lex(data: bytes) -> list[tuple[str, int, str]] | str:
    """:func:`lex_imports`, saying why it does not answer instead of None."""
    if b"\0" in data:
        return "a null byte"
    if data.startswith(b"\xef\xbb\xbf"):
        return "a byte order mark"
    if b"\r" in data and data.count(b"\r") != data.count(b"\r\n"):
        return "a carriage return alone ends a line"
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return "not UTF-8"
    head = data[: data.find(b"\n", data.find(b"\n") + 1) + 1] if b"\n" in data else data
    declared = _CODING.search(head)
    if declared is not None:
        name = declared.group(1).lower()
        if not (name in _UTF8 or (name in _ASCII and data.isascii())):
            return "an encoding declaration"
    found: list[tuple[str, int, str]] = []
    size = len(data)
    pos, line, counted = 0, 1, 0
    skip = _SKIP.match
    while True:
        pos = skip(data, pos).end()  # type: ignore[union-attr]  # it matches everywhere (if only the empty string)
        if pos >= size:
            return found
        quote = data[pos : pos + 3]
        if quote in _TRIPLE_END:
            m = _TRIPLE_END[quote].match(data, pos + 3)
            if m is None:
                return "a triple-quoted string that does not close"
            pos = m.end()
            continue
        if not data.startswith(b"import", pos):
            return "a string that does not close on its line"
        start = data.rfind(b"\n", 0, pos) + 1
        if data[max(0, start - 3) : start].endswith((b"\\\n", b"\\\r\n")):
            return "an import on a line continued with a backslash"
        before = _BEFORE.search(data, start, pos)
        if before is None:
            return "an import after something other than an indentation, ';' or ':'"
        line += data.count(b"\n", counted, pos)
        counted = pos
        module = before.group(1)
        if module is None:
            m = _IMPORT_NAMES.match(data, pos + 6)
            names = _names(m.group(1), dotted=True) if m else None
            if m is None or names is None:
                return "an import statement of another form"
            found += [(name, line, "import") for name in names]
            pos = m.end()
            continue
        m = _FROM_NAMES.match(data, pos + 6)
        if m is None:
            return "a from-import of another form"
        if module.startswith(b"."):
            pass  # relative: the project's own code
        elif any(part in _KEYWORDS for part in module.split(b".")) or module.endswith(b"."):
            return "a from-import of another form"
        elif m.group(1):
            found.append((module.decode("ascii"), line, "from"))
        else:
            listed = m.group(3) if m.group(2) is None else _COMMENT.sub(b"", m.group(2)).rstrip(b" \t\f\r\n,\\")
            names = _names(listed, dotted=False)
            if names is None:
                return "a from-import of another form"
            text = module.decode("ascii")
            found += [(f"{text}.{name}", line, "from") for name in names]
        pos = m.end()
