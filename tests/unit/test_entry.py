"""The ``gpuprov`` executable's front door (provision.entry): a served ``prune`` re-run is printed
without Typer, byte for byte what the full command prints; every other form goes to the command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provision import entry
from provision.cli import main as command
from provision.prune import reportcache

from .test_prune_reportcache import DATA, make_venv


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    shutil.copytree(DATA / "projects" / "import_styles", root)
    return root


class _Stop(Exception):
    pass


def command_arguments(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> tuple[Path, str | None, tuple[str, ...]]:
    """What the full command passes to the report cache for ``prune ARGS`` (it stops there)."""
    seen: list[tuple[Path, str | None, tuple[str, ...]]] = []

    def spy(project: Path, python: str | None, ignore: tuple[str, ...], cached: bool = True) -> None:
        seen.append((project, python, ignore))
        raise _Stop

    monkeypatch.setattr(reportcache, "open_report", spy)
    with pytest.raises(_Stop):
        command(["prune", *args])
    return seen[0]


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["proj"],
        ["--json"],
        ["proj", "--python", "/x/bin/python", "--json"],
        ["--python=/x/bin/python", "proj"],
        ["--ignore", "A", "--ignore=b", "proj", "--json", "--json"],
    ],
)
def test_plain_forms_read_as_the_command_reads_them(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    parsed = entry._parse(args)
    assert parsed is not None
    assert parsed[:3] == command_arguments(monkeypatch, args)
    assert parsed[3] == ("--json" in args)


@pytest.mark.parametrize(
    "args",
    [
        ["--apply"],
        ["proj", "--verify", "true"],
        ["--help"],
        ["-h"],
        ["a", "b"],
        ["--python"],
        ["--python", "--json"],
        ["--", "proj"],
        ["--jso"],
        [""],
    ],
)
def test_everything_else_goes_to_the_command(args: list[str]) -> None:
    assert entry._parse(args) is None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["--json", "--python", "--ignore", "=", "p", "-x", "--apply", "", "a=b"]), max_size=6))
def test_property_parse_never_fails(args: list[str]) -> None:
    parsed = entry._parse(args)
    assert parsed is None or isinstance(parsed[0], Path)


def test_plain_prune_prints_what_the_command_prints_without_typer(project: Path, tmp_path: Path) -> None:
    """First run and served re-run, text and JSON: byte for byte what the Typer command prints."""
    python = make_venv(tmp_path / "venv", "import_styles")
    env = {**os.environ, "COLUMNS": "200"}

    def run(door: str, mode: list[str], cache: str) -> tuple[str, str]:
        probe = (
            f"import sys\nfrom {door} import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    print('exit', e.code, 'typer' in sys.modules, file=sys.stderr)\n"
        )
        args = [sys.executable, "-c", probe, "prune", str(project), "--python", str(python), *mode]
        done = subprocess.run(args, env={**env, "GPUPROV_PRUNE_CACHE": cache}, capture_output=True, text=True)
        return done.stdout, done.stderr.splitlines()[-1]

    cache = str(tmp_path / "cache")
    for mode in (["--json"], []):
        reference, line = run("provision.cli", mode, "none")
        assert line == "exit 1 True" and "tqdm" in reference
        assert run("provision.entry", mode, "none") == (reference, "exit 1 False")  # analysed, no Typer
        assert run("provision.entry", mode, cache) == (reference, "exit 1 False")  # first run with a cache
        assert run("provision.entry", mode, cache) == (reference, "exit 1 False")  # served


def test_errors_are_one_line_and_the_commands_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        entry.main(["prune", str(tmp_path / "missing")])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"gpuprov: error: {tmp_path / 'missing'}: not a directory"]
