"""gpuprov render: every file apply would write, under --out, nothing else; refusals exit non-zero."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import SNAPSHOTS

PY = "/opt/gpuprov/bin/python"


def render(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    env.pop("GPUPROV_NVML_REPLAY", None)
    return subprocess.run(
        [sys.executable, "-m", "provision", "render", *args, "--python", PY],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def tree(d: Path) -> dict[str, str]:
    return {"/" + str(p.relative_to(d)): f"{p.stat().st_mode & 0o777:04o}" for p in d.rglob("*") if p.is_file()}


def test_without_a_snapshot_writes_the_server_files_and_a_key_placeholder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = render(tmp_path, "rtx4090-laptop", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert tree(out) == {
        "/etc/systemd/system/gpuprov-vllm.service": "0644",
        "/etc/sysusers.d/gpuprov-vllm.conf": "0644",
        "/etc/modprobe.d/gpuprov-nvidia-preserve-vram.conf": "0644",
        "/etc/gpuprov/serving/vllm.env": "0600",
    }
    assert {f["path"] for f in data["files"]} == set(tree(out)) and data["checked_against_host"] is False
    assert (out / "etc/gpuprov/serving/vllm.env").read_text() == "VLLM_API_KEY=REPLACE-WITH-A-SECRET-KEY\n"
    assert any("depend on the GPUs" in n for n in data["notes"])
    assert f"ExecStartPre={PY} -m provision wait-gpu" in (out / "etc/systemd/system/gpuprov-vllm.service").read_text()


def test_with_a_snapshot_adds_the_gpu_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    snap = SNAPSHOTS / "rtx4090.constructed.json"
    proc = render(tmp_path, "rtx4090", "--out", str(out), "--from", str(snap))
    assert proc.returncode == 0, proc.stderr
    assert set(tree(out)) == {
        "/etc/gpuprov/gpu-settings.json",
        "/etc/systemd/system/gpuprov-gpu-settings.service",
        "/etc/systemd/system/ollama.service.d/gpuprov.conf",
    }
    assert "(0644) drop-in for Ollama's own ollama.service" in proc.stdout


def test_refusals_change_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    wrong_gpu = render(tmp_path, "rtx4090", "--out", str(out), "--from", str(SNAPSHOTS / "h100.constructed.json"))
    assert wrong_gpu.returncode == 3 and "pick a profile that matches" in wrong_gpu.stderr
    unknown = render(tmp_path, "no-such-profile", "--out", str(out))
    assert unknown.returncode == 2 and "no profile named 'no-such-profile'" in unknown.stderr
    (tmp_path / "config/gpuprov/profiles").mkdir(parents=True)
    (tmp_path / "config/gpuprov/profiles/bad.yaml").write_text('serving: {vllm: {model: "a\\nb", venv: /v}}\n')
    bad = render(tmp_path, "bad", "--out", str(out))
    assert bad.returncode == 2 and "cannot contain a newline" in bad.stderr and "Traceback" not in bad.stderr
    assert not out.exists()


def test_profiles_without_a_server_render_no_unit(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = render(tmp_path, "h100", "--out", str(out))
    assert proc.returncode == 0 and not out.exists()
    assert "writes no files without a snapshot" in proc.stdout
