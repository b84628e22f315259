"""The metadata collector runs inside other interpreters (``--python``): each CPython found here from
3.8 on reads a vLLM-host venv the same way, markers evaluated for that interpreter."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from provision.prune.analysis import analyse
from provision.prune.installed import read_environment

DATA = Path(__file__).resolve().parents[1] / "data" / "prune"
_spec = importlib.util.spec_from_file_location("prune_sitebuild_interp", DATA / "sitebuild.py")
assert _spec is not None and _spec.loader is not None
sitebuild = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sitebuild)

VERSIONS = ("3.8", "3.9", "3.10", "3.12", "3.13")


def find_python(version: str) -> str | None:
    """``python3.X`` that really runs: on PATH, or in a pyenv versions directory."""
    candidates = [shutil.which(f"python{version}")]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += sorted(str(p) for p in pyenv.glob(f"{version}.*/bin/python{version}"))
    for cand in candidates:
        if cand and subprocess.run([cand, "-c", "pass"], capture_output=True, check=False).returncode == 0:
            return cand
    return None


FOUND = {v: find_python(v) for v in VERSIONS}
pytestmark = pytest.mark.integration


@pytest.mark.parametrize("version", VERSIONS)
def test_collector_in_another_interpreter(tmp_path: Path, version: str) -> None:
    python = FOUND[version]
    if python is None:
        pytest.skip(f"no python{version} here")
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
    site = venv / "lib" / f"python{version}" / "site-packages"
    sitebuild.build_site(site, "corpus", sitebuild.project_dists("vllm_host"))
    env = read_environment(str(venv / "bin" / "python"))
    assert env.python_version.startswith(version + ".")
    assert env.marker_environment["python_version"] == version
    assert {"json", "asyncio", "sqlite3"} <= env.stdlib_modules
    assert env.providers("torch.nn") == {"torch"}
    by = {v.key: v for v in analyse(DATA / "projects" / "vllm_host", env).verdicts}
    assert by["torchvision"].required_by == ["vllm"] and not by["torchvision"].removable
