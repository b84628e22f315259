"""prune's per-file scan cache (path, size, mtime; invalidated by gpuprov's version and the scanner's
source): a re-run on an unchanged tree parses nothing and says the same; an edited file is read again."""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import shutil
import sys
import venv
from pathlib import Path

import pytest

from provision import pyenvrun
from provision.cli import main
from provision.prune import analysis, imports, scancache
from provision.prune.analysis import analyse
from provision.prune.installed import read_environment
from provision.prune.scancache import ScanCache, cache_dir
from provision.prune.scanresult import ScanResult

DATA = Path(__file__).resolve().parents[1] / "data" / "prune"
_spec = importlib.util.spec_from_file_location("prune_sitebuild_cache", DATA / "sitebuild.py")
assert _spec is not None and _spec.loader is not None
sitebuild = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sitebuild)


def make_venv(path: Path, project: str) -> Path:
    venv.create(path, with_pip=False, symlinks=True)
    site = path / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    sitebuild.build_site(site, "corpus", sitebuild.project_dists(project))
    return path / "bin" / "python"


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files the scanner parses, in order."""
    seen: list[str] = []
    real = imports.scan_source

    def spy(data: bytes, rel: str, result: ScanResult) -> None:
        seen.append(rel)
        real(data, rel, result)

    monkeypatch.setattr(imports, "scan_source", spy)
    return seen


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    shutil.copytree(DATA / "projects" / "import_styles", root)
    return root


def scan(root: Path, cache_root: Path) -> ScanResult:
    return imports.scan_project(root, (), ScanCache(cache_root, root))


def as_data(result: ScanResult) -> dict[str, object]:
    return {
        "imports": result.imports,
        "refs": result.dist_references,
        "dynamic": result.dynamic,
        "unparsed": result.unparsed,
        "strings": result.strings,
        "files": result.files_scanned,
    }


def test_rerun_on_unchanged_tree_parses_nothing_and_agrees(project: Path, tmp_path: Path, counted: list[str]) -> None:
    (project / "broken.py").write_text("x = '''never closed\nimport six\n")  # an unparsed file is cached too
    first = scan(project, tmp_path / "cache")
    parsed = len(counted)
    assert parsed == first.files_scanned >= 3
    second = scan(project, tmp_path / "cache")
    assert len(counted) == parsed  # nothing parsed again
    assert as_data(second) == as_data(first)
    assert any(f == "broken.py" for f, _ in second.unparsed)


def test_an_edited_file_is_scanned_again(project: Path, tmp_path: Path, counted: list[str]) -> None:
    scan(project, tmp_path / "cache")
    target = project / "src" / "styles" / "__init__.py"
    st = target.stat()
    text = target.read_text()
    # same size, new mtime: still read again
    target.write_text(text.replace("import yaml", "import toml"))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    counted.clear()
    result = scan(project, tmp_path / "cache")
    assert counted == ["src/styles/__init__.py"]
    assert "toml" in {u.module for u in result.imports} and "yaml" not in {u.module for u in result.imports}
    # a deleted file leaves the cache
    (project / "src" / "styles" / "extra.py").write_text("import six\n")
    scan(project, tmp_path / "cache")
    (project / "src" / "styles" / "extra.py").unlink()
    assert "six" not in {u.module for u in scan(project, tmp_path / "cache").imports}


def test_a_new_gpuprov_version_or_scanner_drops_the_cache(
    project: Path, tmp_path: Path, counted: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = scan(project, tmp_path / "cache")
    n = len(counted)
    monkeypatch.setattr(scancache, "__version__", "99.0")
    scan(project, tmp_path / "cache")
    assert len(counted) == 2 * n
    # an unreadable or foreign cache file is ignored, never an error
    for path in (tmp_path / "cache").iterdir():
        path.write_text("{not json")
    assert as_data(scan(project, tmp_path / "cache")) == as_data(first)
    assert len(counted) == 3 * n


def test_cache_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GPUPROV_PRUNE_CACHE", "none")
    assert cache_dir() is None
    monkeypatch.delenv("GPUPROV_PRUNE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "gpuprov" / "prune"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # ignored, as the XDG spec says
    assert cache_dir() == Path.home() / ".cache" / "gpuprov" / "prune"


def test_cli_uses_the_cache_and_writes_nothing_into_the_project(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GPUPROV_PRUNE_CACHE", str(tmp_path / "cache"))
    python = make_venv(tmp_path / "venv", "import_styles")
    before = sorted(p.relative_to(project) for p in project.rglob("*"))
    outputs = []
    for _ in range(2):
        with pytest.raises(SystemExit):
            main(["prune", str(project), "--json", "--python", str(python)])
        outputs.append(json.loads(capsys.readouterr().out))
    assert outputs[0] == outputs[1]
    assert sorted(p.relative_to(project) for p in project.rglob("*")) == before
    cached = [p for p in (tmp_path / "cache").glob("*.json") if not p.name.startswith(("env-", "report-"))]
    assert len(cached) == 1 and "src/styles/__init__.py" in json.loads(cached[0].read_text())["files"]


def test_report_with_cache_equals_report_without(project: Path, tmp_path: Path) -> None:
    env = read_environment(paths=[str(tmp_path / "empty")])
    plain = analyse(project, env).to_dict()
    assert analyse(project, env, cache_dir=tmp_path / "c").to_dict() == plain
    assert analyse(project, env, cache_dir=tmp_path / "c").to_dict() == plain


def test_another_interpreters_metadata_is_reused_until_its_site_packages_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    python = make_venv(tmp_path / "venv", "import_styles")
    calls: list[str] = []
    real = pyenvrun.RunningCollector

    def spy(py: str, call: str) -> pyenvrun.RunningCollector:
        calls.append(py)
        return real(py, call)

    monkeypatch.setattr(pyenvrun, "RunningCollector", spy)
    first = read_environment(str(python), cache_dir=tmp_path / "cache")
    again = read_environment(str(python), cache_dir=tmp_path / "cache")
    assert len(calls) == 1 and again == first
    # uninstalling a distribution removes entries from site-packages: its mtime moves, read again
    site = next((tmp_path / "venv" / "lib").glob("python3*/site-packages"))
    shutil.rmtree(next(site.glob("tqdm-*.dist-info")))
    after = read_environment(str(python), cache_dir=tmp_path / "cache")
    assert len(calls) == 2 and "tqdm" in first.dists and "tqdm" not in after.dists


def test_the_scan_pauses_the_cyclic_gc_and_restores_it(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cyclic collector, started again and again by the objects a syntax tree is built from, cost
    ~15 % of the scan's CPU time; it is paused for the parse and switched back on after, also when the
    scan fails."""
    states: list[bool] = []
    real = imports.scan_source

    def spy(data: bytes, rel: str, result: ScanResult) -> None:
        states.append(gc.isenabled())
        real(data, rel, result)

    monkeypatch.setattr(imports, "scan_source", spy)
    imports.scan_project(project)
    assert states and not any(states) and gc.isenabled()

    def boom(data: bytes, rel: str, result: ScanResult) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(imports, "scan_source", boom)
    with pytest.raises(KeyboardInterrupt):
        imports.scan_project(project)
    assert gc.isenabled()


def test_the_collector_runs_while_the_source_is_scanned(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The target interpreter's collector is started before the scan and waited for after it."""
    monkeypatch.setenv("GPUPROV_PRUNE_CACHE", str(tmp_path / "cache"))
    python = make_venv(tmp_path / "venv", "import_styles")
    events: list[str] = []
    real_start, real_result, real_scan = (
        pyenvrun.RunningCollector.__init__,
        pyenvrun.RunningCollector.result,
        analysis.scan_project,
    )

    def start(self: pyenvrun.RunningCollector, py: str, call: str) -> None:
        real_start(self, py, call)
        events.append("collector started")

    def result(self: pyenvrun.RunningCollector, timeout_s: float) -> dict[str, object]:
        events.append("collector awaited")
        return real_result(self, timeout_s)

    def scan(*args: object, **kwargs: object) -> ScanResult:
        events.append("source scanned")
        return real_scan(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pyenvrun.RunningCollector, "__init__", start)
    monkeypatch.setattr(pyenvrun.RunningCollector, "result", result)
    monkeypatch.setattr(analysis, "scan_project", scan)
    with pytest.raises(SystemExit):
        main(["prune", str(project), "--json", "--python", str(python)])
    assert events == ["collector started", "source scanned", "collector awaited"]
    report = json.loads(capsys.readouterr().out)
    assert report["environment"]["chosen_because"] == "from --python"
    assert {d["name"]: d["status"] for d in report["dependencies"]}["tqdm"] == "unused"


def test_a_refusal_during_the_scan_stops_the_running_collector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A project that declares nothing is refused while the collector may still run: it is killed,
    not left behind."""
    monkeypatch.setenv("GPUPROV_PRUNE_CACHE", "none")
    slow = tmp_path / "slow-python"
    slow.write_text("#!/bin/sh\nsleep 60\n")
    slow.chmod(0o755)
    (tmp_path / "empty").mkdir()
    started: list[pyenvrun.RunningCollector] = []
    real_start = pyenvrun.RunningCollector.__init__

    def start(self: pyenvrun.RunningCollector, py: str, call: str) -> None:
        real_start(self, py, call)
        started.append(self)

    monkeypatch.setattr(pyenvrun.RunningCollector, "__init__", start)
    with pytest.raises(SystemExit) as exc:
        main(["prune", str(tmp_path / "empty"), "--python", str(slow)])
    assert exc.value.code == 2 and "nothing declares dependencies" in capsys.readouterr().err
    assert len(started) == 1 and started[0].proc is not None and started[0].proc.returncode == -9
