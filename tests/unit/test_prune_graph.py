"""The Requires-Dist walk: markers evaluated for the target interpreter, extras followed, cycles."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from provision.prune.graph import DependencyGraph
from provision.prune.installed import read_environment

DATA = Path(__file__).resolve().parents[1] / "data" / "prune"
_spec = importlib.util.spec_from_file_location("prune_sitebuild_graph", DATA / "sitebuild.py")
assert _spec is not None and _spec.loader is not None
sitebuild = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sitebuild)

# synthetic distributions (this test's own), one behaviour each
DISTS = [
    {
        "name": "app",
        "version": "1",
        "files": ["app/__init__.py"],
        "provides_extras": ["gpu"],
        "requires": [
            "base",
            "winonly ; platform_system == 'Windows'",
            "oldpy ; python_version < '3.0'",
            "gpuextra ; extra == 'gpu'",
            "cyc-a",
            "weird ; os_name == 'posix' and extra == 'gpu'",
            "not-installed-dep",
        ],
    },
    {"name": "base", "version": "1", "files": ["base/__init__.py"], "requires": ["leaf[fast]"]},
    {
        "name": "leaf",
        "version": "1",
        "files": ["leaf/__init__.py"],
        "provides_extras": ["fast"],
        "requires": ["speedup ; extra == 'fast'"],
    },
    {"name": "speedup", "version": "1", "files": ["speedup/__init__.py"]},
    {"name": "winonly", "version": "1", "files": ["winonly/__init__.py"]},
    {"name": "oldpy", "version": "1", "files": ["oldpy/__init__.py"]},
    {"name": "gpuextra", "version": "1", "files": ["gpuextra/__init__.py"]},
    {"name": "weird", "version": "1", "files": ["weird/__init__.py"]},
    {"name": "cyc-a", "version": "1", "files": ["cyc_a/__init__.py"], "requires": ["cyc-b"]},
    {"name": "cyc-b", "version": "1", "files": ["cyc_b/__init__.py"], "requires": ["cyc-a"]},
]


def graph(tmp_path: Path) -> DependencyGraph:
    site = tmp_path / "site"
    for d in DISTS:
        sitebuild.write_dist(site, d)
    return DependencyGraph(read_environment(paths=[str(site)]))


def test_markers_and_extras(tmp_path: Path) -> None:
    g = graph(tmp_path)
    plain = g.closure({"app": set()})
    assert set(plain.reached) == {"app", "base", "leaf", "speedup", "cyc-a", "cyc-b"}
    assert plain.reached["leaf"] == {"fast"}  # base asks for leaf[fast]
    assert ("app", "not-installed-dep") in plain.missing
    gpu = g.closure({"app": {"gpu"}})
    assert {"gpuextra", "weird"} <= set(gpu.reached)
    assert "winonly" not in gpu.reached and "oldpy" not in gpu.reached
    assert [e.source for e in gpu.required_by["gpuextra"]] == ["app"]
    assert gpu.required_by["gpuextra"][0].via_extra == "gpu"


def test_optional_requirers(tmp_path: Path) -> None:
    g = graph(tmp_path)
    assert g.optional_requirers("gpuextra", ["app"]) == [("app", "gpu")]
    assert g.optional_requirers("base", ["app"]) == []  # a base requirement is not optional
    assert g.optional_requirers("winonly", ["app"]) == []  # platform-gated, no extra
