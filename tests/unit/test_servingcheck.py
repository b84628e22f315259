"""doctor on installed servers: read back from the files gpuprov renders, carried in the snapshot,
warned about when reachable from other hosts without an API key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provision.diagnosis import diagnose
from provision.profiles.loader import ProfileSet, builtin_dir
from provision.rendertree import rendered_files, write_tree
from provision.serving.units import installed_servers
from provision.snapshot import ServerInfo, Snapshot
from tests.conftest import load_snapshot


def installed(
    tmp_path: Path, text: str | None, builtin: str | None = None, *, ollama: str | None = "usr/local/bin/ollama"
) -> list[ServerInfo]:
    """The servers read back from a tree the profile was rendered into; ``ollama``: where the tree has Ollama
    (its binary, or its own unit), None: nowhere."""
    d = tmp_path / "profiles"
    d.mkdir(exist_ok=True)
    if text is not None:
        (d / "mine.yaml").write_text(text)
    prof = ProfileSet([builtin_dir(), d]).load(builtin or "mine")
    root = tmp_path / f"root-{builtin or 'mine'}"
    write_tree(rendered_files(prof, python="/opt/gpuprov/bin/python", root=root), root)
    if ollama is not None:
        (root / ollama).parent.mkdir(parents=True, exist_ok=True)
        (root / ollama).write_text("[Service]\nExecStart=/opt/ollama/bin/ollama serve\n")
    return installed_servers(root)


def findings(servers: list[ServerInfo]) -> dict[str, str]:
    snap = load_snapshot("rtx4090")
    snap.host.servers = servers
    return {f.id: f.message for f in diagnose(snap) if f.id.startswith("serving.")}


def test_built_in_servers_stay_on_loopback(tmp_path: Path) -> None:
    assert installed(tmp_path, None, "rtx4090-laptop") == [
        ServerInfo("gpuprov-vllm.service", "vllm", "127.0.0.1", 8000, True)
    ]
    servers = installed(tmp_path, None, "rtx4090")
    assert servers == [ServerInfo("ollama.service", "ollama", "127.0.0.1", 11434, False, engine_installed=True)]
    assert findings(servers) == {"serving.loopback": "ollama.service listens on 127.0.0.1:11434 (this host only)"}


@pytest.mark.parametrize(
    ("text", "finding"),
    [
        ("serving: {host: 0.0.0.0, llama_cpp: {model: /m.gguf, server: /s}}\n", "serving.exposed_no_key"),
        (
            "serving: {host: 0.0.0.0, api_key: true, llama_cpp: {model: /m.gguf, server: /s}}\n",
            "serving.exposed_with_key",
        ),
        ("serving: {host: '::', port: 9000, ollama: {}}\n", "serving.exposed_no_key"),
        ("serving: {host: '::1', vllm: {model: m, venv: /v}}\n", "serving.loopback"),
    ],
)
def test_exposed_servers_without_a_key_are_warned(tmp_path: Path, text: str, finding: str) -> None:
    found = findings(installed(tmp_path, text))
    assert list(found) == [finding]
    if finding == "serving.exposed_no_key":
        assert "without an API key" in found[finding]


@pytest.mark.parametrize(
    "where", [None, "usr/local/bin/ollama", "usr/bin/ollama", "usr/lib/systemd/system/ollama.service"]
)
def test_an_ollama_drop_in_without_ollama_is_an_error(tmp_path: Path, where: str | None) -> None:
    """gpuprov's drop-in for ollama.service where neither Ollama's binary nor its own unit is (issue 16)."""
    servers = installed(tmp_path, None, "rtx4090", ollama=where)
    assert [s.engine_installed for s in servers] == [where is not None]
    snap = load_snapshot("rtx4090")
    snap.host.servers = servers
    missing = [f for f in diagnose(snap) if f.id == "serving.engine_missing"]
    if where is not None:
        assert missing == []
        return
    (finding,) = missing
    assert finding.severity == "error" and finding.subject == "ollama.service"
    assert finding.message == (
        "ollama.service has gpuprov's drop-in, but Ollama is not installed on this host (no ollama binary, no "
        "ollama.service): nothing serves"
    )
    assert finding.remedy.startswith("install Ollama with its installer (https://ollama.com/download)")


def test_servers_survive_a_saved_snapshot(tmp_path: Path) -> None:
    snap = load_snapshot("rtx4090")
    snap.host.servers = [
        ServerInfo("gpuprov-vllm.service", "vllm", "0.0.0.0", 8000, False),
        ServerInfo("ollama.service", "ollama", "127.0.0.1", 11434, False, engine_installed=False),
    ]
    path = tmp_path / "s.json"
    snap.save(path)
    again = Snapshot.load(path)
    assert again.host.servers == snap.host.servers
    data = json.loads(path.read_text())
    del data["host"]["servers"][1]["engine_installed"]  # recorded before gpuprov looked: not looked at, no finding
    older = Snapshot.from_dict(data)
    assert older.host.servers[1].engine_installed is None
    assert not any(f.id == "serving.engine_missing" for f in diagnose(older))
    del data["host"]["servers"]  # a snapshot recorded before servers were reported
    assert Snapshot.from_dict(data).host.servers == []
