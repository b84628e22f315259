"""The library type-checks: ``mypy`` with the project's configuration (pyproject ``[tool.mypy]``, strict on
``provision``) finds no error, and no per-module override there exempts a module of the library (the only
override left: third-party modules without type information)."""

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
        modules = override["module"] if isinstance(override["module"], list) else [override["module"]]
        assert not override.get("ignore_errors", False), f"an override ignores the errors of {modules}"
        for key in ("strict", "disallow_untyped_defs", "check_untyped_defs", "warn_return_any"):
            assert override.get(key, True), f"an override weakens {key}: {modules}"
        for key in ("ignore_missing_imports", "follow_imports", "follow_untyped_imports"):
            if key in override:  # only for third-party modules: the library is checked, not skipped
                assert not any(m == "provision" or m.startswith("provision.") for m in modules), (key, modules)


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
