"""``gpuprov prune --apply`` on throw-away projects with the real uv: removal the right way for each
kind of project, verification, and rollback when a use nothing can see breaks the project.

Offline tests build a real virtualenv (``uv venv``) and write real-format distributions into it
(tests/data/prune/sitebuild.py); the uv-project tests resolve small real packages from PyPI."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from provision.cli import main
from provision.prune.removal import uv_command

DATA = Path(__file__).resolve().parents[1] / "data" / "prune"
_spec = importlib.util.spec_from_file_location("prune_sitebuild_apply", DATA / "sitebuild.py")
assert _spec is not None and _spec.loader is not None
sitebuild = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sitebuild)


def _uv() -> list[str] | None:
    try:
        return uv_command()
    except Exception:
        return None


UV = _uv()
pytestmark = [pytest.mark.integration, pytest.mark.skipif(UV is None, reason="uv is not installed")]


def uv(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert UV is not None
    return subprocess.run([*UV, *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=600)


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def installed(venv: Path) -> set[str]:
    return {p.name.split("-")[0].lower() for p in site_packages(venv).glob("*.dist-info")}


def files_of(site: Path) -> dict[Path, bytes]:
    files = [p for p in site.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return {p.relative_to(site): p.read_bytes() for p in files}


@pytest.fixture
def requirements_project(tmp_path: Path) -> Path:
    """The seed's case as a pip-style project: requirements.txt, a uv-made venv, torchvision unused."""
    project = tmp_path / "proj"
    shutil.copytree(DATA / "projects" / "llm_runtime" / "src", project / "src")
    (project / "requirements.txt").write_text(
        "torch==2.7.1\ntorchvision==0.22.1 \\\n    --hash=sha256:0000  # vision models, never used\nnumpy\n"
    )
    uv("venv", "-q", "--python", sys.executable, ".venv", cwd=project)
    sitebuild.build_site(site_packages(project / ".venv"), "corpus", sitebuild.project_dists("llm_runtime"))
    return project


def test_environment_mode_uninstalls_and_edits_requirements(
    requirements_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = requirements_project
    code, out, _ = run(capsys, "prune", str(project), "--apply", "--json")
    payload = json.loads(out)
    assert code == 0
    assert payload["applied"]["mode"] == "environment"
    assert payload["applied"]["removed"] == ["torchvision"]
    assert payload["applied"]["orphans_removed"] == ["pillow"]
    assert (project / "requirements.txt").read_text() == "torch==2.7.1\nnumpy\n"
    left = installed(project / ".venv")
    assert "torchvision" not in left and "pillow" not in left
    assert {"torch", "numpy"} <= left
    # the project's own package was imported before and after
    assert "runtime" in payload["applied"]["checked_modules"]
    # a second run finds nothing more
    code, _, _ = run(capsys, "prune", str(project), "--json")
    assert code == 0


def test_environment_mode_rolls_back_when_a_hidden_use_breaks(
    requirements_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = requirements_project
    init = project / "src" / "runtime" / "__init__.py"
    init.write_text(init.read_text() + 'exec("import torchvision")  # a use no scanner can see\n')
    before_req = (project / "requirements.txt").read_text()
    site = site_packages(project / ".venv")
    before_files = {
        p.relative_to(site): p.read_bytes() for p in site.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }
    code, _, err = run(capsys, "prune", str(project), "--apply")
    assert code == 1
    assert "import runtime" in err and "rolled back" in err
    assert (project / "requirements.txt").read_text() == before_req
    after_files = {
        p.relative_to(site): p.read_bytes() for p in site.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }
    assert after_files == before_files
    assert not list((project / ".venv").glob(".gpuprov-prune-backup-*"))


def test_vllm_host_in_a_real_venv_keeps_torchvision(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = tmp_path / "env"
    uv("venv", "-q", "--python", sys.executable, str(env), cwd=tmp_path)
    sitebuild.build_site(site_packages(env), "corpus", sitebuild.project_dists("vllm_host"))
    project = tmp_path / "host"
    shutil.copytree(DATA / "projects" / "vllm_host", project)
    before = (project / "pyproject.toml").read_text()
    code, out, _ = run(capsys, "prune", str(project), "--python", str(env / "bin" / "python"), "--apply", "--json")
    payload = json.loads(out)
    assert code == 0 and payload["applied"] is None
    tv = next(d for d in payload["dependencies"] if d["name"] == "torchvision")
    assert tv["required_by"] == ["vllm"] and not tv["removable"]
    assert (project / "pyproject.toml").read_text() == before
    assert "torchvision" in installed(env)


UV_PROJECT = """\
[project]
name = "app"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = [
    "requests>=2.31",
    "idna",          # requests needs it: kept
    "six>=1.16",     # never imported: removed
]

[project.optional-dependencies]
docs = ["pluggy"]    # never imported: removed from the extra

[dependency-groups]
dev = ["iniconfig"]  # never imported, no tool config: removed
"""


@pytest.fixture
def uv_project(tmp_path: Path) -> Path:
    project = tmp_path / "app"
    (project / "app").mkdir(parents=True)
    (project / "pyproject.toml").write_text(UV_PROJECT)
    (project / "app" / "__init__.py").write_text("import requests\n")
    uv("sync", "-q", "--all-extras", "--python", sys.executable, cwd=project)
    return project


@pytest.mark.network
def test_uv_project_uses_uv_remove(uv_project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = uv_project
    code, out, _ = run(capsys, "prune", str(project), "--apply", "--json")
    payload = json.loads(out)
    assert code == 0
    applied = payload["applied"]
    assert applied["mode"] == "uv-project"
    assert sorted(applied["removed"]) == ["iniconfig", "pluggy", "six"]
    assert any(c.startswith("uv remove --no-sync --group dev iniconfig") for c in applied["commands"])
    assert any(c.startswith("uv remove --no-sync --optional docs pluggy") for c in applied["commands"])
    assert any(c.startswith("uv remove --no-sync six") for c in applied["commands"])
    import tomllib

    data = tomllib.loads((project / "pyproject.toml").read_text())
    assert data["project"]["dependencies"] == ["requests>=2.31", "idna"]
    assert not data["project"].get("optional-dependencies", {}).get("docs")
    lock = (project / "uv.lock").read_text()
    assert 'name = "six"' not in lock and 'name = "idna"' in lock
    left = installed(project / ".venv")
    assert not {"six", "iniconfig", "pluggy"} & left and {"requests", "idna"} <= left
    # the lock and the environment agree: a locked, exact sync changes nothing
    check = uv("sync", "--locked", "--dry-run", cwd=project)
    assert "Would uninstall" not in check.stderr + check.stdout


@pytest.mark.network
def test_uv_project_rolls_back(uv_project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = uv_project
    (project / "app" / "__init__.py").write_text('import requests\nexec("import six")\n')
    before = {f: (project / f).read_bytes() for f in ("pyproject.toml", "uv.lock")}
    code, _, err = run(capsys, "prune", str(project), "--apply")
    assert code == 1 and "rolled back" in err and "import app" in err
    assert {f: (project / f).read_bytes() for f in before} == before
    assert {"six", "iniconfig", "pluggy", "requests"} <= installed(project / ".venv")
    subprocess.run([str(project / ".venv" / "bin" / "python"), "-c", "import six, iniconfig"], check=True)
