"""A run imports only its command's module (``provision.cli.COMMANDS``); the table stays equal to what the
command modules define, and every command still runs from the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys

from provision.cli import COMMAND_MODULES, COMMANDS


def _defined() -> dict[str, str]:
    """Each command and group name -> the module whose import registers it, from a fresh interpreter."""
    code = """
import importlib, json
from provision.cli import app, COMMAND_MODULES
seen, out = set(), {}
for m in COMMAND_MODULES:
    importlib.import_module("provision.cli." + m)
    now = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands}
    now |= {g.name for g in app.registered_groups}
    out.update({n: m for n in now - seen})
    seen = now
print(json.dumps(out))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def test_the_table_names_every_command_and_its_module() -> None:
    assert _defined() == COMMANDS
    assert set(COMMANDS.values()) == set(COMMAND_MODULES)


def _modules_loaded(*args: str) -> tuple[int, set[str]]:
    code = (
        "import sys\nfrom provision.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code or 0\nelse:\n    code = 0\n"
        "print('\\nMODULES', sorted(m for m in sys.modules if m.startswith('provision.cli.')), code)"
    )
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    line = proc.stdout.rsplit("MODULES", 1)[1]
    names, code_text = line.rsplit("]", 1)
    return int(code_text.strip()), {n.strip(" '[") for n in names.split(",") if n.strip(" '[")}


def test_a_command_imports_only_its_own_module() -> None:
    code, loaded = _modules_loaded("prune", "--help")
    assert code == 0 and loaded == {"provision.cli.prune"}
    code, loaded = _modules_loaded("apply", "rtx4090", "--check", "--help")
    assert code == 0 and loaded == {"provision.cli.apply"}


def test_help_and_unknown_commands_see_every_command() -> None:
    code, loaded = _modules_loaded("--help")
    assert code == 0 and loaded >= {f"provision.cli.{m}" for m in COMMAND_MODULES}
    code, loaded = _modules_loaded("prnue")
    assert code == 2 and loaded >= {f"provision.cli.{m}" for m in COMMAND_MODULES}


def test_every_command_answers_help_through_the_entry_point() -> None:
    for command in COMMANDS:
        proc = subprocess.run([sys.executable, "-m", "provision", command, "--help"], capture_output=True, text=True)
        assert proc.returncode == 0, (command, proc.stderr[-500:])
        assert "Usage:" in proc.stdout and command in proc.stdout
