"""What gpuprov prints: never a secret, never a control character it did not write, one clear line for a
hanging interpreter or Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from provision import pyenv
from provision.diagnosis import diagnose
from provision.report import render_doctor
from provision.snapshot import PythonEnv, Snapshot
from tests.conftest import SNAPSHOTS

BASE = SNAPSHOTS / "rtx4090.constructed.json"


def gpuprov(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "GPUPROV_NVML_REPLAY"}
    full.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "provision", *args], capture_output=True, text=True, env=full, timeout=120, check=False
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_doctor_never_prints_a_secret_environment_value(tmp_path: Path) -> None:
    saved = tmp_path / "saved.json"
    env = {"VLLM_API_KEY": "sk-do-not-show", "OLLAMA_HOST": "http://user:hunter2@gpu-box:11434"}
    as_json = gpuprov("doctor", "--json", "--save", str(saved), env=env)
    table = gpuprov("doctor", env=env)
    for text in (as_json.stdout, as_json.stderr, table.stdout, table.stderr, saved.read_text()):
        assert "sk-do-not-show" not in text and "hunter2" not in text
    shown = json.loads(as_json.stdout)["snapshot"]["env"]
    assert shown["VLLM_API_KEY"] == "(set, 14 chars)"
    assert shown["OLLAMA_HOST"] == "http://***@gpu-box:11434"


def test_redact_scrubs_the_user_name_outside_home(tmp_path: Path) -> None:
    env = {"USER": "alice", "LOGNAME": "alice", "HF_HOME": "/srv/alice/hf", "VLLM_CACHE": "/home/alice/.cache"}
    env["VLLM_API_KEY"] = "sk-x"
    data = json.loads(gpuprov("doctor", "--json", "--redact", env=env).stdout)
    assert data["snapshot"]["env"]["VLLM_API_KEY"] == "(set, 4 chars)"
    assert data["snapshot"]["env"]["HF_HOME"] == "/srv/USER/hf"
    assert data["snapshot"]["env"]["VLLM_CACHE"] == "/home/USER/.cache"
    assert "alice" not in json.dumps(data)


def test_control_characters_in_a_snapshot_never_reach_the_terminal(tmp_path: Path) -> None:
    data = json.loads(BASE.read_text())
    data["gpus"][0]["name"] = "RTX\x1b[31m\n ERROR [gpu0] forged finding\x1b[0m"
    data["host"]["cpu_model"] = "cpu\x1b]0;title\x07\u202e"
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(data))
    for args in (["doctor", "--from", str(path)], ["plan", "rtx4090", "--force", "--from", str(path)]):
        proc = gpuprov(*args)
        assert proc.returncode in (0, 1), proc.stderr
        assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout and "\u202e" not in proc.stdout
        assert not any(line.lstrip().startswith("ERROR [gpu0] forged") for line in proc.stdout.splitlines())
        assert "RTX\\x1b[31m\\n ERROR [gpu0] forged finding" in proc.stdout


def test_an_error_line_shows_control_characters_escaped() -> None:
    proc = gpuprov("doctor", "--python", "/nonexistent/\x1b[2Jpython\nERROR forged")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "\x1b" not in proc.stderr
    assert "/nonexistent/\\x1b[2Jpython\\nERROR forged" in proc.stderr


@pytest.fixture
def hanging_python(tmp_path: Path) -> Path:
    script = tmp_path / "python"
    script.write_text('#!/bin/sh\ntouch "$0.started"\nexec sleep 60\n')
    script.chmod(0o755)
    return script


def test_a_hanging_interpreter_is_one_short_line(monkeypatch: pytest.MonkeyPatch, hanging_python: Path) -> None:
    monkeypatch.setattr(pyenv, "COLLECT_TIMEOUT_S", 1)
    env = pyenv.read_environment(str(hanging_python))
    assert env.error == (
        f"{hanging_python}: timed out after 1 s listing its packages (does it start? try {hanging_python} -c pass)"
    )


def test_the_table_says_the_environment_error_once() -> None:
    snap = Snapshot.load(BASE)
    snap.python = PythonEnv(interpreter="/opt/x/python", error="/opt/x/python: timed out after 15 s listing")
    console = Console(record=True, width=200)
    render_doctor(snap, diagnose(snap), console=console)
    assert console.export_text().count("timed out after 15 s") == 1


def test_ctrl_c_says_interrupted_and_exits_130(hanging_python: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "provision", "doctor", "--python", str(hanging_python)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "GPUPROV_NVML_REPLAY"},
        # a shell's background job ignores SIGINT, and Python keeps that: let this one take it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    started = Path(f"{hanging_python}.started")
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (130, "gpuprov: interrupted\n")


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("{not json", "is not valid JSON (line 1)"),
        ("[]", "is not a JSON object"),
        ('{"gpus": "x"}', "is not in the form gpuprov writes (gpus)"),
        ('{"files": {"/etc/x": "y"}}', "is not in the form gpuprov writes (files./etc/x)"),
        ("\xff\xfe", "is not JSON that gpuprov wrote"),
    ],
)
def test_a_damaged_previous_json_is_one_line_before_ansible_runs(tmp_path: Path, content: str, says: str) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "previous.json").write_bytes(content.encode("latin-1"))
    root = tmp_path / "root"
    root.mkdir()
    replay = tmp_path / "replay.json"
    replay.write_text(BASE.read_text())
    env = {"GPUPROV_STATE_DIR": str(state), "GPUPROV_NVML_REPLAY": str(replay)}
    proc = gpuprov("revert", "--check", "--root", str(root), env=env)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == (
        f"gpuprov: error: {state}/previous.json: gpuprov's state {says}: restore it from a backup, or move it away "
        "(gpuprov then forgets what it recorded: revert can no longer restore those items)\n"
    )


def test_plan_says_the_exposure_warning_once(tmp_path: Path) -> None:
    profiles = tmp_path / "config/gpuprov/profiles"
    profiles.mkdir(parents=True)
    (profiles / "exposed.yaml").write_text(
        "extends: rtx4090\nserving:\n  host: 0.0.0.0\n  llama_cpp: {model: /m.gguf, server: /s}\n"
    )
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    warning = "WARNING: llama_cpp listens on 0.0.0.0:8080 without an API key"
    table = gpuprov("plan", "exposed", "--from", str(BASE), env=env)
    as_json = gpuprov("plan", "exposed", "--from", str(BASE), "--json", env=env)
    assert table.returncode == 0 and as_json.returncode == 0, (table.stderr, as_json.stderr)
    assert table.stdout.count(warning) == 1
    assert as_json.stdout.count(warning) == 1
    assert [n for n in json.loads(as_json.stdout)["notes"] if n.startswith(warning)]


def test_text_read_from_this_host_is_made_printable_too(tmp_path: Path) -> None:
    replay = tmp_path / "replay.json"
    replay.write_text(BASE.read_text())
    env = {"GPUPROV_NVML_REPLAY": str(replay), "CUDA_VISIBLE_DEVICES": "7\x1b[31mX\nERROR [gpu0] forged"}
    proc = gpuprov("doctor", env=env)
    assert "\x1b" not in proc.stdout
    assert not any(line.startswith("ERROR [gpu0] forged") for line in proc.stdout.splitlines())
    assert "CUDA_VISIBLE_DEVICES='7\\x1b[31mX\\nERROR [gpu0] forged' starts with" in proc.stdout


def test_printable_copy_reaches_every_text_of_a_snapshot() -> None:
    from provision.console import printable_copy
    from provision.snapshot import PackageInfo

    snap = Snapshot.load(BASE)
    snap.gpus[0].name = "a\x1bb"
    snap.gpus[0].clock_event_reasons = ["c\nd"]
    snap.python.packages = {"e\u202ef": PackageInfo(name="e\u202ef", version="1\r")}
    copy = printable_copy(snap)
    assert copy.gpus[0].name == "a\\x1bb" and copy.gpus[0].clock_event_reasons == ["c\\nd"]
    assert copy.python.packages == {"e\\u202ef": PackageInfo(name="e\\u202ef", version="1\\r")}
    assert snap.gpus[0].name == "a\x1bb", "the original is untouched"


def test_a_model_file_name_with_markup_and_escapes_is_shown_as_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A GGUF's general.name is the file's text: rich markup in it was a MarkupError traceback, ESC raw."""
    import gguf

    from tests.unit.test_fit_gguf import ARCHS, write_gguf

    add_name = gguf.GGUFWriter.add_name
    monkeypatch.setattr(gguf.GGUFWriter, "add_name", lambda self, _: add_name(self, "m[/bold]\x1b[31m\nERROR x"))
    model = write_gguf(tmp_path / "evil.gguf", ARCHS["qwen2"])
    proc = gpuprov("fit", str(model), "--vram-gib", "8")
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout and "m[/bold]\\x1b[31m\\nERROR x" in proc.stdout


def test_prune_shows_the_project_s_file_names_as_text(tmp_path: Path) -> None:
    """File and directory names are the project's text: '[/]' in a path was a MarkupError traceback, ESC raw."""
    project = tmp_path / "p[" / "]q"
    project.mkdir(parents=True)
    (project / "pyproject.toml").write_text('[project]\nname = "p"\nversion = "0"\ndependencies = ["typer"]\n')
    (project / "evil\x1b[31m\nERROR.py").write_text("import typer\n")
    proc = gpuprov("prune", str(project), "--python", sys.executable)
    assert proc.returncode in (0, 1), proc.stderr
    assert "\x1b" not in proc.stdout
    assert f"project:     {project}" in proc.stdout and "evil\\x1b[31m\\nERROR.py" in proc.stdout
