"""gpuprov_file with secrets, run as Ansible runs a module (its arguments in a file): an API key is made
unless the file holds one gpuprov made, its owner and mode are put right every time, and its content
never appears in the module's result (diff, message, arguments) — written, removed or restored."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from provision import apikeys, applystate
from provision.plan import revert_desired
from provision.serving.settings import PLACEHOLDER_KEY

ROOT = Path(__file__).resolve().parents[2]
COLLECTION = ROOT / "playbooks/collections/ansible_collections/gpuprov/gpu"
MODULE = COLLECTION / "plugins/modules/gpuprov_file.py"
#: the module run as a script imports gpuprov (the repository) and the collection's module_utils
PYTHONPATH = os.pathsep.join([str(ROOT), str(ROOT / "playbooks/collections")])
KEY_FILE = "/etc/gpuprov/serving/vllm.env"
PLACEHOLDER = f"VLLM_API_KEY={PLACEHOLDER_KEY}\n"
KEY_LINE = re.compile(r"VLLM_API_KEY=[A-Za-z0-9]{43}\n")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the key file is given to root (chown)")


class Tree:
    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "root"
        self.state = tmp_path / "state"
        self.args = tmp_path / "args.json"
        self.root.mkdir()
        self.outputs: list[str] = []

    @property
    def key(self) -> Path:
        return self.root / KEY_FILE.lstrip("/")

    def run(self, check: bool = False, **args: Any) -> dict[str, Any]:
        args = {"path": KEY_FILE, "root": str(self.root), "state_dir": str(self.state), **args}
        self.args.write_text(
            json.dumps({"ANSIBLE_MODULE_ARGS": {**args, "_ansible_diff": True, "_ansible_check_mode": check}})
        )
        proc = subprocess.run(
            [sys.executable, str(MODULE), str(self.args)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
            env={**os.environ, "PYTHONPATH": PYTHONPATH},
        )
        self.outputs.append(proc.stdout + proc.stderr)
        result = json.loads(proc.stdout)
        assert not result.get("failed"), result
        return result

    def make_key(self, check: bool = False) -> dict[str, Any]:
        return self.run(check=check, api_key={"env": "VLLM_API_KEY"}, mode="0600", uid=0, gid=0)

    def place(self, content: str, mode: int) -> None:
        self.key.parent.mkdir(parents=True, exist_ok=True)
        self.key.write_text(content)
        self.key.chmod(mode)

    def shown(self, *secrets: str) -> list[str]:
        """Pieces of the secrets (whole lines, the key alone) found in any output so far."""
        found = []
        for s in secrets:
            for piece in {s, s.strip(), s.strip().partition("=")[2]} - {""}:
                found += [piece for out in self.outputs if piece in out]
        return found


@needs_root
@pytest.mark.parametrize(
    "before", [PLACEHOLDER, "VLLM_API_KEY=written-by-hand-0123\n", "garbage\n"], ids=["placeholder", "hand", "junk"]
)
def test_a_key_file_gpuprov_did_not_make_is_replaced_and_never_shown(tmp_path: Path, before: str) -> None:
    t = Tree(tmp_path)
    t.place(before, 0o644)
    preview = t.make_key(check=True)  # check mode: says so, changes nothing
    assert preview["changed"] and t.key.read_text() == before
    result = t.make_key()
    key = t.key.read_text()
    assert result["changed"] and KEY_LINE.fullmatch(key), result
    assert "not made by gpuprov" in result["msg"]
    assert result["diff"]["before"] == f"(secret, {len(before)} bytes)"
    assert result["diff"]["after"] == "(secret, 57 bytes, changed)"
    assert (t.key.stat().st_mode & 0o777, t.key.stat().st_uid, t.key.stat().st_gid) == (0o600, 0, 0)
    # what was there is recorded for revert, marked a secret; the new key is recorded as a hash only
    item = applystate.load_previous(t.state)["files"][KEY_FILE]
    assert item["content"] == before and item["secret"] is True
    assert not t.shown(key) and not t.shown(before)
    assert key.split("=", 1)[1].strip() not in "".join(p.read_text() for p in t.state.iterdir())


@needs_root
def test_a_key_gpuprov_made_is_kept_and_its_owner_and_mode_put_right(tmp_path: Path) -> None:
    t = Tree(tmp_path)
    assert t.make_key()["msg"] == f"{KEY_FILE} written (a new API key)"
    key = t.key.read_text()
    assert t.make_key()["changed"] is False
    os.chown(t.key, 1000, 1000)
    t.key.chmod(0o644)
    fixed = t.make_key()
    assert fixed["changed"] and t.key.read_text() == key
    assert fixed["msg"] == f"{KEY_FILE} written (mode 0644 -> 0600, owner 1000 -> 0, group 1000 -> 0)"
    assert (t.key.stat().st_mode & 0o777, t.key.stat().st_uid, t.key.stat().st_gid) == (0o600, 0, 0)
    assert fixed["diff"]["after"] == "(secret, 57 bytes)"  # the content did not change
    assert t.make_key()["changed"] is False
    assert not t.shown(key)


@needs_root
def test_removing_and_restoring_a_secret_never_show_it(tmp_path: Path) -> None:
    t = Tree(tmp_path)
    t.place(PLACEHOLDER, 0o644)
    t.make_key()
    key = t.key.read_text()
    removed = t.run(state="absent", secret=True)  # another engine: the key goes
    assert removed["changed"] and not t.key.exists()
    assert removed["diff"] == {
        "before": "(secret, 57 bytes)",
        "after": "(absent)",
        "before_header": f"{KEY_FILE} (current)",
        "after_header": f"{KEY_FILE} (absent)",
    }
    # revert: the plan carries no content for the secret; the module reads it back from the record
    target = next(f for f in revert_desired(applystate.load_previous(t.state)).files if f.path == KEY_FILE)
    assert (target.content, target.secret, target.restore) == (None, True, True)
    restored = t.run(restore=True, secret=True, mode=target.mode, record=False)
    assert restored["changed"] and t.key.read_text() == PLACEHOLDER and t.key.stat().st_mode & 0o777 == 0o644
    assert restored["diff"]["after"] == "(secret, 39 bytes, changed)"
    assert not apikeys.made_by_gpuprov(t.state, KEY_FILE, PLACEHOLDER)
    # a secret given as content (a file written from a plan) is masked in the result's arguments too
    t.run(content="VLLM_API_KEY=given-as-content-4567\n", secret=True, mode="0600")
    assert not t.shown(key, PLACEHOLDER, "VLLM_API_KEY=given-as-content-4567\n")


def test_restore_without_a_record_is_one_clear_failure(tmp_path: Path) -> None:
    t = Tree(tmp_path)
    t.args.write_text(
        json.dumps(
            {"ANSIBLE_MODULE_ARGS": {"path": KEY_FILE, "root": str(t.root), "state_dir": str(t.state), "restore": True}}
        )
    )
    proc = subprocess.run(
        [sys.executable, str(MODULE), str(t.args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
    )
    result = json.loads(proc.stdout)
    assert result["failed"] and "recorded nothing" in result["msg"] and not t.key.exists()


def test_plan_says_what_apply_puts_right_about_the_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from provision.serving.keyfiles import key_file_notes

    monkeypatch.setenv(applystate.STATE_DIR_ENV, str(tmp_path / "state"))
    t = Tree(tmp_path)
    assert key_file_notes(KEY_FILE, t.root) == []  # none yet: apply makes it (the plan's API key note says so)
    t.place(PLACEHOLDER, 0o644)
    notes = key_file_notes(KEY_FILE, t.root)
    assert notes[0] == f"{KEY_FILE} has mode 0644: apply makes it root's, 0600"
    assert "holds a key gpuprov did not make" in notes[1] and len(notes) == 2
    made = apikeys.key_content(apikeys.new_key(), "VLLM_API_KEY")
    t.place(made, 0o600)
    apikeys.remember(tmp_path / "state", KEY_FILE, made)
    # a key gpuprov made, mode 0600: nothing to say (as a user the owner is that user's: said too)
    assert [n for n in key_file_notes(KEY_FILE, t.root) if not n.startswith(f"{KEY_FILE} has owner")] == []
    assert not [n for n in notes if PLACEHOLDER_KEY in n]


def test_the_results_callback_keeps_only_the_description_of_a_secret_diff() -> None:
    import importlib.util

    path = COLLECTION / "plugins/callback/gpuprov_results.py"
    spec = importlib.util.spec_from_file_location("gpuprov_results_under_test", path)
    assert spec is not None and spec.loader is not None
    callback = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(callback)
    leaky = {
        "before": "VLLM_API_KEY=leaked-by-a-bug\n",
        "after": "(secret, 57 bytes, changed)",
        "before_header": f"{KEY_FILE} (current)",
    }
    for args in ({"secret": True}, {"api_key": {"env": "VLLM_API_KEY"}}, {"restore": True}):
        safe = callback._secret_safe({"diff": leaky, "invocation": {"module_args": args}})
        assert safe == {"after": "(secret, 57 bytes, changed)", "before_header": f"{KEY_FILE} (current)"}
    plain = {"diff": {"before": "a\n", "after": "b\n"}, "invocation": {"module_args": {"secret": False}}}
    assert callback._secret_safe(plain) == plain["diff"]
    assert (
        callback._secret_safe({"diff": [leaky], "invocation": {"module_args": {"secret": True}}})[0].get("before")
        is None
    )


@needs_root
def test_a_bare_key_file_for_llama_server_holds_the_key_alone(tmp_path: Path) -> None:
    t = Tree(tmp_path)
    result = t.run(path="/etc/gpuprov/serving/llama-cpp.key", api_key={}, mode="0600", uid=0, gid=0)
    key = (t.root / "etc/gpuprov/serving/llama-cpp.key").read_text()
    assert result["changed"] and re.fullmatch(r"[A-Za-z0-9]{43}\n", key)
    assert not t.shown(key)


def test_a_key_too_short_to_be_secret_is_refused_in_one_line(tmp_path: Path) -> None:
    t = Tree(tmp_path)
    t.args.write_text(
        json.dumps(
            {
                "ANSIBLE_MODULE_ARGS": {
                    "path": KEY_FILE,
                    "root": str(t.root),
                    "state_dir": str(t.state),
                    "api_key": {"length": 0},
                }
            }
        )
    )
    proc = subprocess.run(
        [sys.executable, str(MODULE), str(t.args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
    )
    result = json.loads(proc.stdout)
    assert result["failed"] and result["msg"] == "api_key.length must be at least 22, got 0" and not t.key.exists()


def test_a_revert_plan_carries_no_key_content_also_from_an_older_record() -> None:
    from provision.plan import make_revert_plan
    from provision.plantypes import FileState, HostState
    from provision.snapshot import Snapshot

    # recorded by a gpuprov that did not mark secrets: the path says it is a key file
    previous = {
        "files": {
            KEY_FILE: {"content": "VLLM_API_KEY=old-record-key-1234\n", "mode": "0600"},
            "/etc/other.conf": {"content": "plain\n", "mode": "0644"},
        }
    }
    host = HostState(files={KEY_FILE: FileState("VLLM_API_KEY=current-key-5678\n", "0600")})
    plan = make_revert_plan(Snapshot(), applystate_sections(previous), host)
    key = next(f for f in plan.desired.files if f.path == KEY_FILE)
    assert (key.content, key.secret, key.restore) == (None, True, True)
    assert next(f for f in plan.desired.files if f.path == "/etc/other.conf").content == "plain\n"
    shown = json.dumps(plan.to_dict())
    assert "old-record-key" not in shown and "current-key" not in shown
    assert any(c.subject == KEY_FILE and c.desired == "as recorded (a secret)" for c in plan.changes)


def applystate_sections(previous: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s: dict(previous.get(s) or {}) for s in applystate.SECTIONS}
