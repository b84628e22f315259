"""Ollama is a binary with its own installer, not a stack gpuprov makes: the real CLI refuses to plan (or apply)
an Ollama profile for a tree where neither Ollama's binary nor its ``ollama.service`` is, in one line, exit 3,
nothing written; with Ollama there (the binary where its installer puts it, or its unit alone) it plans."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SNAPSHOTS

pytestmark = pytest.mark.integration

PROFILE = "serving:\n  ollama: {models_dir: /srv/ollama, flash_attention: true}\n"
INSTALLER_UNIT = Path(__file__).parent.parent / "data" / "serving" / "ollama-installer.service"


def gpuprov(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "config"
    (config / "gpuprov/profiles").mkdir(parents=True, exist_ok=True)
    (config / "gpuprov/profiles/local-ollama.yaml").write_text("extends: rtx4090\n" + PROFILE)
    full = {**os.environ, "XDG_CONFIG_HOME": str(config), "GPUPROV_STATE_DIR": str(tmp_path / "state"), **env}
    for name in ("GPUPROV_NVML_REPLAY", "GPUPROV_NVML_REPLAY_ROOT", "GPUPROV_NVML_REPLAY_AS_USER"):
        if name not in env:
            full.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "-m", "provision", *args], env=full, capture_output=True, text=True, check=False, timeout=300
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def line(where: str, profile: str = "local-ollama") -> str:
    return (
        f"gpuprov: error: profile {profile}: serving: Ollama is not installed {where} (no ollama binary, no "
        "ollama.service): install it with its installer (https://ollama.com/download), then run apply again"
    )


@pytest.mark.parametrize("profile", ["local-ollama", "rtx4090", "rtx4080"])
def test_plan_refuses_an_image_tree_without_ollama(tmp_path: Path, profile: str) -> None:
    root = tmp_path / "image"
    (root / "usr/share/ollama").mkdir(parents=True)  # a leftover of an uninstalled Ollama is not Ollama
    before = listing(root)
    proc = gpuprov(tmp_path, "plan", profile, "--root", str(root))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == [line(f"in the image tree {root}", profile)]
    assert proc.stdout == "" and listing(root) == before


@pytest.mark.parametrize(
    "place", ["usr/local/bin/ollama", "usr/bin/ollama", "bin/ollama", "etc/systemd/system/ollama.service", "link"]
)
def test_plan_goes_through_with_ollama_in_the_tree(tmp_path: Path, place: str) -> None:
    root = tmp_path / "image"
    if place == "link":  # the installer's layout in a tree: /usr/local/bin/ollama -> /usr/local/lib/ollama/ollama
        (root / "usr/local/lib/ollama").mkdir(parents=True)
        (root / "usr/local/lib/ollama/ollama").write_bytes(b"\x7fELF")
        (root / "usr/local/bin").mkdir(parents=True)
        (root / "usr/local/bin/ollama").symlink_to("/usr/local/lib/ollama/ollama")  # absolute: inside the tree
    else:
        (root / place).parent.mkdir(parents=True)
        if place.endswith(".service"):
            shutil.copy(INSTALLER_UNIT, root / place)
        else:
            (root / place).write_bytes(b"\x7fELF")
    proc = gpuprov(tmp_path, "plan", "local-ollama", "--root", str(root), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    dropin = "/etc/systemd/system/ollama.service.d/gpuprov.conf"
    assert any(c["subject"] == dropin and c["action"] == "change" for c in data["changes"])


def test_a_dangling_link_is_not_ollama(tmp_path: Path) -> None:
    """The link into the tree leads nowhere (the binary was removed): refused."""
    root = tmp_path / "image"
    (root / "usr/local/bin").mkdir(parents=True)
    (root / "usr/local/bin/ollama").symlink_to("/usr/local/lib/ollama/ollama")
    proc = gpuprov(tmp_path, "plan", "local-ollama", "--root", str(root))
    assert proc.returncode == 3 and proc.stderr.splitlines() == [line(f"in the image tree {root}")]


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="the replay's NVML setters, like the real ones, need root")
def test_apply_on_this_host_without_ollama_changes_nothing(tmp_path: Path) -> None:
    """The replayed host (its / is the tree): apply refuses before any change, the GPU untouched."""
    root = tmp_path / "root"
    root.mkdir()
    gpu = tmp_path / "gpu.json"
    shutil.copy(SNAPSHOTS / "rtx4090.constructed.json", gpu)
    env = {"GPUPROV_NVML_REPLAY": str(gpu), "GPUPROV_NVML_REPLAY_ROOT": str(root)}
    proc = gpuprov(tmp_path, "apply", "rtx4090", "--root", str(root), **env)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == [line("on this host", "rtx4090")]
    assert listing(root) == [] and "calls" not in json.loads(gpu.read_text())
    assert not (tmp_path / "state/profile.json").exists()
