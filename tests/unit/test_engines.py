"""Serving engines on PATH (ollama's version from the binary; vllm and llama-server by path only)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provision.engines import find_engines, parse_ollama_version


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("ollama version is 0.5.7\n", "0.5.7"),
        # the client alone, no server running: the warning line, then the client's version
        ("Warning: could not connect to a running Ollama instance\nWarning: client version is 0.12.3\n", "0.12.3"),
        ("ollama version is 0.6.0-rc1\n", "0.6.0-rc1"),
        ("command not found\n", None),
        ("", None),
    ],
)
def test_parse_ollama_version(text: str, version: str | None) -> None:
    assert parse_ollama_version(text) == version


@given(st.text(max_size=200))
def test_parse_ollama_version_never_raises(text: str) -> None:
    result = parse_ollama_version(text)
    assert result is None or result[0].isdigit()


def _exe(directory: Path, name: str, script: str) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)
    return path


def test_find_engines_on_path(tmp_path: Path) -> None:
    _exe(tmp_path, "ollama", 'echo "Warning: client version is 0.9.2" >&2')
    _exe(tmp_path, "vllm", "echo must not be run; exit 99")  # would import torch: only its path is reported
    found = {e.name: e for e in find_engines({"PATH": str(tmp_path)})}
    assert set(found) == {"ollama", "vllm"}
    assert found["ollama"].version == "0.9.2" and found["ollama"].path == str(tmp_path / "ollama")
    assert found["vllm"].version is None


def test_an_engine_that_hangs_or_fails_has_no_version(tmp_path: Path) -> None:
    _exe(tmp_path, "ollama", "exit 3")
    [engine] = find_engines({"PATH": str(tmp_path)})
    assert engine.version is None


def test_nothing_on_path(tmp_path: Path) -> None:
    assert find_engines({"PATH": str(tmp_path)}) == []
