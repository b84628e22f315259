from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provision.errors import SnapshotError
from provision.snapshot import SCHEMA_VERSION, GpuInfo, Snapshot
from tests.conftest import snapshot_files


@pytest.mark.parametrize("path", snapshot_files(), ids=lambda p: p.name)
def test_test_snapshots_round_trip_and_say_where_they_come_from(path):
    snap = Snapshot.load(path)
    assert snap.origin in ("recorded", "constructed", "published")
    assert snap.note, "every test snapshot says which machine it describes"
    assert Snapshot.from_dict(json.loads(snap.to_json())) == snap
    assert snap.gpus, "test snapshots describe GPU hosts"


def test_round_trip_keeps_types():
    snap = Snapshot(gpus=[GpuInfo(index=0, name="x", power_limit_w=450.0, vram_total_mib=1024)])
    back = Snapshot.from_dict(json.loads(snap.to_json()))
    assert back.gpus[0].power_limit_w == 450.0
    assert isinstance(back.gpus[0], GpuInfo)


def test_integer_watts_are_accepted_as_floats():
    data = Snapshot(gpus=[GpuInfo(index=0, name="x")]).to_dict()
    data["gpus"][0]["power_limit_w"] = 450
    assert Snapshot.from_dict(data).gpus[0].power_limit_w == 450.0


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(schema_version=99), "schema_version is 99"),
        (lambda d: d.pop("schema_version"), "schema_version is None"),
        (lambda d: d.update(origin="guessed"), "origin"),
        (lambda d: d.update(bogus=1), "unknown field 'bogus'"),
        (lambda d: d["host"].update(cpu_cores="two"), "snapshot.host.cpu_cores: expected an integer"),
        (lambda d: d["host"].update(is_root="yes"), "expected true or false"),
        (lambda d: d.update(gpus={}), "snapshot.gpus: expected a list"),
        (lambda d: d.update(gpus=[{"name": "x"}]), "missing field(s) index"),
    ],
)
def test_bad_snapshots_are_one_clear_error(mutate, message):
    data = Snapshot(gpus=[GpuInfo(index=0, name="x")]).to_dict()
    mutate(data)
    with pytest.raises(SnapshotError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Snapshot.from_dict(data)


def test_load_errors(tmp_path):
    with pytest.raises(SnapshotError, match="no such file"):
        Snapshot.load(tmp_path / "missing.json")
    with pytest.raises(SnapshotError, match="is a directory"):
        Snapshot.load(tmp_path)
    truncated = tmp_path / "t.json"
    truncated.write_text(Snapshot().to_json()[:50])
    with pytest.raises(SnapshotError, match="truncated"):
        Snapshot.load(truncated)
    binary = tmp_path / "b.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SnapshotError, match="cannot read"):
        Snapshot.load(binary)
    arr = tmp_path / "a.json"
    arr.write_text("[1, 2]")
    with pytest.raises(SnapshotError, match="must be a JSON object"):
        Snapshot.load(arr)


def test_redacted_drops_identity_but_keeps_the_rest():
    snap = Snapshot(gpus=[GpuInfo(index=0, name="x", uuid="GPU-123", serial="1650", power_limit_w=100.0)])
    snap.host.hostname = "secret-box"
    snap.env = {"CUDA_VISIBLE_DEVICES": "0", "VLLM_API_KEY": "sk-1", "HF_TOKEN": "hf_x"}
    red = snap.redacted()
    assert red.host.hostname is None
    assert red.gpus[0].uuid is None and red.gpus[0].serial is None
    assert red.gpus[0].power_limit_w == 100.0
    assert red.env == {"CUDA_VISIBLE_DEVICES": "0", "VLLM_API_KEY": "(set, 4 chars)", "HF_TOKEN": "(set, 4 chars)"}
    assert snap.host.hostname == "secret-box", "the original is untouched"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from([*list(Snapshot().to_dict()), "x"]), json_values, max_size=8))
def test_any_json_object_is_a_snapshot_or_a_snapshot_error(data):
    data.setdefault("schema_version", SCHEMA_VERSION)
    with contextlib.suppress(SnapshotError):
        Snapshot.from_dict(data)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutating_any_field_of_a_real_snapshot_never_crashes(data):
    base = json.loads((snapshot_files()[0]).read_text())
    section = data.draw(st.sampled_from(["host", "driver", "python"]))
    key = data.draw(st.sampled_from(sorted(base[section])))
    base[section][key] = data.draw(json_values)
    with contextlib.suppress(SnapshotError):
        Snapshot.from_dict(base)


_TEXT_FIELDS = [
    ("host", "hostname"),
    ("host", "distro"),
    ("host", "cpu_model"),
    ("driver", "driver_version"),
    ("gpus", 0, "name"),
    ("gpus", 0, "architecture"),
    ("gpus", 0, "pci_bus_id"),
    ("gpus", 0, "compute_capability"),
    ("python", "interpreter"),
    ("python", "python_version"),
]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(_TEXT_FIELDS), st.one_of(st.text(max_size=30), st.sampled_from(["[/]", "[bold", "8", "x.y"])))
def test_any_text_field_loads_cleanly_or_not_at_all_then_diagnoses_and_renders(path, value) -> None:
    """Past Snapshot.from_dict, nothing may raise: not diagnose (compat parses compute capabilities), not
    the rich report (text in it is printed, never taken as markup)."""
    import io

    from rich.console import Console

    from provision.diagnosis import diagnose
    from provision.report import render_doctor
    from tests.conftest import load_snapshot

    data = load_snapshot("rtx4090-laptop").to_dict()
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    try:
        snap = Snapshot.from_dict(data)
    except SnapshotError as exc:
        assert "\n" not in str(exc)
        return
    findings = diagnose(snap)
    assert not [f for f in findings if f.id.startswith("doctor.check_failed")], findings
    render_doctor(snap, findings, console=Console(file=io.StringIO(), width=200))
