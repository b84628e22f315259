"""prune's text reading of import statements (provision.prune.lexscan) against CPython's own parser:
on every file it answers, the imports must be exactly those the syntax tree gives."""

from __future__ import annotations

import ast
import sysconfig
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from provision.prune import sourcescan
from provision.prune.lexscan import lex, lex_imports
from provision.prune.scanresult import ScanResult
from provision.prune.sourcescan import scan_source


def tree_imports(data: bytes) -> list[tuple[str, int, str]]:
    """The import statements the syntax-tree scan records (import calls left out)."""
    r = ScanResult()
    sourcescan.scan_parsed(data, "x.py", r, sourcescan._trigger_lines(data))
    assert not r.unparsed
    return sorted((u.module, u.line, u.kind) for u in r.imports if u.kind in ("import", "from", "type-checking"))


def stdlib_files() -> list[Path]:
    """The running interpreter's standard library: code nobody here wrote (its tests included)."""
    root = Path(sysconfig.get_path("stdlib"))
    return sorted(p for p in root.rglob("*.py") if not {"site-packages", "dist-packages"} & set(p.parts))


def whole_scan(data: bytes, parsed: bool) -> tuple[object, ...]:
    """Everything one file's scan records, through the tree (``parsed``) or as routed by scan_source."""
    r = ScanResult()
    if parsed:
        sourcescan.scan_parsed(data, "x.py", r, sourcescan._trigger_lines(data))
    else:
        scan_source(data, "x.py", r)
    return sorted(r.imports, key=repr), sorted(r.dist_references, key=repr), r.dynamic, r.unparsed, r.strings


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::SyntaxWarning")
def test_standard_library_same_imports_as_the_parser() -> None:
    """On every file of the standard library that parses: where the text reading answers, the same
    import statements as the tree; and the whole scan as routed (text or tree) records exactly what
    the tree scan records (so the files routed past the tree hold no import, metadata or resource
    call it would have found)."""
    files = stdlib_files()
    assert len(files) > 500  # 1,790 with CPython's own tests (pyenv), 668 in Debian's python3.11
    answered, reasons, mismatched, routed_differently = 0, {}, [], []
    for path in files:
        data = path.read_bytes()
        try:
            ast.parse(data)
        except (SyntaxError, ValueError):
            continue  # the standard library's deliberately broken test files
        if whole_scan(data, parsed=False) != whole_scan(data, parsed=True):
            routed_differently.append(str(path))
        found = lex(data)
        if isinstance(found, str):
            reasons[found] = reasons.get(found, 0) + 1
            continue
        answered += 1
        if sorted(found) != tree_imports(data):
            mismatched.append(str(path))
    assert mismatched == [] and routed_differently == []
    # it answers nearly everywhere: otherwise the fast path is not the common one
    assert answered >= 0.97 * len(files), reasons


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (b"import a.b as c, d\n", [("a.b", 1, "import"), ("d", 1, "import")]),
        (b"from a.b import (c,  # why\n    d as e,\n)\n", [("a.b.c", 1, "from"), ("a.b.d", 1, "from")]),
        (b"from a import *\n", [("a", 1, "from")]),
        (b"from . import a\nfrom .b import c\nfrom .. import d\n", []),
        (b"try: import a\nexcept ImportError: a = None\n", [("a", 1, "import")]),
        (b"x = 1; import a; from b import c\n", [("a", 1, "import"), ("b.c", 1, "from")]),
        (b"from a import b, \\\n    c\n", [("a.b", 1, "from"), ("a.c", 1, "from")]),
        (b'"""\nimport not_me\n"""\nimport me\n', [("me", 4, "import")]),
        (b"s = 'import no'  # import neither\nimport yes\n", [("yes", 2, "import")]),
        (b'x = f"{y["import"]}"\nimport z\n', None),  # quotes nested in an f-string (3.12): handed back
        (b"def f():\n    import inner\n", [("inner", 2, "import")]),
        (b"import importlib\nx = __import__\n", [("importlib", 1, "import")]),
        (b"# -*- coding: utf-8 -*-\nimport caf\xc3\xa9s_ok_in_a_string_only\n", None),  # non-ASCII name
        (b"import a\r\nimport b\r\n", [("a", 1, "import"), ("b", 2, "import")]),
        (b"print 'python 2'\nimport a\n", [("a", 2, "import")]),
        (
            b"from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\n"
            b"    x = (\n1)\n    import b\nimport c\n",
            [
                ("typing.TYPE_CHECKING", 1, "from"),
                ("a", 3, "type-checking"),
                ("b", 6, "type-checking"),
                ("c", 7, "import"),
            ],
        ),
        (
            b"import typing\nif typing.TYPE_CHECKING: import a\nelse:\n    import b\n",
            [("typing", 1, "import"), ("a", 2, "type-checking"), ("b", 4, "import")],
        ),
        (
            b'if TYPE_CHECKING:  # c\n    pass\nelif TYPE_CHECKING:\n    import a\n"""doc"""\nimport b\n',
            [("a", 4, "type-checking"), ("b", 6, "import")],
        ),
    ],
)
def test_forms(source: bytes, expected: list[tuple[str, int, str]] | None) -> None:
    assert lex_imports(source) == expected


@pytest.mark.parametrize(
    ("source", "why"),
    [
        (b"import a\x00\n", "a null byte"),
        (b'x = """never closed\nimport a\n', "a triple-quoted string that does not close"),
        (b"x = 'open\nimport a\n", "a string that does not close on its line"),
        (b"from a \\\n    import b\n", "an import on a line continued with a backslash"),
        (b"import a\rimport b\r", "a carriage return alone ends a line"),
        (b"# coding: cp1252\nimport a\n", "an encoding declaration"),
        (b"x = '\xff'\nimport a\n", "not UTF-8"),
        (b"import os . path\n", "an import statement of another form"),
        (b"if TYPE_CHECKING or X:\n    import a\n", "TYPE_CHECKING named outside an import and an if-header"),
        (b"# TYPE_CHECKING\nimport a\n", "TYPE_CHECKING named outside an import and an if-header"),
    ],
)
def test_hands_back_what_it_cannot_read_exactly(source: bytes, why: str) -> None:
    assert lex(source) == why
    assert lex_imports(source) is None


def test_a_file_it_hands_back_is_still_scanned() -> None:
    r = ScanResult()
    scan_source(b"from a \\\n    import b\n", "x.py", r)
    assert [(u.module, u.kind) for u in r.imports] == [("a.b", "from")] and not r.unparsed


_pieces = st.sampled_from(
    [
        "import a\n",
        "import a.b as c, d\n",
        "from e.f import g\n",
        "from h import (i,\n    j as k,  # c\n)\n",
        "from l import m, \\\n    n\n",
        "from . import o\n",
        "from .p import q\n",
        "from r import *\n",
        "try: import s\nexcept ImportError: pass\n",
        "x = 1; import t\n",
        "if x:\n    import u\nelse:\n    import v\n",
        "def f():\n    import w\n    return w\n",
        "class C:\n    from y import z\n",
        '"""doc\nimport no1\n"""\n',
        "'''doc\nimport no2\n'''\n",
        "s = 'import no3'\n",
        's = "from no4 import x"\n',
        "# import no5\n",
        "x = '''a''' ; import aa\n",
        "y = (1,\n     2)\n",
        "z = f'{x!r}' + r'\\d' + b'\\x00'.decode()\n",
        "w = [\n    'import no6',\n]\n",
        "v = \\\n    1\n",
        "async def g():\n    await h()\n",
        "\n",
        "    \n",
        "print('import')\n",
        "importer = 1\n_import = 2\n",
        "from typing import TYPE_CHECKING\n",
        "if TYPE_CHECKING:\n    import tc1\n    from tc2 import (\nx)\n",
        "if TYPE_CHECKING: import tc3\n",
        "if TYPE_CHECKING:\n    import tc4\nelse:\n    import tc5\n",
        "def h():\n    if TYPE_CHECKING:\n        import tc6\n    import tc7\n",
        "if typing.TYPE_CHECKING:  # why\n\n    # note\n    from tc8 import y\n",
        '"""d"""\n',
    ]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_pieces, max_size=12))
@example(["x = '''a''' ; import aa\n", "from l import m, \\\n    n\n"])
def test_property_generated_sources_same_as_the_parser(pieces: list[str]) -> None:
    data = "".join(pieces).encode()
    try:
        ast.parse(data)
    except SyntaxError:
        return
    found = lex_imports(data)
    assert found is not None, lex(data)
    assert sorted(found) == tree_imports(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400) | st.text(alphabet="import fas\\\n'\"#();:.,*\r\t", max_size=200).map(str.encode))
def test_property_any_bytes_answer_or_hand_back_and_agree_when_parsed(data: bytes) -> None:
    found = lex(data)
    assert isinstance(found, str | list)
    if isinstance(found, list) and b"TYPE_CHECKING" not in data:
        try:
            ast.parse(data)
        except (SyntaxError, ValueError):
            return  # not Python: the text reading is not a grammar check
        assert sorted(found) == tree_imports(data)
