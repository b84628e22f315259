"""Planning reads nothing: everything a plan needs is gathered into the host state first
(provision.hoststate), then provision.plan.make_plan runs with every way to touch the host forbidden
(files, stat, symlinks, directories, subprocesses) and gives the same plan as with them allowed."""

from __future__ import annotations

import builtins
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from provision.hoststate import read_host_state
from provision.plan import make_plan
from provision.plantypes import HostState
from provision.profiles.loader import ProfileSet, builtin_dir
from provision.render import templates_dir
from tests.conftest import gathered, load_snapshot
from tests.unit.test_fit_gguf import Arch, write_gguf

PACKAGE = str(Path(__file__).resolve().parents[2] / "provision") + os.sep
TEMPLATES = str(templates_dir()) + os.sep
SNAPSHOTS = ("rtx4090", "rtx4090-laptop", "h100", "l4")
BASE = "description: purity\nmatch: {gpu_names: ['*']}\n"
#: profiles beside the built-in ones: each engine, local models, virtualenvs, keys, a llama-cpp-python build
USER_PROFILES = {
    "vllm-venv": BASE + "serving:\n  api_key: true\n  vllm: {model: /srv/hf, venv: /opt/vllm, max_model_len: 4096}\n",
    "vllm-hub": BASE + "serving:\n  host: 0.0.0.0\n  vllm: {model: org/model, executable: /usr/local/bin/vllm}\n",
    "llama-server": BASE + "serving:\n  api_key: true\n  gpus: [0]\n"
    "  llama_cpp: {model: /srv/m.gguf, server: /opt/llama/llama-server, n_gpu_layers: 999, ctx_size: 8192}\n",
    "llama-venv": BASE + "serving:\n  llama_cpp: {model: /srv/absent.gguf, venv: /root/envs/llama}\n",
    "ollama": BASE + "serving:\n  ollama: {models_dir: /srv/ollama, flash_attention: true}\n",
    "build": BASE + "llama_cpp: {build: true, python: /opt/llama/bin/python, arch: [89], version: '0.3.16'}\n"
    "suspend: {preserve_video_memory: true}\n",
}


def _tree(root: Path) -> None:
    """A host tree: a vLLM virtualenv with its dist-info, a GGUF model, a venv whose pyvenv.cfg points
    into /root, a server binary, Ollama's models directory."""
    dist = root / "opt/vllm/lib/python3.12/site-packages/vllm-0.11.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: vllm\nVersion: 0.11.0\n\n")
    (root / "opt/vllm/pyvenv.cfg").write_text("home = /usr/bin\n")
    (root / "root/envs/llama").mkdir(parents=True)
    (root / "root/envs/llama/pyvenv.cfg").write_text("home = /root/.pyenv/versions/3.12.1/bin\n")
    (root / "opt/llama").mkdir(parents=True)
    (root / "opt/llama/llama-server").write_text("#!/bin/sh\n")
    (root / "srv/ollama").mkdir(parents=True)
    (root / "srv/hf").mkdir(parents=True)
    arch = Arch("llama", n_layer=32, n_embd=2048, n_head=16, n_head_kv=8, n_ff=5632, n_vocab=32000, context=8192)
    write_gguf(root / "srv/m.gguf", arch, sparse=True)


def _allowed(path: object) -> bool:
    """gpuprov's own files (its templates and data), never the host's."""
    try:
        text = os.fspath(path)  # type: ignore[arg-type]
    except TypeError:
        return False
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    real = os.path.abspath(text)
    return real.startswith((PACKAGE, TEMPLATES))


def _forbid_io(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    touched: list[str] = []

    def guard(name: str, real):
        def checked(path, *args, **kwargs):
            if not _allowed(path):
                touched.append(f"{name}({path!r})")
                raise AssertionError(f"the plan touched the host: {name}({path!r})")
            return real(path, *args, **kwargs)

        return checked

    for module, name in (
        (builtins, "open"),
        (io, "open"),
        (os, "open"),
        (os, "stat"),
        (os, "lstat"),
        (os, "scandir"),
        (os, "listdir"),
        (os, "readlink"),
        (os, "access"),
    ):
        monkeypatch.setattr(module, name, guard(f"{module.__name__}.{name}", getattr(module, name)))

    def no_process(*args, **kwargs):
        touched.append(f"subprocess {args[:1]!r}")
        raise AssertionError(f"the plan ran a program: {args[:1]!r}")

    monkeypatch.setattr(subprocess, "Popen", no_process)
    return touched


def _cases(tmp_path: Path) -> list[tuple[str, str, bool]]:
    users = tmp_path / "profiles"
    users.mkdir()
    for name, text in USER_PROFILES.items():
        (users / f"{name}.yaml").write_text(text)
    profiles = ProfileSet([builtin_dir(), users])
    return [(name, snap, known) for name in profiles.names() for snap in SNAPSHOTS for known in (True, False)]


def test_every_profile_plans_the_same_with_the_host_out_of_reach(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "host"
    _tree(root)
    cases = _cases(tmp_path)
    profiles = ProfileSet([builtin_dir(), tmp_path / "profiles"])
    assert len({name for name, _, _ in cases}) == 5 + len(USER_PROFILES)
    planned = {}
    for name, snap_name, known in cases:
        snap, prof = load_snapshot(snap_name), profiles.load(name)
        if known:
            host = read_host_state(snap, prof, root=root, directory=tmp_path / "state", python=sys.executable)
        else:
            host = gathered(snap, prof, HostState(known=False, python=sys.executable, root=str(root)))[2]
        try:
            normal = json.dumps(make_plan(snap, prof, host, force=True).to_dict(), sort_keys=True, default=str)
        except Exception as exc:
            normal = f"{type(exc).__name__}: {exc}"
        planned[(name, snap_name, known)] = (snap, prof, host, normal)
    assert sum(not v[3].startswith("{") for v in planned.values()) < len(planned) / 2  # mostly real plans
    pure = {}
    with monkeypatch.context() as forbidden:
        touched = _forbid_io(forbidden)
        for key, (snap, prof, host, _) in planned.items():
            try:
                plan = make_plan(snap, prof, host, force=True).to_dict()
                pure[key] = json.dumps(plan, sort_keys=True, default=str)
            except AssertionError:
                raise
            except Exception as exc:
                pure[key] = f"{type(exc).__name__}: {exc}"
    assert touched == []
    for key, (_, _, _, normal) in planned.items():
        assert pure[key] == normal, key


def test_the_guard_catches_a_read(tmp_path: Path, monkeypatch) -> None:
    """The forbidding itself: a plan that read a file or ran a program would fail the test above."""
    (tmp_path / "f").write_text("x")
    with monkeypatch.context() as forbidden:
        _forbid_io(forbidden)
        with pytest.raises(AssertionError, match="touched the host"):
            (tmp_path / "f").read_text()
        with pytest.raises(AssertionError, match="touched the host"):
            (tmp_path / "f").exists()
        with pytest.raises(AssertionError, match="ran a program"):
            subprocess.run(["true"], check=False)
        assert Path(TEMPLATES, "gpuprov-vllm.service.j2").read_text()  # gpuprov's own templates stay readable
