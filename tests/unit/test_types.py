"""The library type-checks: ``mypy`` with the project's configuration (pyproject ``[tool.mypy]``, strict on
``provision``) finds no error. The temporary per-module overrides there name their owners."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_mypy_is_strict_on_the_library() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]
    assert config["strict"] is True
    assert config["files"] == ["provision"]
    for override in config.get("overrides", []):
        for key in ("strict", "disallow_untyped_defs", "check_untyped_defs", "warn_return_any"):
            assert override.get(key, True), f"an override weakens {key}: {override['module']}"


@pytest.mark.slow  # about 10 s from a cold cache on 2 cores, 30 s on a loaded machine; 2 s warm
def test_mypy_finds_no_error_in_provision() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy"],  # the files and settings: pyproject [tool.mypy]
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success: no issues found" in proc.stdout
