"""The import statements of a Python source read from its text, without building a syntax tree —
the scan's fast path (:mod:`~provision.prune.sourcescan` keeps :mod:`ast` for everything else).

CPython's ``ast.parse`` was three quarters of ``prune``'s first run (fastapi's 1281 files: 0.35 s of
0.48 s), while an import statement is a simple thing to read: the keyword ``import`` can stand
nowhere else in Python. So one pass of a regular expression steps over comments and strings
(single-quoted ones inside the engine, each triple-quoted one in one step) and stops only at the
keyword ``import`` in code; the statement around it is read from its line. An import inside an
``if TYPE_CHECKING:`` block is marked as the tree scan marks it, the block's end found by its
indentation (lines inside brackets, strings or after a backslash skipped).

It answers only where it is sure and hands the file back otherwise (:func:`lex` says why), to be
parsed with :mod:`ast` as before: bytes that are not UTF-8, a null byte, a byte order mark, an
encoding declaration other than UTF-8 (or Latin-1/ASCII on ASCII text), a string it cannot close,
an ``import`` on a line continued with a backslash, after anything but an indentation, ``;`` or
``:``, or naming anything but plain dotted ASCII names, a ``TYPE_CHECKING`` named anywhere but in an
import or an ``if``/``elif`` header, a triple-quoted string inside such a block. On every file it
answers it gives exactly the imports the syntax tree gives (module, line, kind):
tests/unit/test_prune_lexscan.py holds it to CPython's own parser on the standard library and on
generated sources.

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
      | i(?!mport\b) | \Bi
      | "(?!"")(?:[^"\\\n]++|\\.)*+"
      | '(?!'')(?:[^'\\\n]++|\\.)*+'
      | \#[^\n]*+
    )*+""",
    re.X | re.S,
)

#: one string or comment, for the step over one that reaches past the scan's limit
_SKIP_ONE = re.compile(rb"""[rRbBuUfF]*"(?!"")(?:[^"\\\n]++|\\.)*+"|'(?!'')(?:[^'\\\n]++|\\.)*+'|\#[^\n]*+""", re.S)

_TRIPLE_END = {
    b'"""': re.compile(rb'(?:[^"\\]++|\\.|"(?!""))*+"""', re.S),
    b"'''": re.compile(rb"(?:[^'\\]++|\\.|'(?!''))*+'''", re.S),
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


def _last_import_word(data: bytes) -> int:
    """Where the last ``import`` that stands as a word begins (-6 when none: the scan reads nothing)."""
    at = data.rfind(b"import")
    while at >= 0:
        before = data[at - 1 : at] if at else b" "
        after = data[at + 6 : at + 7] or b" "
        if not (before.isalnum() or before == b"_" or after.isalnum() or after == b"_"):
            return at
        at = data.rfind(b"import", 0, at)
    return -6


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
    typing_blocks = b"TYPE_CHECKING" in data
    # nothing after the last word "import" can hold an import statement: the scan stops there (with
    # TYPE_CHECKING in the file it reads on, to know which of its mentions stand in strings)
    limit = len(data) if typing_blocks else _last_import_word(data) + 6
    pos, line, counted = 0, 1, 0
    skip = _SKIP.match
    statements: list[tuple[int, int, int]] = []  # (start, end, how many imports found before it)
    triples: list[tuple[int, int]] = []  # triple-quoted strings
    while True:
        if pos < limit:  # (a string stepped over whole may end past it)
            pos = skip(data, pos, limit).end()  # type: ignore[union-attr]  # it matches everywhere (if only "")
        if pos >= limit:
            return _mark_typing_only(data, found, statements, triples) if typing_blocks else found
        quote = data[pos : pos + 3]
        if quote in _TRIPLE_END:
            m = _TRIPLE_END[quote].match(data, pos + 3)
            if m is None:
                return "a triple-quoted string that does not close"
            triples.append((pos, m.end()))
            pos = m.end()
            continue
        if not data.startswith(b"import", pos):
            whole = _SKIP_ONE.match(data, pos)  # a string or comment the limit cut: stepped over whole
            if whole is None:
                return "a string that does not close on its line"
            pos = whole.end()
            continue
        start = data.rfind(b"\n", 0, pos) + 1
        if data[max(0, start - 3) : start].endswith((b"\\\n", b"\\\r\n")):
            return "an import on a line continued with a backslash"
        before = _BEFORE.search(data, start, pos)
        if before is None:
            return "an import after something other than an indentation, ';' or ':'"
        line += data.count(b"\n", counted, pos)
        counted = pos
        statements.append((before.end() if before.group(1) is None else data.rfind(b"from", start, pos), 0, len(found)))
        module = before.group(1)
        if module is None:
            m = _IMPORT_NAMES.match(data, pos + 6)
            names = _names(m.group(1), dotted=True) if m else None
            if m is None or names is None:
                return "an import statement of another form"
            found += [(name, line, "import") for name in names]
            pos = m.end()
            statements[-1] = (statements[-1][0], pos, statements[-1][2])
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
        statements[-1] = (statements[-1][0], pos, statements[-1][2])


_TYPE_CHECKING = re.compile(rb"\bTYPE_CHECKING\b")
#: ``if TYPE_CHECKING:`` / ``elif typing.TYPE_CHECKING:`` — the forms the tree scan takes for one
_TYPING_HEADER = re.compile(
    rb"^([ \t\f]*)(?:el)?if" + _WS + rb"+(?:[A-Za-z_]\w*\.)*TYPE_CHECKING" + _WS + rb"*:" + _WS + rb"*+(\#[^\n]*+)?",
    re.M,
)
#: what changes the bracket depth on a line of code, and what to step over on the way
_LINE_TOKENS = re.compile(
    rb"""[rRbBuUfF]*(?:"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')|\#[^\n]*|[()\[\]{}]|\\\r?\n""", re.S
)


def _mark_typing_only(
    data: bytes,
    found: list[tuple[str, int, str]],
    statements: list[tuple[int, int, int]],
    triples: list[tuple[int, int]],
) -> list[tuple[str, int, str]] | str:
    """``found`` with the imports inside an ``if TYPE_CHECKING:`` body marked ``type-checking``, as
    the tree scan marks them. Every other mention of the name must be inside an import statement
    (``from typing import TYPE_CHECKING``); one elsewhere (a comment, a string, ``TYPE_CHECKING or
    x``) hands the file back."""
    headers = {m.start() + m.group(0).find(b"TYPE_CHECKING"): m for m in _TYPING_HEADER.finditer(data)}
    bodies: list[tuple[int, int]] = []
    for word in _TYPE_CHECKING.finditer(data):
        at = word.start()
        if any(a <= at < b for a, b, _ in statements):
            continue
        header = headers.get(at)
        if header is None or any(a <= at < b for a, b in triples):
            return "TYPE_CHECKING named outside an import and an if-header"
        body = _body(data, header, triples)
        if isinstance(body, str):
            return body
        bodies.append(body)
    marked = list(found)
    for index, (start, _, first) in enumerate(statements):
        if any(a <= start < b for a, b in bodies):
            last = statements[index + 1][2] if index + 1 < len(statements) else len(found)
            for i in range(first, last):
                module, line, _ = found[i]
                marked[i] = (module, line, "type-checking")
    return marked


def _body(data: bytes, header: re.Match[bytes], triples: list[tuple[int, int]]) -> tuple[int, int] | str:
    """Where the body of the ``if TYPE_CHECKING:`` ``header`` lies: to the end of its line when it
    goes on there, else up to the first line of code indented no deeper than the ``if`` (lines
    inside brackets, continued with a backslash or inside a string do not count)."""
    start = header.end()
    eol = data.find(b"\n", start)
    eol = len(data) if eol < 0 else eol
    if data[start:eol].strip():  # `if TYPE_CHECKING: import x` (a comment was matched by the header)
        return (start, eol)
    indent = len(header.group(1))
    depth, continued, pos = 0, False, eol + 1
    while pos < len(data):
        if any(a < pos < b for a, b in triples):  # a line inside a string that began on an earlier one
            pos = next(b for a, b in triples if a < pos < b)
            pos = data.find(b"\n", pos)
            if pos < 0:
                break
            pos += 1
            continue
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end
        text = data[pos:end]
        code = text.lstrip(b" \t\f")
        ends = depth == 0 and not continued and code and not code.startswith((b"#", b"\r"))
        if ends and len(text) - len(code) <= indent:
            return (start, pos)
        if b'"""' in text or b"'''" in text:
            return "a triple-quoted string inside a TYPE_CHECKING block"
        continued = False
        for token in _LINE_TOKENS.findall(text + b"\n"):
            if token in (b"(", b"[", b"{"):
                depth += 1
            elif token in (b")", b"]", b"}"):
                depth -= 1
            elif token.startswith(b"\\"):
                continued = True
        pos = end + 1
    return (start, len(data))


_LINE_IMPORT = re.compile(r"^\s*(?:from\s+([A-Za-z_][\w.]*)\s+import\b|import\s+([A-Za-z_][\w., \t]*))", re.M)


def line_imports(data: bytes) -> list[tuple[str, int, str]]:
    """The fallback for a file that does not parse: every line that looks like an import counts
    (kind ``unparsed-file``)."""
    text = data.decode("utf-8", errors="replace").replace("\x00", " ")
    found: list[tuple[str, int, str]] = []
    for m in _LINE_IMPORT.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        if m.group(1):
            found.append((m.group(1), line, "unparsed-file"))
        else:
            for part in m.group(2).split(","):
                name = part.strip().split()[0] if part.strip() else ""
                if re.fullmatch(r"[A-Za-z_][\w.]*", name):
                    found.append((name, line, "unparsed-file"))
    return found
