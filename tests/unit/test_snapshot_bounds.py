"""Loading a hostile snapshot file: bounded (size, depth, strings, lists), every number checked, the driver
version checked as --driver checks it, untrusted text made printable, secrets never kept."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest

from provision.errors import SnapshotError
from provision.snapshot import (
    MAX_FILE_BYTES,
    HostInfo,
    ServerInfo,
    Snapshot,
    masked_env,
)
from provision.typedjson import MAX_ITEMS, MAX_STRING_CHARS
from tests.conftest import SNAPSHOTS

BASE = SNAPSHOTS / "rtx4090.constructed.json"


def base() -> dict[str, Any]:
    data = json.loads(BASE.read_text())
    data["host"]["servers"] = [dataclasses.asdict(ServerInfo(unit="gpuprov-vllm.service", engine="vllm", port=8000))]
    return data


def write(tmp_path: Path, data: Any, name: str = "snap.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def gpuprov(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GPUPROV_NVML_REPLAY"}
    return subprocess.run(
        [sys.executable, "-m", "provision", *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def one_error_line(proc: subprocess.CompletedProcess, code: int = 2) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpuprov: error: "), proc.stderr
    return lines[0]


def _numeric_paths(cls: type, prefix: tuple) -> list[tuple]:
    """Every int/float field reachable from ``cls`` (the first item of each list of objects)."""
    out = []
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        optional = type(None) in typing.get_args(hint)
        inner = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
        if inner in (int, float) and f.name != "schema_version":
            out.append((*prefix, f.name))
        elif dataclasses.is_dataclass(inner):
            out += _numeric_paths(inner, (*prefix, f.name))
        elif typing.get_origin(inner) is list and dataclasses.is_dataclass(typing.get_args(inner)[0]):
            out += _numeric_paths(typing.get_args(inner)[0], (*prefix, f.name, 0))
    return out


NUMERIC = _numeric_paths(Snapshot, ())


def test_every_numeric_field_is_found() -> None:
    names = {p[-1] for p in NUMERIC}
    assert {"power_limit_w", "vram_total_mib", "port", "ram_mib", "temperature_c", "index"} <= names
    assert len(NUMERIC) == 29


def _set(data: Any, path: tuple, value: Any) -> None:
    for key in path[:-1]:
        data = data[key]
    data[path[-1]] = value


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -1, 2**60])
@pytest.mark.parametrize("path", NUMERIC, ids=lambda p: ".".join(map(str, p)))
def test_no_number_but_a_finite_count_is_read(tmp_path: Path, path: tuple, value: float) -> None:
    data = base()
    _set(data, path, value)
    with pytest.raises(
        SnapshotError,
        match=rf"{path[-1]}: (.* is not a number from 0 to 2\*\*53|expected an integer, got -?(nan|inf))$",
    ):
        Snapshot.load(write(tmp_path, data))


def test_a_nan_power_limit_is_one_line_for_plan_not_a_traceback(tmp_path: Path) -> None:
    data = base()
    data["gpus"][0]["power_limit_w"] = math.nan
    path = write(tmp_path, data)
    for command in (["plan", "rtx4090"], ["doctor"], ["compat", "check"]):
        line = one_error_line(gpuprov(*command, "--from", str(path)))
        assert "gpus[0].power_limit_w: nan is not a number" in line


def test_deeply_nested_json_is_one_line_for_doctor_plan_and_compat(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(SnapshotError, match="nested too deeply"):
        Snapshot.load(path)
    for command in (["doctor"], ["plan", "rtx4090"], ["compat", "check"]):
        assert "nested too deeply" in one_error_line(gpuprov(*command, "--from", str(path)))


def test_a_huge_integer_literal_is_an_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text(BASE.read_text().replace('"ram_mib": ', '"ram_mib": ' + "9" * 5000 + ', "x": '))
    with pytest.raises(SnapshotError, match="number too long"):
        Snapshot.load(path)


@pytest.mark.parametrize("field", ["driver_version", "kernel_module_version", "nvml_library_version"])
def test_a_snapshot_driver_version_is_checked_as_driver_is(tmp_path: Path, field: str) -> None:
    data = base()
    data["driver"][field] = "garbage.x"
    with pytest.raises(SnapshotError, match=rf"driver.{field}: 'garbage.x' is not a driver version"):
        Snapshot.load(write(tmp_path, data))


def test_compat_refuses_a_garbage_driver_from_a_snapshot_as_from_driver(tmp_path: Path) -> None:
    data = base()
    data["driver"]["driver_version"] = "garbage.x"
    from_snapshot = gpuprov("compat", "check", "--from", str(write(tmp_path, data)))
    from_flag = gpuprov("compat", "check", "--from", str(BASE), "--driver", "garbage.x")
    assert "is not a driver version" in one_error_line(from_snapshot)
    assert "is not a driver version" in one_error_line(from_flag)


def test_a_cuda_version_that_is_not_one_is_refused(tmp_path: Path) -> None:
    data = base()
    data["driver"]["cuda_driver_version"] = "twelve"
    with pytest.raises(SnapshotError, match="cuda_driver_version: 'twelve' is not a CUDA version"):
        Snapshot.load(write(tmp_path, data))


def test_real_driver_versions_still_load() -> None:
    for path in SNAPSHOTS.glob("*.json"):
        Snapshot.load(path)


def test_a_file_too_big_for_a_snapshot_is_refused_before_parsing(tmp_path: Path) -> None:
    data = base()
    data["gpus"][0]["name"] = "x" * (MAX_FILE_BYTES + 1)
    with pytest.raises(SnapshotError, match=r"larger than 16 MiB: not a gpuprov snapshot"):
        Snapshot.load(write(tmp_path, data))


def test_a_huge_gpu_name_is_refused_with_its_field(tmp_path: Path) -> None:
    data = base()
    data["gpus"][0]["name"] = "x" * (MAX_STRING_CHARS + 1)
    with pytest.raises(SnapshotError, match=r"gpus\[0\].name: a text of 65537 characters, more than the 65536"):
        Snapshot.load(write(tmp_path, data))


def test_a_huge_dict_key_is_refused(tmp_path: Path) -> None:
    data = base()
    data["env"] = {"x" * (MAX_STRING_CHARS + 1): "1"}
    with pytest.raises(SnapshotError, match=r"snapshot.env \(a name\): a text of 65537 characters"):
        Snapshot.load(write(tmp_path, data))


@pytest.mark.parametrize(
    ("path", "value"), [(("gpus",), "list"), (("env",), "dict"), (("gpus", 0, "clock_event_reasons"), "list")]
)
def test_too_many_items_are_refused(tmp_path: Path, path: tuple, value: str) -> None:
    data = base()
    many = MAX_ITEMS + 1
    _set(
        data,
        path,
        [data["gpus"][0]] * many
        if path == ("gpus",)
        else {f"V{i}": "1" for i in range(many)}
        if value == "dict"
        else ["gpu_idle"] * many,
    )
    with pytest.raises(SnapshotError, match=rf"{path[-1]}: {many} (items|entries), more than the {MAX_ITEMS}"):
        Snapshot.load(write(tmp_path, data))


def test_error_lines_quote_a_value_escaped_and_cut(tmp_path: Path) -> None:
    data = base()
    data["gpus"][0]["compute_capability"] = "\x1b[2J" + "9" * 500
    with pytest.raises(SnapshotError) as info:
        Snapshot.load(write(tmp_path, data))
    message = str(info.value)
    assert "\x1b" not in message and "\\x1b[2J" in message and len(message) < 250


def test_untrusted_text_is_made_printable_when_loaded(tmp_path: Path) -> None:
    data = base()
    data["gpus"][0]["name"] = "RTX\x1b[31m\n ERROR [forged] line\u202e\r\t"
    data["env"] = {"CUDA\x1b_HOME": "/opt\n/cuda"}
    snap = Snapshot.load(write(tmp_path, data))
    assert snap.gpus[0].name == "RTX\\x1b[31m\\n ERROR [forged] line\\u202e\\r\\t"
    assert snap.env == {"CUDA\\x1b_HOME": "/opt\\n/cuda"}


def test_secret_environment_values_are_never_kept() -> None:
    env = {
        "VLLM_API_KEY": "sk-1234",
        "HF_TOKEN": "hf_x",
        "OLLAMA_AUTH": "a",
        "DB_PASSWORD": "pw",
        "SOME_CREDENTIALS": "c",
        "OLLAMA_HOST": "http://user:pa55@gpu-box:11434",
        "HTTPS_PROXY": "http://bob@proxy:3128/x",
        "BARE": "user:pw@host:11434",
        "PATH": "/usr/bin:/bin",
    }
    assert masked_env(env) == {
        "VLLM_API_KEY": "(set, 7 chars)",
        "HF_TOKEN": "(set, 4 chars)",
        "OLLAMA_AUTH": "(set, 1 chars)",
        "DB_PASSWORD": "(set, 2 chars)",
        "SOME_CREDENTIALS": "(set, 1 chars)",
        "OLLAMA_HOST": "http://***@gpu-box:11434",
        "HTTPS_PROXY": "http://***@proxy:3128/x",
        "BARE": "***@host:11434",
        "PATH": "/usr/bin:/bin",
    }


def test_a_snapshot_file_that_holds_a_secret_does_not_give_it_back(tmp_path: Path) -> None:
    data = base()
    data["env"] = {"VLLM_API_KEY": "sk-live-1", "OLLAMA_HOST": "http://u:p@h:1"}
    snap = Snapshot.load(write(tmp_path, data))
    assert "sk-live-1" not in snap.to_json() and "u:p@" not in snap.to_json()
    again = Snapshot.load(write(tmp_path, snap.to_dict(), "again.json")).redacted()
    assert again.env == {"VLLM_API_KEY": "(set, 9 chars)", "OLLAMA_HOST": "http://***@h:1"}, "masked once"


def test_redacted_scrubs_the_user_name_and_hostname_everywhere() -> None:
    snap = Snapshot.from_dict(base())
    snap.host = HostInfo(hostname="gpu-box-7")
    snap.note = "recorded by alice on gpu-box-7"
    snap.python.interpreter = "/srv/alice/venv/bin/python"
    snap.env = {"HF_HOME": "/data/alice/hf", "VLLM_X": "/home/bob/models", "OTHER": "malice"}
    red = snap.redacted(user="alice")
    assert red.note == "recorded by USER on HOST"
    assert red.python.interpreter == "/srv/USER/venv/bin/python"
    assert red.env == {"HF_HOME": "/data/USER/hf", "VLLM_X": "/home/USER/models", "OTHER": "malice"}
    assert red.host.hostname is None and "alice" not in red.to_json().replace("malice", "")


@pytest.mark.parametrize("version", ["", "bad version", "\x1b[31m"])
def test_compat_refuses_a_snapshot_package_version_as_with_does(tmp_path: Path, version: str) -> None:
    """Found by the hostile-snapshot property test: a tracked package's version that is not one was a traceback."""
    data = base()
    data["python"]["packages"] = {"torch": {"name": "torch", "version": version, "cuda_variant": None}}
    line = one_error_line(gpuprov("compat", "check", "--from", str(write(tmp_path, data))))
    assert "the snapshot's torch version" in line and "is not a version (PEP 440)" in line
    one_error_line(gpuprov("compat", "check", "--with", f"torch=={version or 'x'}"))  # exit 2 for both
