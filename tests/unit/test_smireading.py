"""nvidia-smi -q / -q -x readings as snapshots (provision.smireading), on readings written from published
values (tests/data/readings/) and the one taken on gpuprov's device machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provision import smireading
from provision.errors import SnapshotError
from provision.snapshot import Snapshot
from tests.conftest import DATA

READINGS = DATA / "readings"


def reading(name: str) -> smireading.SmiReading:
    return smireading.read((READINGS / name).read_text(encoding="utf-8"), source=name)


# name → (GPUs, driver, CUDA, (enforced, requested, default, min, max) W of GPU 0, persistence, MIG, form, schema)
EXPECTED = {
    "rtx4090-535.qx.xml": (1, "535.86.05", "12.2", (450, 450, 450, 10, 600), True, None, "v12"),
    "rtx4090x8-550.q.txt": (8, "550.127.05", "12.4", (450, 450, 450, 150, 450), True, None, None),
    "rtx4080super-595.q.txt": (1, "595.71.05", "13.2", (320, 320, 320, 150, 400), False, None, None),
    "rtx4070laptop-566.q.txt": (1, "566.36", "12.7", (61.24, None, 55, 5, 140), True, None, None),
    "rtx3060laptop-515.qx.xml": (1, "515.65.01", "11.7", (None, None, None, None, None), False, None, "v11"),
    "h100-590.q.txt": (1, "590.48.01", "13.1", (700, 700, 700, 200, 700), True, False, None),
    "h100mig-590.q.txt": (1, "590.48.01", "13.1", (700, 700, 700, 200, 700), True, True, None),
    "a100mig-510.qx.xml": (1, "510.47.03", "11.6", (400, 400, 400, 100, 400), False, True, "v11"),
    "a100-535.qx.xml": (1, "535.54.03", "12.2", (500, 500, 500, 100, 500), False, True, "v12"),
    "l40s-595.q.txt": (1, "595.80", "13.2", (350, 350, 350, 100, 350), False, None, None),
    "l4-550.q.txt": (1, "550.90.07", "12.4", (72, 72, 72, 40, 72), True, None, None),
    "rtx3090-525.qx.xml": (1, "525.147.05", "12.0", (200, 200, 350, 100, 375), True, None, "v12"),
    "rtx3090-590.qx.xml": (1, "590.44.01", "13.1", (350, 350, 350, 100, 480), True, None, "v13"),
    "rtx2080x2-590.qx.xml": (2, "590.44.01", "13.1", (215, 215, 215, 105, 240), True, None, "v13"),
    "h100-580-device.q.txt": (1, "580.159.04", "13.0", (700, 700, 700, 200, 700), True, False, None),
}


def test_every_reading_in_the_folder_is_in_the_table():
    names = {p.name for p in READINGS.iterdir() if p.suffix in (".txt", ".xml")}
    assert names == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reading_maps_driver_power_persistence_and_mig(name):
    count, driver, cuda, power, persistence, mig, schema = EXPECTED[name]
    r = reading(name)
    snap = r.snapshot
    assert len(snap.gpus) == count
    assert (snap.driver.driver_version, snap.driver.cuda_driver_version) == (driver, cuda)
    g = snap.gpus[0]
    got = (g.power_enforced_limit_w, g.power_limit_w, g.power_default_limit_w, g.power_min_limit_w, g.power_max_limit_w)
    assert got == tuple(None if w is None else float(w) for w in power)
    assert (g.persistence_mode, g.mig_enabled, r.schema) == (persistence, mig, schema)
    assert g.compute_capability and g.architecture, "compute capability from the catalog by name"
    assert r.origins[0]["compute_capability"].startswith("catalog")
    assert "Python stack" in snap.note and snap.python.packages == {}
    assert Snapshot.from_dict(json.loads(snap.to_json())) == snap


def test_device_reading_gives_what_nvml_gave_on_the_same_h100():
    """research/device-h100: NVML read limit 700 W, constraints 200-700, persistence 1, ECC on, MIG off,
    PCIe gen 5 x16, clock-event reasons 1 (idle), max SM clock 1980 MHz, cc 9.0, Hopper."""
    g = reading("h100-580-device.q.txt").snapshot.gpus[0]
    assert (g.power_limit_w, g.power_enforced_limit_w, g.power_min_limit_w, g.power_max_limit_w) == (700, 700, 200, 700)
    assert (g.persistence_mode, g.ecc_enabled, g.mig_enabled) == (True, True, False)
    assert (g.pcie_generation_max, g.pcie_width_max, g.clock_event_reasons_mask) == (5, 16, 1)
    assert (g.max_sm_clock_mhz, g.compute_capability, g.architecture) == (1980, "9.0", "Hopper")
    assert g.vram_total_mib == 81559 and g.vram_reserved_mib == 480
    # temperatures printed only as offsets to T.Limit: the absolute thresholds stay unknown, and say why
    assert g.temperature_c == 34 and g.temperature_slowdown_c is None
    assert "T.Limit" in g.unavailable["temperature_slowdown_c"]


def test_not_available_stays_unknown_never_zero():
    g = reading("rtx3060laptop-515.qx.xml").snapshot.gpus[0]
    assert g.power_limit_w is None and g.power_default_limit_w is None and g.power_min_limit_w is None
    assert g.unavailable["power_limit_w"] == "not_supported"
    assert g.unavailable["power_constraints_w"] == "not_supported"
    assert g.power_draw_w == 8.70
    assert g.ecc_enabled is None and g.unavailable["ecc_enabled"] == "not_supported"


def test_laptop_with_range_but_no_requested_limit_refuses_the_setter():
    """Driver 566 laptop: min/max and the enforced limit read, the requested limit N/A (NVML's getter
    NOT_SUPPORTED), the enforced limit above the default (Dynamic Boost)."""
    r = reading("rtx4070laptop-566.q.txt")
    g = r.snapshot.gpus[0]
    assert g.unavailable["set_power_limit"] == "not_supported"
    assert r.origins[0]["set_power_limit"].startswith("inferred")
    assert "GPU 0 refuses power-limit changes" in r.snapshot.note
    assert g.power_enforced_limit_w > g.power_default_limit_w
    assert r.snapshot.host.laptop is True
    assert any("before the reading" in w for w in r.warnings), "the PowerShell prompt line is chatter"


def test_trimmed_reading_says_how_many_gpus_it_lacks():
    assert any("4 GPU(s) attached, 1" in w for w in reading("a100-535.qx.xml").warnings)


def test_gpus_sharing_one_uuid_are_told_apart_by_index():
    r = reading("rtx2080x2-590.qx.xml")
    assert [g.uuid for g in r.snapshot.gpus] == [None, None]
    assert any("same UUID" in w for w in r.warnings)


def test_throttle_reasons_old_and_new_names():
    text = (
        (READINGS / "rtx3090-590.qx.xml")
        .read_text()
        .replace("<clocks_event_reason_sw_power_cap>Not Active", "<clocks_event_reason_sw_power_cap>Active")
    )
    g = smireading.read(text).snapshot.gpus[0]
    assert g.clock_event_reasons == ["gpu_idle", "sw_power_cap"]
    old = reading("rtx3090-525.qx.xml").snapshot.gpus[0]
    assert old.clock_event_reasons == ["gpu_idle"]


def test_pasted_with_prompt_and_fences_reads_the_same_gpus_with_a_warning():
    body = (READINGS / "rtx4090x8-550.q.txt").read_text()
    pasted = f"Here is my output:\n\n```\n$ nvidia-smi -q\n{body}```\n\nThanks!\n"
    r = smireading.read(pasted)
    assert [g.pci_bus_id for g in r.snapshot.gpus] == [
        g.pci_bus_id for g in reading("rtx4090x8-550.q.txt").snapshot.gpus
    ]
    assert any("before" in w for w in r.warnings) and any("after" in w for w in r.warnings)
    xml = (READINGS / "rtx3090-590.qx.xml").read_text()
    rx = smireading.read(f"```xml\n{xml}```\nthat was it")
    assert rx.snapshot.gpus[0].power_max_limit_w == 480.0 and len(rx.warnings) == 2


def test_cut_off_reading_keeps_the_gpus_before_the_cut_and_warns():
    body = (READINGS / "rtx4090x8-550.q.txt").read_text()
    cut = body[: body.index("GPU 00000000:58:00.0") + 200]
    r = smireading.read(cut)
    assert len(r.snapshot.gpus) == 5 and r.snapshot.gpus[4].name == "NVIDIA GeForce RTX 4090"
    xml = (READINGS / "rtx2080x2-590.qx.xml").read_text()
    rx = smireading.read(xml[: xml.rindex("<gpu ") + 300])
    assert len(rx.snapshot.gpus) == 2 and rx.snapshot.gpus[1].power_limit_w is None
    assert any("cut off" in w for w in rx.warnings) and "cut off" in rx.snapshot.note


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE nvidia_smi_log [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>
<nvidia_smi_log><driver_version>&b;</driver_version></nvidia_smi_log>"""
EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE nvidia_smi_log SYSTEM "nvsmi_device_v12.dtd">
<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>
<nvidia_smi_log><driver_version>&e;</driver_version></nvidia_smi_log>"""


@pytest.mark.parametrize("text", [BILLION_LAUGHS, EXTERNAL], ids=["entities", "external-entity"])
def test_xml_with_entities_is_refused_and_never_expanded(text):
    with pytest.raises(SnapshotError, match="entities"):
        smireading.read(text)


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CONFIG_HOME": "/nonexistent-gpuprov-config", "COLUMNS": "200"}
    env.pop("GPUPROV_NVML_REPLAY", None)
    return subprocess.run(
        [sys.executable, "-m", "provision", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_doctor_from_an_xml_with_entities_is_one_line(tmp_path):
    bad = tmp_path / "gpu.xml"
    bad.write_text(BILLION_LAUGHS)
    proc = run("doctor", "--from", str(bad))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "gpu.xml" in proc.stderr and "Traceback" not in proc.stderr


# -- properties --------------------------------------------------------------------------------------------

_ALPHABET = (
    st.sampled_from(list('GPU NVSMI LOG Attached GPUs : 0x1 N/A W MiB\n    <>/?!="nvidia_smi_log gpu &;[]'))
    | st.characters()
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.text(_ALPHABET, max_size=400),
    st.sampled_from(["", "==============NVSMI LOG==============\n", "<nvidia_smi_log>"]),
)
def test_arbitrary_text_raises_nothing_but_snapshot_error(text, prefix):
    try:
        r = smireading.read(prefix + text)
    except SnapshotError:
        return
    assert Snapshot.from_dict(r.snapshot.to_dict()) == r.snapshot


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["rtx4090x8-550.q.txt", "rtx2080x2-590.qx.xml", "h100-580-device.q.txt", "a100mig-510.qx.xml"]),
    st.floats(min_value=0.0, max_value=1.0),
)
def test_any_truncation_gives_a_prefix_of_the_gpus(name, fraction):
    body = (READINGS / name).read_text()
    full = [g.pci_bus_id for g in reading(name).snapshot.gpus]
    try:
        r = smireading.read(body[: int(len(body) * fraction)])
    except SnapshotError:
        return  # cut before the reading says what it is
    got = [g.pci_bus_id for g in r.snapshot.gpus]
    assert got == full[: len(got)]
    if fraction < 0.98 and len(body[: int(len(body) * fraction)].rstrip()) < len(body.rstrip()) - 20:
        assert r.warnings or len(got) < len(full)


def test_a_power_only_reading_gives_the_power_and_says_nothing_is_cut():
    """`nvidia-smi -q -d POWER` of a laptop on 590.48.01 (open-gpu-kernel-modules#483): 35/35/5/95 W."""
    lines = [
        "",
        "==============NVSMI LOG==============",
        "",
        "Timestamp : Thu Feb  5 10:00:00 2026",
        "Driver Version : 590.48.01",
        "CUDA Version : 13.1",
        "",
        "Attached GPUs : 1",
        "GPU 00000000:01:00.0",
        "    GPU Power Readings",
        "        Average Power Draw : 4.12 W",
        "        Current Power Limit : 35.00 W",
        "        Requested Power Limit : 35.00 W",
        "        Default Power Limit : 35.00 W",
        "        Min Power Limit : 5.00 W",
        "        Max Power Limit : 95.00 W",
    ]
    r = smireading.read("\n".join(lines) + "\n")
    g = r.snapshot.gpus[0]
    assert (g.power_limit_w, g.power_min_limit_w, g.power_max_limit_w) == (35.0, 5.0, 95.0)
    assert g.name == "unknown" and "compute_capability" in g.unavailable
    assert r.warnings == []


def test_an_overlong_line_ends_the_reading_instead_of_being_parsed():
    """A line no reading has (200 000 characters) ends the reading: it is never scanned by a backtracking
    pattern (a label of spaces once took minutes)."""
    body = (READINGS / "l4-550.q.txt").read_text()
    r = smireading.read(body + "    x" + " " * 200_000 + "y\n")
    assert r.snapshot.gpus[0].power_limit_w == 72.0
    assert any("text after the reading" in w for w in r.warnings)
