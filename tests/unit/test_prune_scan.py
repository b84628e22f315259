"""The import scanner: each construct, and property tests that no source file crashes it."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provision.prune import imports, sourcescan
from provision.prune.imports import scan_project
from provision.prune.scanresult import ScanResult
from provision.prune.sourcescan import scan_source


def scan(text: str | bytes) -> ScanResult:
    result = ScanResult()
    scan_source(text.encode() if isinstance(text, str) else text, "m.py", result)
    return result


def names(result: ScanResult) -> dict[str, str]:
    return {u.module: u.kind for u in result.imports}


def test_constructs() -> None:
    r = scan(
        "import a.b as ab, c\n"
        "from d.e import f\n"
        "from star import *\n"
        "from . import local\n"
        "from .sub import x\n"
        "def fn():\n"
        "    import g\n"
        "    try:\n"
        "        import h\n"
        "    except ImportError:\n"
        "        h = None\n"
        "import importlib, importlib.util, importlib.metadata\n"
        "importlib.import_module('i.j')\n"
        "__import__('k')\n"
        "importlib.util.find_spec('l')\n"
        "importlib.import_module(f'plugins.m.{name}')\n"
        "importlib.import_module('.rel', package='p')\n"
        "importlib.metadata.version('Some-Dist')\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    import n\n"
    )
    got = names(r)
    assert got["a.b"] == "import" and got["c"] == "import"
    assert got["d.e.f"] == "from" and got["star"] == "from"  # `*` records the module itself
    assert got["g"] == "import" and got["h"] == "import"
    assert got["i.j"] == "import_module" and got["k"] == "__import__" and got["l"] == "find_spec"
    assert got["plugins.m"] == "dynamic-prefix"
    assert got["n"] == "type-checking"
    assert not any(m.startswith((".", "local", "sub", "rel")) for m in got)
    assert [d.distribution for d in r.dist_references] == ["Some-Dist"]
    assert r.dynamic == [] and r.unparsed == []


def test_non_literal_import_is_dynamic_but_literal_constants_are_followed() -> None:
    r = scan("import importlib\ndef load(name):\n    return importlib.import_module(name)\n")
    assert r.dynamic == ["m.py:3"]
    r = scan(
        "import importlib\nMODS = ('x.y', 'z')\n"
        "def load():\n    for mod in MODS:\n        importlib.import_module(mod)\n"
    )
    assert r.dynamic == [] and names(r) == {
        "importlib": "import",
        "x.y": "import_module (constant)",
        "z": "import_module (constant)",
    }
    # a list that is appended to at run time is no longer a known constant
    r = scan("import importlib\nMODS = ['a']\nMODS.append(x)\nfor m in MODS:\n    importlib.import_module(m)\n")
    assert r.dynamic == ["m.py:5"]
    # the same name as a parameter elsewhere does not poison another function's loop variable
    r = scan(
        "import importlib\nMODS = ['a']\ndef f(m):\n    return m\n"
        "def g():\n    for m in MODS:\n        importlib.import_module(m)\n"
    )
    assert r.dynamic == [] and "a" in names(r)


@pytest.mark.parametrize(
    "data",
    [
        b"import yaml\nprint 'py2'\n",
        b"import six\x00\n",
        b"import os\nx = '\xff\xfe'\n",
        b"\xef\xbb\xbfimport ok\n",  # BOM: parses
        b"# -*- coding: latin-1 -*-\nimport zz\nx = '\xe9'\n",  # declared encoding: parses
        b"def f(:\n    from broken import thing\n",
        b"x = " + b"(" * 5000 + b")" * 5000 + b"\nimport deep\n",
    ],
)
def test_bad_files_never_crash_and_imports_are_still_seen(data: bytes) -> None:
    r = scan(data)
    seen = names(r)
    assert seen, "every sample imports something"
    if r.unparsed:
        assert all(kind == "unparsed-file" for kind in seen.values())


def test_huge_file_goes_to_line_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sourcescan, "MAX_PARSE_BYTES", 1024)
    r = scan("import torch\n" + "x = 1\n" * 1000)
    assert r.unparsed and "larger than" in r.unparsed[0][1]
    assert names(r) == {"torch": "unparsed-file"}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_property_arbitrary_bytes_never_crash(data: bytes) -> None:
    r = scan(data)
    assert all(u.line >= 1 for u in r.imports)


_fragments = st.sampled_from(
    [
        "import a\n",
        "from b import c\n",
        "def f(:\n",
        "\x00",
        "\xff",
        "((((",
        "'''",
        "if x:\n",
        "    ",
        "importlib.import_module(x)\n",
        "__import__('q')\n",
        "async def g(): await h\n",
        "lambda: (yield)\n",
        "print 'x'\n",
        "\t",
        "\\\n",
        "# -*- coding: latin-1 -*-\n",
        "f'{",
        "try:\n  import t\nexcept ImportError: pass\n",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_fragments, max_size=30).map("".join))
def test_property_python_like_text_never_crashes(text: str) -> None:
    r = scan(text.encode("utf-8", errors="surrogatepass"))
    for u in r.imports:
        assert u.module and u.line >= 1


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.from_regex(r"[a-z]{1,8}", fullmatch=True), st.binary(max_size=300)), max_size=6))
def test_property_project_scan_never_crashes(tmp_path: Path, files: list[tuple[str, bytes]]) -> None:
    root = Path(tempfile.mkdtemp(dir=tmp_path))
    for name, body in files:
        (root / f"{name}.py").write_bytes(body)
    r = scan_project(root)
    assert r.files_scanned == len({n for n, _ in files})
    assert len(r.unparsed) <= r.files_scanned


def test_project_walk_skips_venvs_hidden_and_caches(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("import kept\n")
    for skipped in ("env", ".hidden", "__pycache__", "node_modules", "build"):
        (tmp_path / skipped).mkdir()
        (tmp_path / skipped / "x.py").write_text("import skipped\n")
    (tmp_path / "env" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    r = scan_project(tmp_path)
    assert names(r) == {"kept": "import"}
    assert "pkg" in r.first_party
    r = scan_project(tmp_path, exclude=("pkg",))
    assert names(r) == {}


def test_entry_point_strings() -> None:
    pyproject = {
        "project": {
            "scripts": {"a": "pkg.cli:main"},
            "gui-scripts": {"b": "gui.app:run"},
            "entry-points": {"x.plugins": {"p": "plug.mod:Plugin"}},
        }
    }
    text = '[project.scripts]\na = "pkg.cli:main"\n'
    got = {u.module: u for u in imports.entry_point_imports(pyproject, text)}
    assert set(got) == {"pkg.cli", "gui.app", "plug.mod"}
    assert got["pkg.cli"].where == "pyproject.toml:2"


def test_statement_only_walk_finds_imports_in_every_compound_statement() -> None:
    # no import/metadata call in this file: the scanner walks statement bodies only
    r = scan(
        "class C:\n    import in_class\n"
        "with open('x') as fh:\n    import in_with\n"
        "while False:\n    pass\nelse:\n    import in_while_else\n"
        "try:\n    pass\nexcept* ValueError:\n    import in_except_star\nfinally:\n    import in_finally\n"
        "match x:\n    case 1:\n        import in_match\n"
        "async def f():\n    async with a:\n        def g():\n            import in_nested\n"
        "for i in []:\n    if i:\n        from deep.pkg import name\n"
    )
    assert set(names(r)) == {
        "in_class",
        "in_with",
        "in_while_else",
        "in_except_star",
        "in_finally",
        "in_match",
        "in_nested",
        "deep.pkg.name",
    }


def test_notebook_code_cells_are_scanned(tmp_path: Path) -> None:
    import json

    nb = {
        "cells": [
            {"cell_type": "markdown", "source": ["import not_code\n"]},
            {"cell_type": "code", "source": ["%pip install pandas\n", "import pandas as pd\n", "!ls\n"]},
            {"cell_type": "code", "source": "from sklearn import svm\n"},
        ]
    }
    (tmp_path / "explore.ipynb").write_text(json.dumps(nb))
    (tmp_path / "broken.ipynb").write_text("{not json")
    r = scan_project(tmp_path)
    assert names(r) == {"pandas": "import", "sklearn.svm": "from"}
    assert r.files_scanned == 2


def test_nested_projects_are_not_part_of_the_scan(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("import outer\n")
    corpus = tmp_path / "tests" / "data" / "other"
    corpus.mkdir(parents=True)
    (corpus / "pyproject.toml").write_text('[project]\nname = "other"\n')
    (corpus / "x.py").write_text("import importlib, sys\nimportlib.import_module(sys.argv[1])\n")
    r = scan_project(tmp_path)
    assert names(r) == {"outer": "import"} and r.dynamic == []


def test_trigger_line_walk_finds_what_a_full_walk_finds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Expressions are walked only in statements whose lines name an import/metadata/resource call:
    on real code (gpuprov's own source and the prune corpus) that finds exactly what walking every
    expression of those files finds."""
    corpus = Path(__file__).parents[1] / "data" / "prune" / "projects"
    own = shutil.copytree(Path(sourcescan.__file__).parents[1], tmp_path / "provision")  # a still copy of it
    roots = [own, *sorted(p for p in corpus.iterdir() if p.is_dir())]
    fast = [scan_project(root) for root in roots]
    real = sourcescan._trigger_lines
    monkeypatch.setattr(sourcescan, "_trigger_lines", lambda data: None if real(data) != [] else [])
    assert [scan_project(root) for root in roots] == fast
    assert {"import_module", "find_spec", "__import__"} <= {u.kind for scan in fast for u in scan.imports}
    # a call bound to a bare name does not name its trigger where it is called: walk everything
    assert real(b"from pydoc import locate\nx = 1\nlocate('pkg.mod.X')\n") is None
    assert real(b"import importlib\n\nimportlib.import_module('x')\n") == [3]
    assert real(b"import os\n") == []


def test_literal_location_is_found_only_when_asked(tmp_path: Path) -> None:
    """The scan keeps the file of each name-like string; the line of the few that become evidence is
    read back then: the first quoted occurrence, in a notebook's code cells as they were scanned."""
    import json

    (tmp_path / "a.py").write_text(
        'x = "django.contrib"  # not the literal\nAPPS = [\n    "django.contrib.admin",\n]\n'
    )
    cells = [
        {"cell_type": "markdown", "source": ["# title"]},
        {"cell_type": "code", "source": ["%pip x\n", "m = 'yaml'\n"]},
    ]
    (tmp_path / "nb.ipynb").write_text(json.dumps({"cells": cells}))
    scan = scan_project(tmp_path)
    assert scan.strings["django.contrib.admin"] == "a.py" and scan.strings["yaml"] == "nb.ipynb"
    assert imports.literal_location(tmp_path, "a.py", "django.contrib.admin") == "a.py:3"
    assert imports.literal_location(tmp_path, "nb.ipynb", "yaml") == "nb.ipynb:2"
    assert imports.literal_location(tmp_path, "gone.py", "yaml") == "gone.py"
