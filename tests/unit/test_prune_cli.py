"""``gpuprov prune`` from the command line: another interpreter's environment (out of process),
the default interpreter choice, exit codes and the JSON contract."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import venv
from pathlib import Path

import pytest

from provision.cli import main

DATA = Path(__file__).resolve().parents[1] / "data" / "prune"
_spec = importlib.util.spec_from_file_location("prune_sitebuild_cli", DATA / "sitebuild.py")
assert _spec is not None and _spec.loader is not None
sitebuild = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sitebuild)


def make_venv(path: Path, project: str) -> Path:
    venv.create(path, with_pip=False, symlinks=True)
    site = path / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    sitebuild.build_site(site, "corpus", sitebuild.project_dists(project))
    return path / "bin" / "python"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def test_python_option_reads_another_environment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    python = make_venv(tmp_path / "venv", "vllm_host")
    code, out, _ = run(capsys, "prune", str(DATA / "projects" / "vllm_host"), "--python", str(python), "--json")
    payload = json.loads(out)
    assert code == 0 and payload["exit_code"] == 0
    assert payload["environment"]["interpreter"].startswith(str(tmp_path / "venv"))
    assert payload["environment"]["chosen_because"] == "from --python"
    tv = next(d for d in payload["dependencies"] if d["name"] == "torchvision")
    assert tv == {**tv, "status": "unused", "removable": False, "required_by": ["vllm"]}


def test_project_venv_is_the_default_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = tmp_path / "llm_runtime"
    shutil.copytree(DATA / "projects" / "llm_runtime", project)
    make_venv(project / ".venv", "llm_runtime")
    code, out, _ = run(capsys, "prune", str(project))
    assert code == 1
    assert "the project's .venv" in out and "torchvision" in out and "1 removable" in out
    code, out, _ = run(capsys, "prune", str(project), "--ignore", "torchvision", "--json")
    assert code == 0 and json.loads(out)["exit_code"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["prune", "/nonexistent/dir"], "not a directory"),
        (["prune", ".", "--python", "/nonexistent/python"], "no such file"),
        (["prune", ".", "--python", "/bin/false"], "failed to report"),
    ],
)
def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    code, _, err = run(capsys, *args)
    assert code == 2 and message in err and "Traceback" not in err


def test_bad_config_and_empty_project_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "prune", str(tmp_path), "--python", sys.executable)
    assert code == 2 and "nothing declares dependencies" in err
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n[tool.gpuprov.prune]\nignore = "torch"\n')
    code, _, err = run(capsys, "prune", str(tmp_path), "--python", sys.executable)
    assert code == 2 and "must be a list of strings" in err
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n[tool.gpuprov.prune]\nignroe = []\n')
    code, _, err = run(capsys, "prune", str(tmp_path), "--python", sys.executable)
    assert code == 2 and "unknown keys" in err
