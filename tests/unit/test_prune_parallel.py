"""prune's scan split over forked processes (``imports._scan_files``): the same result as one process,
file for file, and a child that fails leaves its files to the parent instead of losing them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from provision.prune import imports
from provision.prune.scanresult import ScanResult

ROOT = Path(__file__).resolve().parents[2]
PROJECTS = ROOT / "tests" / "data" / "prune" / "projects"


def scan(root: Path, parallel: bool, monkeypatch: pytest.MonkeyPatch) -> ScanResult:
    monkeypatch.setattr(imports, "MIN_PARALLEL_BYTES", 0 if parallel else 1 << 62)
    monkeypatch.setattr(imports, "_processes", lambda: 3 if parallel else 1)
    return imports.scan_project(root)


@pytest.mark.parametrize(
    "root", [ROOT / "provision", *sorted(p for p in PROJECTS.iterdir() if p.is_dir())], ids=lambda p: p.name
)
def test_forked_scan_equals_one_process(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    serial = scan(root, False, monkeypatch)
    forked = scan(root, True, monkeypatch)
    assert forked == serial
    assert forked.files_scanned == serial.files_scanned > 0


def test_a_failing_child_leaves_its_files_to_the_parent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(9):
        (tmp_path / f"m{i}.py").write_text(f"import dist{i}\nimport importlib\nimportlib.import_module('x{i}')\n")
    (tmp_path / "broken.py").write_text("x = '''never closed\nimport six\n")
    serial = scan(tmp_path, False, monkeypatch)
    parent = os.getpid()
    real = imports._scan_file

    def dies_in_child(path: str, rel: str) -> dict[str, object]:
        if os.getpid() != parent:
            raise MemoryError  # a child that fails: exits non-zero, answers nothing
        return real(path, rel)

    monkeypatch.setattr(imports, "_scan_file", dies_in_child)
    forked = scan(tmp_path, True, monkeypatch)
    assert forked == serial
    assert {u.module for u in forked.imports} >= {f"dist{i}" for i in range(9)} | {"six"}
    assert [f for f, _ in forked.unparsed] == ["broken.py"]


def test_small_scans_stay_in_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.py").write_text("import six\n")
    monkeypatch.setattr(imports, "_processes", lambda: 4)
    monkeypatch.setattr(os, "fork", lambda: pytest.fail("forked for one small file"))
    assert [u.module for u in imports.scan_project(tmp_path).imports] == ["six"]


def test_processes_follow_the_idle_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    for load, expected in ((0.2, 2), (0.99, 2), (1.0, 1), (5.0, 1)):
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, load, load))
        assert imports._processes() == expected
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(32)))
    monkeypatch.setattr(os, "getloadavg", lambda: (2.5, 0.0, 0.0))
    assert imports._processes() == 8
