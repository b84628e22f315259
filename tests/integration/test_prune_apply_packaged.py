"""``gpuprov prune --apply`` on a *packaged* project (``[build-system]``), which ``uv sync`` or
``pip install -e .`` installs into its own environment: that install's metadata lists what was
removed until it is rebuilt, and ``uv pip check`` must then pass. Offline: the dependencies are
wheels written here (tests/data/prune/backend), found with ``find-links``; the project is built by
an in-tree backend with no build requirements. Also: a flat project's root module is part of the
import check, and a failed ``--apply --json`` still prints the report."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import tomllib
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "data" / "prune"
BACKEND = DATA / "backend" / "gpuprov_test_backend.py"


def _load(name: str, path: Path):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


backend = _load("prune_test_backend_packaged", BACKEND)
# the uv runner and helpers of the other --apply tests (one definition)
from tests.integration.test_prune_apply import UV, pytestmark, run, site_packages, sitebuild, uv  # noqa: E402,F401

PYPROJECT = """\
[project]
name = "app"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = [
    "kept",
    "six",      # never imported: removed
]

[build-system]
requires = []
build-backend = "gpuprov_test_backend"
backend-path = ["_backend"]

[tool.uv]
no-index = true
find-links = ["{wheels}"]
"""


@pytest.fixture(autouse=True)
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No index, a cache of our own, and no activated environment leaking in from the caller."""
    monkeypatch.setenv("UV_OFFLINE", "1")
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))
    monkeypatch.setenv("UV_NO_PROGRESS", "1")
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)


def site_files(venv: Path) -> dict[Path, bytes]:
    site = site_packages(venv)
    files = [p for p in site.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return {p.relative_to(site): p.read_bytes() for p in files}


def app_requires(venv: Path) -> list[str]:
    meta = (site_packages(venv) / "app-0.1.0.dist-info" / "METADATA").read_text()
    return [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")]


def packaged_project(tmp_path: Path) -> Path:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    backend.write_wheel(wheels, "six", "1.17.0", files={"six.py": "X = 1\n"})
    backend.write_wheel(wheels, "kept", "1.0", files={"kept/__init__.py": ""})
    project = tmp_path / "app"
    (project / "app").mkdir(parents=True)
    (project / "_backend").mkdir()
    shutil.copy(BACKEND, project / "_backend")
    (project / "pyproject.toml").write_text(PYPROJECT.replace("{wheels}", str(wheels)))
    (project / "app" / "__init__.py").write_text("import kept\n")
    return project


@pytest.fixture
def uv_project(tmp_path: Path) -> Path:
    project = packaged_project(tmp_path)
    uv("sync", "-q", "--python", sys.executable, cwd=project)
    assert app_requires(project / ".venv") == ["kept", "six"]  # uv sync installed the project itself
    return project


def test_packaged_uv_project_applies_and_refreshes_its_own_metadata(
    uv_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = uv_project
    code, out, err = run(capsys, "prune", str(project), "--apply", "--json")
    assert code == 0, err
    applied = json.loads(out)["applied"]
    assert applied["mode"] == "uv-project" and applied["removed"] == ["six"] and applied["error"] is None
    assert applied["reinstalled"] == ["app"]
    assert any(c.startswith("uv remove --no-sync six") for c in applied["commands"])
    assert tomllib.loads((project / "pyproject.toml").read_text())["project"]["dependencies"] == ["kept"]
    assert 'name = "six"' not in (project / "uv.lock").read_text()
    venv = project / ".venv"
    assert app_requires(venv) == ["kept"]  # the editable install's metadata follows the new declarations
    assert not (site_packages(venv) / "six.py").exists()
    assert (site_packages(venv) / "_app.pth").read_text().strip() == str(project)  # still editable
    uv("pip", "check", "--python", str(venv / "bin" / "python"), cwd=project)
    check = uv("sync", "--locked", "--dry-run", cwd=project)
    assert "Would make no changes" in check.stderr + check.stdout


def test_packaged_uv_project_rolls_back_and_reports_json(uv_project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = uv_project
    (project / "app" / "__init__.py").write_text('import kept\nexec("import six")  # a use no scanner can see\n')
    before = {f: (project / f).read_bytes() for f in ("pyproject.toml", "uv.lock")}
    before_site = site_files(project / ".venv")
    code, out, err = run(capsys, "prune", str(project), "--apply", "--json")
    assert code == 1 and "rolled back" in err and "import app" in err
    payload = json.loads(out)  # the report, with the failure, is still JSON
    assert payload["exit_code"] == 1
    applied = payload["applied"]
    assert applied["rolled_back"] is True and "import app" in applied["error"]
    assert any(c.startswith("uv remove --no-sync six") for c in applied["commands"])
    assert {f: (project / f).read_bytes() for f in before} == before
    assert site_files(project / ".venv") == before_site  # six, and app's own metadata, as they were
    assert not list((project / ".venv").glob(".gpuprov-prune-backup-*"))


def test_editable_install_in_environment_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No uv.lock: pyproject is edited in place and the `pip install -e .` of the project is rebuilt."""
    project = packaged_project(tmp_path)
    uv("venv", "-q", "--python", sys.executable, ".venv", cwd=project)
    python = str(project / ".venv" / "bin" / "python")
    wheels = str(tmp_path / "wheels")
    uv("pip", "install", "-q", "--python", python, "--no-index", "--find-links", wheels, "-e", ".", cwd=project)
    assert app_requires(project / ".venv") == ["kept", "six"]
    code, out, err = run(capsys, "prune", str(project), "--apply", "--json")
    assert code == 0, err
    applied = json.loads(out)["applied"]
    assert applied["mode"] == "environment" and applied["reinstalled"] == ["app"]
    assert tomllib.loads((project / "pyproject.toml").read_text())["project"]["dependencies"] == ["kept"]
    assert app_requires(project / ".venv") == ["kept"]
    uv("pip", "check", "--python", python, cwd=project)


def test_flat_project_module_is_import_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A project of root modules only (no package): `app.py` is imported before and after, so a use
    no scanner can see rolls the removal back; `train.py`, a script, is named as not imported."""
    project = tmp_path / "flat"
    project.mkdir()
    (project / "requirements.txt").write_text("torch==2.7.1\ntorchvision==0.22.1\nnumpy\n")
    (project / "app.py").write_text('import numpy\nimport torch\n_hidden = exec("import torchvision")\n')
    (project / "train.py").write_text("import torch\nprint('training for hours')\n")
    uv("venv", "-q", "--python", sys.executable, ".venv", cwd=project)
    sitebuild.build_site(site_packages(project / ".venv"), "corpus", sitebuild.project_dists("llm_runtime"))
    before = (project / "requirements.txt").read_text()
    code, out, err = run(capsys, "prune", str(project), "--apply", "--json")
    assert code == 1 and "import app" in err and "rolled back" in err
    applied = json.loads(out)["applied"]
    assert "app" in applied["checked_modules"] and applied["unchecked_modules"] == ["train"]
    assert (project / "requirements.txt").read_text() == before
    assert (site_packages(project / ".venv") / "torchvision").is_dir()
    (project / "app.py").write_text("import numpy\nimport torch\n")
    code, out, err = run(capsys, "prune", str(project), "--apply")
    assert code == 0, err
    assert "not imported by the check (their module-level code would run): train" in out
