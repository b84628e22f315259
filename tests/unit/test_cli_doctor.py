"""`gpuprov doctor` end to end, as a user runs it (a subprocess: real exit codes, real stdout/stderr)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from provision.snapshot import Snapshot
from tests.conftest import SNAPSHOTS, snapshot_files
from tests.unit.test_pyenv import EXPLODING_INIT, TORCH_VERSION_PY, install_fake


def gpuprov(*args, env=None, check_rc=None):
    full_env = {**os.environ, **(env or {})}
    full_env.pop("GPUPROV_NVML_REPLAY", None) if not (env and "GPUPROV_NVML_REPLAY" in env) else None
    proc = subprocess.run([sys.executable, "-m", "provision", *args], capture_output=True, text=True, env=full_env)
    if check_rc is not None:
        assert proc.returncode == check_rc, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_doctor_without_any_driver_is_a_clear_diagnosis():
    proc = gpuprov("doctor", check_rc=1)
    assert "libnvidia-ml.so.1 not found: no NVIDIA driver installed" in proc.stdout
    assert "install the NVIDIA driver" in proc.stdout


def test_doctor_json_without_driver():
    data = json.loads(gpuprov("doctor", "--json", check_rc=1).stdout)
    assert data["exit_code"] == 1
    assert data["snapshot"]["driver"]["nvml"]["kind"] == "library_not_found"
    assert data["snapshot"]["gpus"] == []
    assert {"id", "severity", "message", "remedy", "subject"} <= set(data["findings"][0])
    assert data["snapshot"]["host"]["ram_mib"] > 0


@pytest.mark.parametrize("path", snapshot_files(), ids=lambda p: p.name)
def test_live_probe_over_replay_gives_the_same_findings_as_from(path, tmp_path):
    """What a user sees on the machine equals what anyone sees replaying its saved snapshot."""
    state = tmp_path / "state.json"
    state.write_text(path.read_text())
    saved = tmp_path / "saved.json"
    live = gpuprov("doctor", "--json", "--save", str(saved), env={"GPUPROV_NVML_REPLAY": str(state)})
    replayed = gpuprov("doctor", "--json", "--from", str(saved))
    assert live.returncode == replayed.returncode
    assert json.loads(live.stdout)["findings"] == json.loads(replayed.stdout)["findings"]
    # GPU findings match the snapshot's own; persistence_off also depends on this host being headless
    gpu_ids = lambda out: [  # noqa: E731
        f["id"]
        for f in json.loads(out)["findings"]
        if f["subject"].startswith("gpu") and f["id"] != "gpu.persistence_off"
    ]
    direct = gpuprov("doctor", "--json", "--from", str(path))
    assert gpu_ids(live.stdout) == gpu_ids(direct.stdout)


def test_from_a_snapshot_renders_the_report(tmp_path):
    proc = gpuprov("doctor", "--from", str(SNAPSHOTS / "h100.constructed.json"), check_rc=0)
    out = proc.stdout
    for text in (
        "NVIDIA H100 80GB HBM3",
        "Hopper, compute capability 9.0",
        "81559 MiB",
        "limit 700 W",
        "settable 200 W–700 W",
        "persistence on",
        "gen 5 of 5, x16 of x16",
        "torch",
        "CUDA 13.0",
        "0 error(s)",
    ):
        assert text in out, text


def test_strict_counts_warnings(tmp_path):
    snap = Snapshot.load(SNAPSHOTS / "rtx4080.constructed.json")  # headless, persistence off: a warning
    path = tmp_path / "s.json"
    snap.save(path)
    gpuprov("doctor", "--from", str(path), check_rc=0)
    gpuprov("doctor", "--from", str(path), "--strict", check_rc=1)


def test_save_redact(tmp_path):
    out = tmp_path / "mine.json"
    src = SNAPSHOTS / "a100x2.constructed.json"
    gpuprov("doctor", "--from", str(src), "--save", str(out), "--redact", check_rc=0)
    saved = Snapshot.load(out)
    assert saved.host.hostname is None
    assert all(g.uuid is None and g.serial is None for g in saved.gpus)
    assert saved.gpus[0].power_limit_w == 400.0


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        ("{not json", "not valid JSON"),
        ('{"schema_version": 1, "host": {"hostn', "truncated"),
        ('{"schema_version": 99}', "schema_version is 99"),
        ('{"schema_version": 1, "gpus": "many"}', "snapshot.gpus: expected a list"),
        ("[]", "must be a JSON object"),
    ],
)
def test_bad_from_file_is_one_line_and_exit_2(content, message, tmp_path):
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    proc = gpuprov("doctor", "--from", str(path), check_rc=2)
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["doctor", "--python", "/nonexistent/python"], "no such file"),
        (["doctor", "--from", "x.json", "--python", sys.executable], "do not go together"),
        (["doctor", "--bogus"], "No such option"),
    ],
)
def test_bad_usage_exits_2(args, message):
    proc = gpuprov(*args, check_rc=2)
    assert message in proc.stderr


def test_unwritable_save_path_is_usage_error(tmp_path):
    src = str(SNAPSHOTS / "l4.constructed.json")
    proc = gpuprov("doctor", "--from", src, "--save", str(tmp_path / "no/dir/x.json"), check_rc=2)
    assert "cannot write" in proc.stderr


def test_doctor_reports_another_environment_without_importing_torch(tmp_path):
    """torch and llama_cpp here raise on import: doctor must read them from files only."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "v")], check=True)
    site = next((tmp_path / "v/lib").glob("python3*/site-packages"))
    install_fake(
        site,
        "torch",
        "2.7.1+cu128",
        {"torch/__init__.py": EXPLODING_INIT, "torch/version.py": TORCH_VERSION_PY},
    )
    install_fake(site, "vllm", "0.10.1", {"vllm/__init__.py": EXPLODING_INIT})
    proc = gpuprov("doctor", "--json", "--python", str(tmp_path / "v/bin/python"))
    data = json.loads(proc.stdout)
    py = data["snapshot"]["python"]
    assert py["packages"]["torch"]["version"] == "2.7.1+cu128" and py["torch_cuda"] == "12.8"
    assert py["packages"]["vllm"]["version"] == "0.10.1"


def test_doctor_and_help_import_no_heavy_package(tmp_path):
    """A torch / vllm on sys.path that explode on import: doctor and --help must not touch them."""
    site = tmp_path / "site"
    for name in ("torch", "vllm", "transformers", "numpy"):
        install_fake(site, name, "1.0", {f"{name}/__init__.py": EXPLODING_INIT})
    code = (
        "import sys, runpy\n"
        f"sys.path.insert(0, {str(site)!r})\n"
        "sys.argv = ['gpuprov'] + sys.argv[1:]\n"
        "try:\n    runpy.run_module('provision', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'torch', 'vllm', 'transformers', 'numpy', 'pydantic', 'ansible', 'jinja2', 'gguf', 'yaml'})\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    for args in (
        ["--help"],
        ["doctor", "--json"],
        ["doctor", "--from", str(SNAPSHOTS / "h100.constructed.json")],
    ):
        proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
        assert "HEAVY []" in proc.stderr, (args, proc.stderr[-2000:])


def test_version_and_help():
    assert gpuprov("--version", check_rc=0).stdout.startswith("gpuprov ")
    assert "doctor" in gpuprov("--help", check_rc=0).stdout
    assert "--from" in gpuprov("doctor", "--help", check_rc=0).stdout


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("host", "hostname"), "box[/x]"),
        (("gpus", 0, "name"), "[bold]RTX[/nope]"),
        (("gpus", 0, "pci_bus_id"), "[/]"),
        (("python", "interpreter"), "/opt/[red]/python"),
    ],
)
def test_any_text_in_a_snapshot_prints(tmp_path, path, value):
    """A user's file can hold any text: rich markup in it is printed, never interpreted (no MarkupError)."""
    data = json.loads((SNAPSHOTS / "rtx4090.constructed.json").read_text())
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    f = tmp_path / "odd.json"
    f.write_text(json.dumps(data))
    proc = gpuprov("doctor", "--from", str(f), env={"COLUMNS": "250"})
    assert proc.returncode in (0, 1), proc.stderr
    assert value in proc.stdout


def test_a_bad_compute_capability_is_bad_usage(tmp_path):
    data = json.loads((SNAPSHOTS / "rtx4090.constructed.json").read_text())
    data["gpus"][0]["compute_capability"] = "8"
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(data))
    proc = gpuprov("doctor", "--from", str(f), check_rc=2)
    assert "compute_capability: '8' is not a compute capability" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_redact_scrubs_uuids_in_the_environment_and_home_paths():
    snap = Snapshot.load(SNAPSHOTS / "rtx4090.constructed.json")
    uuid = snap.gpus[0].uuid
    snap.env["CUDA_VISIBLE_DEVICES"] = f"{uuid},MIG-4b3c0e2a-1d2f-5a6b-8c9d-0e1f2a3b4c5d"
    snap.env["HF_TOKEN"] = "hf_secret"
    snap.env["LD_LIBRARY_PATH"] = "/home/alice/cuda/lib64:/usr/lib"
    snap.python.interpreter = "/home/alice/venv/bin/python"
    out = snap.redacted().to_json()
    assert uuid not in out and "MIG-4b3c0e2a" not in out and "hf_secret" not in out and "alice" not in out
    red = snap.redacted()
    assert red.env["CUDA_VISIBLE_DEVICES"] == "GPU-REDACTED,MIG-REDACTED"
    assert red.env["LD_LIBRARY_PATH"] == "/home/USER/cuda/lib64:/usr/lib"
    assert red.python.interpreter == "/home/USER/venv/bin/python"


def test_save_of_a_live_probe_is_a_recording(tmp_path):
    out = tmp_path / "here.json"
    gpuprov("doctor", "--save", str(out), check_rc=1)  # this machine: no driver
    assert Snapshot.load(out).origin == "recorded"
    # through the replay backend, the replayed snapshot's origin is kept: constructed data stays constructed
    replayed = tmp_path / "replayed.json"
    gpuprov("doctor", "--save", str(replayed), env={"GPUPROV_NVML_REPLAY": str(SNAPSHOTS / "rtx4090.constructed.json")})
    assert Snapshot.load(replayed).origin == "constructed"
    proc = gpuprov("doctor", "--from", str(out))
    assert "(recorded snapshot," in proc.stdout
