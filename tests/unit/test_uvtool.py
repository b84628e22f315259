"""One uv finder for gpuprov (prune --apply and build llama-cpp both use it)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from provision import uvtool
from provision.llama_build import run as llama_run
from provision.prune import removal


def test_finds_a_working_uv_and_both_callers_use_it() -> None:
    found = uvtool.find_uv()
    assert found is not None
    assert subprocess.run([*found, "--version"], capture_output=True, text=True, check=True).stdout.startswith("uv ")
    assert removal.uv_command() == found == llama_run.uv_command()


def test_path_then_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "uv", None)  # the uv package is not importable
    fake = tmp_path / "uv"
    fake.write_text("#!/bin/sh\necho uv 0.0.0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert uvtool.find_uv() == [str(fake)]
    fake.unlink()
    assert uvtool.find_uv() is None  # no uv, no python3 on PATH
    with pytest.raises(Exception, match="needs uv"):
        removal.uv_command()
    with pytest.raises(Exception, match="uv not found"):
        llama_run.uv_command()


def test_commands_are_shown_as_uv_whichever_way_it_was_found() -> None:
    assert removal._shown(["/opt/venv/bin/uv", "remove", "--no-sync", "six"]) == "uv remove --no-sync six"
    assert removal._shown(["/usr/bin/python3", "-m", "uv", "pip", "check"]) == "uv pip check"
    assert removal._shown(["/bin/sh", "-c", "true"]) == "/bin/sh -c true"
