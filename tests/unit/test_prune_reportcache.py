"""prune's whole-report cache (:mod:`provision.prune.reportcache`): a re-run on an unchanged project
is served the saved report and prints exactly what the analysis printed; any change the report
depends on (a file, the environment, the arguments, gpuprov's code) makes it analyse again."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from provision.cli import main
from provision.prune import analysis, reportcache

DATA = Path(__file__).resolve().parents[1] / "data" / "prune"
_spec = importlib.util.spec_from_file_location("prune_sitebuild_reportcache", DATA / "sitebuild.py")
assert _spec is not None and _spec.loader is not None
sitebuild = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sitebuild)


def make_venv(path: Path, project: str) -> Path:
    venv.create(path, with_pip=False, symlinks=True)
    site = path / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    sitebuild.build_site(site, "corpus", sitebuild.project_dists(project))
    return path / "bin" / "python"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    shutil.copytree(DATA / "projects" / "import_styles", root)
    return root


@pytest.fixture
def analyses(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Each real analysis run by the CLI (a served report adds nothing)."""
    monkeypatch.setenv("GPUPROV_PRUNE_CACHE", str(tmp_path / "cache"))
    seen: list[str] = []
    real = analysis.analyse

    def spy(project: Path, *args: object, **kwargs: object) -> analysis.PruneReport:
        seen.append(project.name)
        return real(project, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(analysis, "analyse", spy)
    return seen


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(["prune", *args])
    code = exc.value.code
    return code if isinstance(code, int) else 0, capsys.readouterr().out


def test_a_rerun_is_served_and_prints_the_same(
    project: Path,
    tmp_path: Path,
    analyses: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    python = str(make_venv(tmp_path / "venv", "import_styles"))
    modes: list[list[str]] = [[], ["--json"]]
    monkeypatch.setenv("GPUPROV_PRUNE_CACHE", "none")
    plain = [run(capsys, str(project), "--python", python, *mode) for mode in modes]
    monkeypatch.setenv("GPUPROV_PRUNE_CACHE", str(tmp_path / "cache"))
    for _ in range(2):
        assert [run(capsys, str(project), "--python", python, *mode) for mode in modes] == plain
    assert analyses == ["proj"] * 3  # the two without a cache, then the first text run: the rest were served
    assert plain[1][0] == 1 and '"tqdm"' in plain[1][1]


def test_what_the_report_depends_on_makes_it_analyse_again(
    project: Path, tmp_path: Path, analyses: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    python = str(make_venv(tmp_path / "venv", "import_styles"))
    site = next((tmp_path / "venv" / "lib").glob("python3*/site-packages"))

    def status(*extra: str) -> dict[str, str]:
        _, out = run(capsys, str(project), "--python", python, "--json", *extra)
        return {d["name"]: d["status"] for d in json.loads(out)["dependencies"]}

    assert status()["tqdm"] == "unused"
    assert status()["tqdm"] == "unused" and len(analyses) == 1
    (project / "src" / "styles" / "bars.py").write_text("import tqdm\n")  # a new file
    assert status()["tqdm"] == "used" and len(analyses) == 2
    (project / "src" / "styles" / "bars.py").write_text("import os\n\n")  # an edit (size changes)
    assert status()["tqdm"] == "unused" and len(analyses) == 3
    assert status("--ignore", "tqdm") and len(analyses) == 4  # other arguments
    (project / ".github").mkdir()
    (project / ".github" / "README.md").write_text("nothing to run\n")
    assert status()["tqdm"] == "unused" and len(analyses) == 5
    assert status()["tqdm"] == "unused" and len(analyses) == 5
    os.utime(site, ns=(1, 1))  # something installed or removed: the environment's directory changed
    assert status()["tqdm"] == "unused" and len(analyses) == 6
    (project / ".github" / "ci.yml").write_text("run: tqdm --version\n")  # CI files count
    assert status()["tqdm"] != "unused" and len(analyses) == 7
    assert status() and len(analyses) == 7


def test_new_gpuprov_code_drops_the_saved_report(
    project: Path,
    tmp_path: Path,
    analyses: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    python = str(make_venv(tmp_path / "venv", "import_styles"))
    run(capsys, str(project), "--python", python)
    monkeypatch.setattr(reportcache, "code_key", lambda: "another gpuprov")
    run(capsys, str(project), "--python", python)
    assert analyses == ["proj", "proj"]


def test_apply_and_gpuprovs_own_interpreter_always_analyse(
    project: Path,
    tmp_path: Path,
    analyses: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    for _ in range(2):
        run(capsys, str(project))  # gpuprov's own interpreter: its environment has no fingerprint
    assert analyses == ["proj", "proj"]
    assert not list((tmp_path / "cache").glob("report-*.json"))


def test_a_served_rerun_loads_no_analysis_code(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of serving the report: a re-run imports neither the analysis nor ``packaging``."""
    python = make_venv(tmp_path / "venv", "import_styles")
    env = {**os.environ, "GPUPROV_PRUNE_CACHE": str(tmp_path / "cache")}
    probe = (
        "import sys\nfrom provision.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('provision.prune', 'packaging'))), file=sys.stderr)"
    )
    args = [sys.executable, "-c", probe, "prune", str(project), "--python", str(python), "--json"]
    first = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    again = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    assert again.stdout == first.stdout
    loaded = set(ast.literal_eval(again.stderr.strip().splitlines()[-1]))
    assert "provision.prune.analysis" in set(ast.literal_eval(first.stderr.strip().splitlines()[-1]))
    assert not {m for m in loaded if m.startswith("packaging.")}  # its __init__ (the version string) only
    assert not loaded & {"provision.prune.analysis", "provision.prune.declared", "provision.prune.sourcescan"}


def test_the_code_key_follows_every_prune_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "provision" / "prune"
    shutil.copytree(Path(reportcache.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyenv.py", "pyenvrun.py"):
        shutil.copy(Path(reportcache.__file__).parents[1] / name, copy.parent / name)
    monkeypatch.setattr(reportcache, "_PACKAGE", copy)
    before = reportcache.code_key()
    assert reportcache.code_key() == before
    for path in (copy / "known.py", copy.parent / "pyenv.py"):
        path.write_text(path.read_text() + "\n")
        assert reportcache.code_key() != before
        before = reportcache.code_key()
