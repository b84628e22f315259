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
    assert not loaded & {
        "provision.prune.analysis",
        "provision.prune.declared",
        "provision.prune.sourcescan",
        "provision.prune.installed",  # choosing the interpreter needs none of the environment reading
    }


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


def test_a_served_text_rerun_writes_the_kept_table_without_rich(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The text table is kept per terminal setting: a re-run under the same one writes the same
    bytes without importing rich; another width or colour setting is drawn again, as an uncached run
    draws it, and kept beside the first."""
    python = make_venv(tmp_path / "venv", "import_styles")
    probe = (
        "import sys\nfrom provision.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m == 'rich' or m.startswith('rich.')), file=sys.stderr)"
    )
    args = [sys.executable, "-c", probe, "prune", str(project), "--python", str(python)]

    def prune(cache: str, **env: str) -> tuple[str, list[str]]:
        merged = {**os.environ, "GPUPROV_PRUNE_CACHE": cache, **env}
        for name in ("COLUMNS", "FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE"):
            if name not in env:
                merged.pop(name, None)
        proc = subprocess.run(args, env=merged, capture_output=True, text=True, check=True)
        return proc.stdout, ast.literal_eval(proc.stderr.strip().splitlines()[-1])

    cache = str(tmp_path / "cache")
    plain, _ = prune("none")
    narrow, _ = prune("none", COLUMNS="60")
    coloured, _ = prune("none", FORCE_COLOR="1")
    assert plain != narrow and "\x1b[" in coloured and "\x1b[" not in plain  # the settings do change it
    first, loaded = prune(cache)
    assert first == plain and "rich.console" in loaded  # first run: drawn by rich
    assert prune(cache) == (plain, [])  # served: the kept characters, rich not imported
    assert prune(cache, COLUMNS="60")[0] == narrow  # another width: drawn again, not the kept one
    assert prune(cache, FORCE_COLOR="1")[0] == coloured
    assert prune(cache, COLUMNS="60") == (narrow, []) and prune(cache, FORCE_COLOR="1") == (coloured, [])
    assert prune(cache) == (plain, [])  # the first one is kept beside them
    saved = json.loads(next((tmp_path / "cache").glob("report-*.json")).read_text())
    assert len(saved["renderings"]) == 3
    for width in range(61, 61 + reportcache.KEPT_RENDERINGS):
        prune(cache, COLUMNS=str(width))
    saved = json.loads(next((tmp_path / "cache").glob("report-*.json")).read_text())
    assert len(saved["renderings"]) == reportcache.KEPT_RENDERINGS  # bounded: the newest are kept
    assert prune(cache, COLUMNS="60")[1] != []  # pushed out, so drawn again


def test_the_output_key_follows_what_rich_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    from provision.console import _RICH_ENVIRONMENT, output_key

    for name in _RICH_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    before = output_key()
    assert output_key() == before and json.loads(json.dumps(before)) == before  # stable, kept as JSON
    for name in _RICH_ENVIRONMENT:
        monkeypatch.setenv(name, "1")
        assert output_key() != before, name
        monkeypatch.delenv(name)
    monkeypatch.setenv("COLUMNS", "97")
    assert [97, shutil.get_terminal_size((240, 24)).lines] in output_key()
