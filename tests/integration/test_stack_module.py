"""The gpuprov_stack Ansible module on its success paths, through the real ansible-playbook with the
collection from this checkout: make an environment (changed, its result fields), the same plan again
(unchanged), check mode (would make, with uv's resolution), and state=absent (the environments gpuprov made
removed). A small real set (six) keeps it to seconds; molecule/default makes a whole llama.cpp stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import provision
from tests.integration.test_stack_build import Place

pytestmark = [pytest.mark.integration, pytest.mark.network]

REPO = Path(provision.__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SNAPSHOT = REPO / "tests/data/snapshots/rtx4090-laptop.constructed.json"

PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: The environment.
      gpuprov.gpu.gpuprov_stack:
        stack: "{{ lookup('ansible.builtin.file', stack_file) | from_json }}"
        state: "{{ stack_state }}"
        state_dir: "{{ state_dir }}"
        log: "{{ log }}"
      register: result
    - name: Write the result.
      ansible.builtin.copy:
        content: "{{ result | to_json }}"
        dest: "{{ out }}"
        mode: "0644"
      check_mode: false
"""


def run(place: Place, stack: dict, *, state: str = "present", check: bool = False) -> dict:
    (place.root / "stack.json").write_text(json.dumps(stack))
    (place.root / "play.yml").write_text(PLAYBOOK)
    out = place.root / "result.json"
    out.unlink(missing_ok=True)
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(REPO / "playbooks/collections"),
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
        "ANSIBLE_LOCAL_TEMP": str(place.root / "ansible-local"),
        "GPUPROV_NVML_REPLAY": str(SNAPSHOT),
    }
    env.pop("ANSIBLE_CONFIG", None)
    extra = {
        "ansible_python_interpreter": sys.executable,
        "stack_file": str(place.root / "stack.json"),
        "stack_state": state,
        "state_dir": str(place.state),
        "log": str(place.log),
        "out": str(out),
    }
    cmd = [str(BIN / "ansible-playbook"), "-i", "localhost,", str(place.root / "play.yml"), "-e", json.dumps(extra)]
    if check:
        cmd.append("--check")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return json.loads(out.read_text())


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Place:
    monkeypatch.setenv("GPUPROV_PYTHON_INSTALL_DIR", str(tmp_path / "pythons"))
    return Place(tmp_path, tmp_path / "envs", tmp_path / "state", tmp_path / "stack.log")


def test_the_module_makes_keeps_previews_and_removes_an_environment(place: Place) -> None:
    spec = place.spec(("six",), {"six": "1.16.0"})
    stack = {**spec.to_dict(), "state": "create", "why": "test", "current_set": {}}

    would = run(place, stack, check=True)
    assert would["changed"] and not place.link.exists()
    assert would["preview"]["packages"] == {"six": "1.16.0"} and "1 packages" in would["msg"]

    made = run(place, stack)
    assert made["changed"] and made["home"] == spec.home and os.readlink(place.link) == spec.home
    assert made["installed"]["six"] == "1.16.0" and set(made["phases"]) >= {"create the environment", "prune"}
    assert made["log"] == str(place.log) and made["check"]["verdict"] in ("ok", "unknown")

    again = run(place, stack)  # the plan said create, the environment holds it already: nothing runs
    assert not again["changed"] and "already holds six 1.16.0" in again["msg"]
    assert not run(place, {**stack, "state": "ok"})["changed"]

    removed = run(place, {}, state="absent")
    assert removed["changed"] and sorted(removed["removed"]) == sorted([str(place.link), spec.home])
    assert not place.link.exists() and not Path(spec.home).exists()
    assert not run(place, {}, state="absent")["changed"]  # a second revert has nothing to do
