"""The serving API key end to end, with the real ansible-playbook and the GPU replayed: render's
placeholder is no key (apply makes a real one), the key file's owner and mode are put right on every
apply, and the key never appears in any output — text, --json, --diff, check mode, an engine switch that
removes it, revert — nor in gpuprov's state directory."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from provision.serving.settings import PLACEHOLDER_KEY
from tests.conftest import SNAPSHOTS

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="apply writes root-owned files, as on a real host"),
    pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers not installed"),
    pytest.mark.skipif(
        not (Path(sys.executable).parent / "ansible-playbook").exists() and shutil.which("ansible-playbook") is None,
        reason="ansible-playbook not installed",
    ),
]

KEY_FILE = "etc/gpuprov/serving/vllm.env"
PLACEHOLDER = f"VLLM_API_KEY={PLACEHOLDER_KEY}\n"


class Image:
    """An image tree made by gpuprov render, then applied to; every output of every command kept."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "img"
        self.state = tmp_path / "state"
        gpu = tmp_path / "gpu.json"
        shutil.copy(SNAPSHOTS / "rtx4090-laptop.constructed.json", gpu)
        config = tmp_path / "config"
        (config / "gpuprov/profiles").mkdir(parents=True)
        # the laptop's settings with Ollama instead of vLLM: applying it removes vLLM's key
        (config / "gpuprov/profiles/laptop-ollama.yaml").write_text(
            "extends: rtx4090-laptop\nserving:\n  api_key: false\n  ollama: {}\n"
        )
        self.env = {
            **os.environ,
            "GPUPROV_NVML_REPLAY": str(gpu),
            "GPUPROV_STATE_DIR": str(self.state),
            "XDG_CONFIG_HOME": str(config),
            "COLUMNS": "200",
        }
        self.env.pop("GPUPROV_NVML_REPLAY_AS_USER", None)
        self.outputs: list[str] = []

    @property
    def key_file(self) -> Path:
        return self.root / KEY_FILE

    def gpuprov(self, *args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-m", "provision", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        self.outputs.append(proc.stdout + proc.stderr)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    def run(self, *args: str) -> str:
        return self.gpuprov(*args, "--root", str(self.root)).stdout

    def run_json(self, *args: str) -> dict:
        result = json.loads(self.gpuprov(*args, "--root", str(self.root), "--json").stdout)
        assert result["failed"] == 0, result
        return result

    def install_ollama(self) -> None:
        """Ollama's binary where its installer puts it: laptop-ollama plans only where Ollama is installed."""
        binary = self.root / "usr/local/bin/ollama"
        binary.parent.mkdir(parents=True, exist_ok=True)
        binary.write_text("#!/bin/sh\n")
        binary.chmod(0o755)

    def metadata(self) -> tuple[int, int, int]:
        st = self.key_file.stat()
        return st.st_mode & 0o777, st.st_uid, st.st_gid


def _key_result(result: dict) -> dict:
    return next(
        r for r in result["results"] if r["task"].endswith("holds a key gpuprov made (root, 0600; never shown).")
    )


def test_render_then_apply_makes_a_real_key_puts_its_mode_right_and_never_shows_it(tmp_path: Path) -> None:
    img = Image(tmp_path)
    img.gpuprov("render", "rtx4090-laptop", "--out", str(img.root), "--python", sys.executable)
    assert img.key_file.read_text() == PLACEHOLDER
    img.key_file.chmod(0o644)  # a key file with the wrong mode, as an image builder may leave it

    shown = img.run("apply", "rtx4090-laptop", "--diff")
    key = img.key_file.read_text()
    assert re.fullmatch(r"VLLM_API_KEY=[A-Za-z0-9]{43}\n", key), "the placeholder is no key: apply makes one"
    assert img.metadata() == (0o600, 0, 0)
    assert "(secret, 39 bytes)" in shown and "(secret, 57 bytes, changed)" in shown

    again = img.run_json("apply", "rtx4090-laptop", "--diff")
    assert _key_result(again)["status"] == "ok" and img.key_file.read_text() == key  # a key gpuprov made stays
    img.key_file.chmod(0o644)
    os.chown(img.key_file, 1000, 1000)
    fixed = _key_result(img.run_json("apply", "rtx4090-laptop"))
    assert fixed["status"] == "changed" and "mode 0644 -> 0600, owner 1000 -> 0, group 1000 -> 0" in fixed["msg"]
    assert img.metadata() == (0o600, 0, 0) and img.key_file.read_text() == key

    img.install_ollama()
    img.run("apply", "laptop-ollama", "--check", "--diff")  # another engine: the key would go
    img.run_json("apply", "laptop-ollama", "--check", "--diff")
    img.run("revert", "--check", "--diff")
    img.run_json("revert", "--check", "--diff")
    switched = img.run_json("apply", "laptop-ollama", "--diff")
    assert not img.key_file.exists()
    removal = next(r for r in switched["results"] if r["item"] == "/" + KEY_FILE)
    assert removal["diff"]["before"] == "(secret, 57 bytes)" and removal["diff"]["after"] == "(absent)"

    reverted = img.run("revert", "--diff")
    # back to what was there before gpuprov's first change: render's placeholder, 0644
    assert img.key_file.read_text() == PLACEHOLDER and img.metadata()[0] == 0o644
    assert "(secret, 39 bytes, changed)" in reverted

    secret = key.split("=", 1)[1].strip()
    assert not [out for out in img.outputs if secret in out], "the key was shown"
    assert not [p for p in img.state.rglob("*") if p.is_file() and secret in p.read_text(errors="replace")]


def test_an_applied_key_keeps_root_0600_and_no_diff_or_result_shows_it(tmp_path: Path) -> None:
    img = Image(tmp_path)
    img.root.mkdir()
    img.run_json("apply", "rtx4090-laptop")
    key = img.key_file.read_text()
    img.key_file.chmod(0o644)
    fixed = _key_result(img.run_json("apply", "rtx4090-laptop"))
    assert fixed["status"] == "changed" and "mode 0644 -> 0600" in fixed["msg"]
    assert img.metadata() == (0o600, 0, 0) and img.key_file.read_text() == key

    img.run("revert", "--check", "--diff")
    img.install_ollama()
    img.run_json("apply", "laptop-ollama", "--check", "--diff")
    img.run("revert", "--diff")
    assert not img.key_file.exists()  # gpuprov made it: revert removes it
    secret = key.split("=", 1)[1].strip()
    assert not [out for out in img.outputs if secret in out], "the key was shown"
