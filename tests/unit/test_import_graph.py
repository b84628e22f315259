"""provision's modules import each other without cycles (scripts/import_graph.py builds the graph from the
source: module-level and deferred imports alike, not those under ``if TYPE_CHECKING``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def _import_graph() -> ModuleType:
    spec = importlib.util.spec_from_file_location("import_graph", REPO / "scripts" / "import_graph.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_provision_has_no_import_cycle() -> None:
    ig = _import_graph()
    graph = ig.import_graph(REPO)
    assert "provision.plantypes" in graph["provision.plan"]  # the graph is read from the real tree
    found = ig.cycles(graph)
    assert not found, "import cycles: " + " | ".join(ig.describe_cycle(graph, c) for c in found)


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / "provision" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


def test_a_deferred_import_closes_a_cycle_and_type_checking_does_not(tmp_path: Path) -> None:
    ig = _import_graph()
    src = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from provision import b\n",
            "b.py": "def f():\n    from provision.a import x\n",
            "c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from provision import a\n",
            "d.py": "from provision import a\n",
        },
    )
    graph = ig.import_graph(src)
    assert graph["provision.c"] == set()
    assert ig.cycles(graph) == [["provision.a", "provision.b"]]
    text = ig.describe_cycle(graph, ["provision.a", "provision.b"])
    assert text == "provision.a -> provision.b; provision.b -> provision.a"


def test_a_submodule_import_runs_its_package(tmp_path: Path) -> None:
    """provision.pkg/__init__ importing x, x importing provision.pkg.schema: a cycle through the package."""
    ig = _import_graph()
    src = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "pkg/__init__.py": "from provision.pkg.schema import S\nfrom provision import x\n",
            "pkg/schema.py": "S = 1\n",
            "x.py": "from provision.pkg.schema import S\n",
            "y.py": "from . import x\nfrom .pkg import schema\n",
        },
    )
    graph = ig.import_graph(src)
    assert graph["provision.y"] == {"provision.x", "provision.pkg", "provision.pkg.schema"}
    assert ig.cycles(graph) == [["provision.pkg", "provision.x"]]
