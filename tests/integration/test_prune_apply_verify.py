"""``gpuprov prune --apply`` verifies more than top-level imports (issue 18): every module of the
project's packages that imported cleanly before, its console scripts with ``--help``, the user's own
``--verify`` commands; and it refuses a uv project whose lock is already out of date unless
``--allow-relock``, naming the other packages that move. Real uv and real virtualenvs; the
stale-lock test resolves small real packages from PyPI."""

from __future__ import annotations

import json
import shutil
import sys
import tomllib
from pathlib import Path

import pytest

from tests.integration.test_prune_apply import DATA, UV, installed, run, site_packages, sitebuild, uv

pytestmark = [pytest.mark.integration, pytest.mark.skipif(UV is None, reason="uv is not installed")]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The seed's runtime package (torch + numpy used, torchvision unused) as a pip-style project
    with a console script, in a real venv."""
    root = tmp_path / "proj"
    shutil.copytree(DATA / "projects" / "llm_runtime" / "src", root / "src")
    (root / "requirements.txt").write_text("torch==2.7.1\ntorchvision==0.22.1\nnumpy\n")
    (root / "pyproject.toml").write_text(
        '[project]\nname = "rt"\nversion = "0"\n\n[project.scripts]\nrt = "runtime.cli:main"\n'
    )
    (root / "src" / "runtime" / "cli.py").write_text("import sys\n\n\ndef main() -> None:\n    print('usage: rt')\n")
    uv("venv", "-q", "--python", sys.executable, ".venv", cwd=root)
    sitebuild.build_site(site_packages(root / ".venv"), "corpus", sitebuild.project_dists("llm_runtime"))
    script = root / ".venv" / "bin" / "rt"
    script.write_text(
        f"#!{root / '.venv' / 'bin' / 'python'}\nimport sys\nsys.path.insert(0, {str(root / 'src')!r})\n"
        "from runtime.cli import main\nmain()\n"
    )
    script.chmod(0o755)
    return root


def snapshot(root: Path) -> dict[Path, bytes]:
    site = site_packages(root / ".venv")
    files = {p: p.read_bytes() for p in site.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    return {**files, **{p: p.read_bytes() for p in root.glob("*.t*") if p.is_file()}}


def test_a_submodule_that_breaks_rolls_back(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plugins = project / "src" / "runtime" / "plugins"
    plugins.mkdir()
    (plugins / "__init__.py").write_text("")
    (plugins / "vision.py").write_text('exec("import torchvision")  # a use no scanner can see\n')
    before = snapshot(project)
    code, _, err = run(capsys, "prune", str(project), "--apply")
    assert code == 1 and "rolled back" in err
    assert "import runtime.plugins.vision" in err and "torchvision" in err
    assert snapshot(project) == before


def test_modules_broken_before_are_not_held_against_the_removal(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "src" / "runtime" / "needs_settings.py").write_text('raise RuntimeError("configure settings first")\n')
    code, out, _ = run(capsys, "prune", str(project), "--apply", "--json")
    applied = json.loads(out)["applied"]
    assert code == 0 and applied["removed"] == ["torchvision"]
    assert applied["failing_before"] == ["runtime.needs_settings"]
    assert {"runtime", "runtime.cli"} <= set(applied["checked_modules"])
    assert applied["checked_commands"] == [f"{project / '.venv' / 'bin' / 'rt'} --help"]
    assert "torchvision" not in installed(project / ".venv")


def test_a_console_script_that_breaks_rolls_back(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "src" / "runtime" / "cli.py").write_text(
        "import sys\n\n\ndef main() -> None:\n    exec('import torchvision')\n    print('usage: rt')\n"
    )
    before = snapshot(project)
    code, _, err = run(capsys, "prune", str(project), "--apply")
    assert code == 1 and "rolled back" in err and "rt --help" in err
    assert snapshot(project) == before


def test_users_verify_command_runs_in_the_projects_environment(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(project)
    # `python` is the project's venv (only it has torchvision): passes before, fails after, rolled back
    code, _, err = run(capsys, "prune", str(project), "--apply", "--verify", "python -c 'import torchvision'")
    assert code == 1 and "rolled back" in err and "import torchvision" in err
    assert snapshot(project) == before
    # a check that already fails is refused before anything changes
    code, _, err = run(capsys, "prune", str(project), "--apply", "--verify", "exit 3")
    assert code == 2 and "fails before any change (exit 3" in err
    assert snapshot(project) == before
    code, _, err = run(capsys, "prune", str(project), "--verify", "true")
    assert code == 2 and "--apply" in err


UV_PROJECT = """\
[project]
name = "app"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["requests>=2.31", "idna", "six>=1.16"]
"""


@pytest.mark.network
def test_out_of_date_lock_is_refused_or_its_changes_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "app"
    (root / "app").mkdir(parents=True)
    (root / "pyproject.toml").write_text(UV_PROJECT)
    (root / "app" / "__init__.py").write_text("import requests\n")
    uv("sync", "-q", "--python", sys.executable, cwd=root)
    locked_idna = next(
        p["version"] for p in tomllib.loads((root / "uv.lock").read_text())["package"] if p["name"] == "idna"
    )
    # the user tightens a pin without re-locking: the lock is now stale
    (root / "pyproject.toml").write_text(UV_PROJECT.replace('"idna"', '"idna<3.7"'))
    before = {f: (root / f).read_bytes() for f in ("pyproject.toml", "uv.lock")}
    code, _, err = run(capsys, "prune", str(root), "--apply")
    assert code == 2 and "uv.lock is out of date" in err and "--allow-relock" in err
    assert f"idna v{locked_idna} -> v3.6" in err
    assert {f: (root / f).read_bytes() for f in before} == before
    assert "six" in installed(root / ".venv")

    code, out, _ = run(capsys, "prune", str(root), "--apply", "--allow-relock", "--json")
    applied = json.loads(out)["applied"]
    assert code == 0 and applied["removed"] == ["six"]
    assert applied["relocked"] == {"idna": {"before": locked_idna, "after": "3.6"}}
