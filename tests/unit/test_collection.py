"""The gpuprov.gpu collection (playbooks/collections/ansible_collections/gpuprov/gpu): its version is
gpuprov's, and its modules refuse to drive a gpuprov library of another version on the host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml

import provision
from provision.ansiblerun import collections_dir

ROOT = Path(__file__).resolve().parents[2]
COLLECTION = collections_dir() / "ansible_collections/gpuprov/gpu"


def _collection_version() -> str:
    text = (COLLECTION / "plugins/module_utils/gpuprov_library.py").read_text()
    line = next(line for line in text.splitlines() if line.startswith("COLLECTION_VERSION = "))
    return line.split("=", 1)[1].strip().strip('"')


def test_collection_gpuprov_and_the_modules_say_one_version() -> None:
    galaxy = yaml.safe_load((COLLECTION / "galaxy.yml").read_text())
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert galaxy["version"] == _collection_version() == provision.__version__ == pyproject
    assert (galaxy["namespace"], galaxy["name"]) == ("gpuprov", "gpu")


def _run_module(name: str, args: dict[str, Any], tmp_path: Path, *pythonpath: Path) -> dict[str, Any]:
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    proc = subprocess.run(
        [sys.executable, str(COLLECTION / f"plugins/modules/{name}.py"), str(args_file)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in (*pythonpath, collections_dir()))},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return json.loads(proc.stdout)


def test_a_module_refuses_a_gpuprov_of_another_version(tmp_path: Path) -> None:
    other = tmp_path / "other"
    (other / "provision").mkdir(parents=True)
    (other / "provision/__init__.py").write_text('__version__ = "0.0.9"\n')
    state = tmp_path / "state"
    result = _run_module("gpuprov_applied_profile", {"profile": "rtx4090", "state_dir": str(state)}, tmp_path, other)
    assert result["failed"] is True
    assert result["msg"].startswith(
        f"the gpuprov library on this host is version 0.0.9, the gpuprov.gpu collection is {provision.__version__}"
    )
    assert not state.exists()  # nothing done


def test_applied_profile_module_records_and_clears_the_profile(tmp_path: Path) -> None:
    from provision import applystate

    state = tmp_path / "state"
    first = _run_module("gpuprov_applied_profile", {"profile": "rtx4090", "state_dir": str(state)}, tmp_path, ROOT)
    assert (first["changed"], first["previous"]) == (True, None)
    assert applystate.applied_profile(state) == "rtx4090"
    again = _run_module("gpuprov_applied_profile", {"profile": "rtx4090", "state_dir": str(state)}, tmp_path, ROOT)
    assert again["changed"] is False
    checked = _run_module(
        "gpuprov_applied_profile", {"state_dir": str(state), "_ansible_check_mode": True}, tmp_path, ROOT
    )
    assert checked["changed"] is True and applystate.applied_profile(state) == "rtx4090"
    reverted = _run_module("gpuprov_applied_profile", {"state_dir": str(state)}, tmp_path, ROOT)
    assert (reverted["changed"], reverted["previous"]) == (True, "rtx4090")
    assert applystate.applied_profile(state) is None


def test_applied_profile_module_records_under_the_root_it_is_given(tmp_path: Path) -> None:
    """Without state_dir, the record goes where gpuprov_plan reads it (ROOT/var/lib/gpuprov), not into this
    machine's /var/lib/gpuprov: the record task is skipped when the plan read the same profile there."""
    from provision import applystate

    root = tmp_path / "root"
    root.mkdir()
    env_state = os.environ.pop(applystate.STATE_DIR_ENV, None)
    try:
        result = _run_module("gpuprov_applied_profile", {"profile": "rtx4090", "root": str(root)}, tmp_path, ROOT)
    finally:
        if env_state is not None:
            os.environ[applystate.STATE_DIR_ENV] = env_state
    assert result["changed"] is True, result
    assert applystate.applied_profile(root / "var/lib/gpuprov") == "rtx4090"
