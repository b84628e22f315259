"""gpuprov monitor / exporter on replayed snapshots: the live view on a recording console (a GPU falls off
the bus mid-run), drift against the applied profile, soak records and reports, the exporter's text, and
vLLM's /metrics from a published response."""

from __future__ import annotations

import contextlib
import http.server
import json
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from provision import applystate
from provision.bench.historydb import SCHEMA_V1, SCHEMA_VERSION
from provision.errors import UsageError
from provision.monitor import soak
from provision.monitor.exporter import registry_for
from provision.monitor.htmlreport import render_html
from provision.monitor.sampling import Monitor
from provision.monitor.servers import ServerWatcher, parse_prometheus_text, vllm_figures
from provision.monitor.soakstore import SoakStore
from provision.monitor.view import render
from provision.replay import ReplayNvml

DATA = Path(__file__).resolve().parents[1] / "data"
SNAPSHOTS = DATA / "snapshots"


def _state(tmp_path: Path, name: str, **gpu_fields: object) -> Path:
    data = json.loads((SNAPSHOTS / name).read_text())
    for gpu in data["gpus"]:
        gpu.update(gpu_fields)
    path = tmp_path / "replay.json"
    path.write_text(json.dumps(data))
    return path


def _replace(path: Path, data: dict) -> None:
    """Write as another process would: a new file renamed over the old one."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def _lose_gpu(state: Path, index: int) -> None:
    data = json.loads(state.read_text())
    snap = data.get("snapshot", data)
    snap["gpus"][index].setdefault("unavailable", {})["handle"] = "gpu_lost"
    _replace(state, data)


def _monitor(state: Path, state_dir: Path, **kwargs: object) -> Monitor:
    return Monitor(ReplayNvml.from_state_file(state), state_dir=state_dir, **kwargs)  # type: ignore[arg-type]


def test_vllm_metrics_from_a_published_response() -> None:
    text = (DATA / "servers" / "vllm-0.7-qwen2.5-coder-1.5b.metrics.txt").read_text()
    figures = vllm_figures(parse_prometheus_text(text))
    assert figures == {
        "requests_running": 0.0,
        "requests_waiting": 0.0,
        "kv_cache_used_pct": 0.0,
        "generated_tokens_total": 955.0,
        "prompt_tokens_total": 148.0,
        "requests_ok_total": 4.0,
        "preemptions_total": 0.0,
    }


def test_live_view_on_a_recording_console_when_a_gpu_falls_off_the_bus(tmp_path: Path) -> None:
    state = _state(tmp_path, "rtx2080x2.published.json", sm_clock_mhz=1515, memory_clock_mhz=7000)
    with _monitor(state, tmp_path / "state") as mon:
        first = mon.sample().to_dict()
        _lose_gpu(state, 1)  # another process (the test) changes the GPU under the running monitor
        second = mon.sample().to_dict()
    assert [g["lost"] for g in first["gpus"]] == [False, False]
    assert [g["lost"] for g in second["gpus"]] == [False, True]
    console = Console(record=True, width=200, color_system=None)
    console.print(render(first, notes=mon.notes))
    console.print(render(second, notes=mon.notes))
    text = console.export_text()
    assert text.count("NVIDIA GeForce RTX 2080") == 4  # both GPUs named in both samples, the lost one too
    assert "1515 / 7000 MHz" in text
    lost_line = next(line for line in text.splitlines() if "lost:" in line)
    assert lost_line.lstrip("│ ").startswith("1 NVIDIA GeForce RTX 2080")
    assert mon.errors == {(1, "handle"): 1}  # counted once per sample, not once per field


def test_drift_against_the_applied_profile(tmp_path: Path) -> None:
    state = _state(tmp_path, "rtx4090.constructed.json", clock_event_reasons_mask=0x4 | 0x20)
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    applystate.set_applied_profile(state_dir, "rtx4090")
    with _monitor(state, state_dir) as mon:
        sample = mon.sample().to_dict()
    gpu = sample["gpus"][0]
    assert gpu["profile"] == {"name": "rtx4090", "power_limit_w": 250, "locked_clocks_mhz": None}
    assert gpu["drift"] == ["limit 450 W, profile rtx4090 says 250 W (lost after a reboot or a driver reload?)"]
    console = Console(record=True, width=220, color_system=None)
    console.print(render(sample, notes=mon.notes))
    text = console.export_text()
    assert "power cap, thermal (driver)" in text
    assert "GPU 0: limit 450 W, profile rtx4090 says 250 W" in text


def test_no_profile_applied_is_said_not_guessed(tmp_path: Path) -> None:
    state = _state(tmp_path, "rtx4090.constructed.json")
    with _monitor(state, tmp_path / "none") as mon:
        sample = mon.sample().to_dict()
    assert sample["gpus"][0]["profile"] is None and sample["gpus"][0]["drift"] == []
    assert mon.notes == ["no profile applied on this host (gpuprov apply PROFILE): no reference to compare with"]


def test_exporter_text_labels_reasons_drift_and_a_lost_gpu(tmp_path: Path) -> None:
    state = _state(tmp_path, "rtx4090.constructed.json", clock_event_reasons_mask=0x20)
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    applystate.set_applied_profile(state_dir, "rtx4090")
    with _monitor(state, state_dir) as mon:
        registry, collector = registry_for(mon)
        before = _families(generate_latest(registry).decode())
        _lose_gpu(state, 0)
        after = _families(generate_latest(registry).decode())
    labels = {"gpu": "0", "uuid": "GPU-a1b2c3d4-0000-0000-0000-000000004090", "name": "NVIDIA GeForce RTX 4090"}
    uuid = before["gpuprov_gpu_up"][0][0]["uuid"]
    labels["uuid"] = uuid
    assert before["gpuprov_gpu_up"] == [(labels, 1.0)]
    assert (labels, 450.0) in before["gpuprov_gpu_power_limit_watts"]
    assert (labels | {"profile": "rtx4090"}, 250.0) in before["gpuprov_profile_power_limit_watts"]
    assert (labels | {"profile": "rtx4090"}, 1.0) in before["gpuprov_profile_drift"]
    reasons = {s[0]["reason"]: s[1] for s in before["gpuprov_gpu_clock_event_reason"]}
    assert reasons["sw_thermal_slowdown"] == 1.0 and reasons["sw_power_cap"] == 0.0
    assert after["gpuprov_gpu_up"] == [(labels, 0.0)]
    assert "gpuprov_gpu_temperature_celsius" not in after  # no stale value for a lost GPU
    assert collector.collect_failures == 0


def test_exporter_survives_nvml_failing_to_start(tmp_path: Path) -> None:
    data = json.loads((SNAPSHOTS / "rtx4090.constructed.json").read_text())
    data["driver"]["nvml"] = {"ok": False, "kind": "driver_not_loaded", "message": "x"}
    state = tmp_path / "replay.json"
    state.write_text(json.dumps(data))
    with _monitor(state, tmp_path / "s") as mon:
        registry, _ = registry_for(mon)
        fams = _families(generate_latest(registry).decode())
    assert fams["gpuprov_nvml_up"] == [({}, 0.0)]
    assert "gpuprov_gpu_up" not in fams


def _families(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_soak_record_and_report_figures(tmp_path: Path) -> None:
    """10 samples 60 s apart on a replayed RTX 4090 at 300 W; VRAM climbs 60 MiB per sample (3600 MiB/h);
    thermal slowdown from the 6th sample on."""
    state = _state(tmp_path, "rtx4090.constructed.json", power_draw_w=300.0, vram_used_mib=1000)
    clock = _Clock()
    with (
        _monitor(state, tmp_path / "s", monotonic=clock.monotonic) as mon,
        SoakStore(tmp_path / "h.db", write=True) as store,
    ):
        original = mon.sample
        count = {"n": 0}

        def sample() -> object:
            n = count["n"]
            count["n"] += 1
            data = json.loads(state.read_text())
            gpu = data["gpus"][0]
            gpu["vram_used_mib"] = 1000 + 60 * n
            gpu["clock_event_reasons_mask"] = 0x20 if n >= 5 else 0x1
            _replace(state, data)
            return original()

        mon.sample = sample  # type: ignore[method-assign]
        run_id = soak.record(
            mon,
            store,
            duration_s=540,
            interval_s=60,
            units=[],
            hostname="h",
            profile=None,
            clock=(clock.monotonic, clock.sleep),
        )
        summary = soak.summarize(store.monitor_run(run_id), store.monitor_samples(run_id))
    gpu = summary["gpus"][0]
    assert gpu["samples"] == 10
    assert gpu["throttled_s"] == {"sw_thermal_slowdown": 300.0}  # 5 samples x 60 s
    assert gpu["energy_wh"] == pytest.approx(300 * 600 / 3600)  # 10 samples standing for 60 s each
    assert gpu["power_draw_w_mean"] == 300.0
    assert gpu["vram_slope_mib_per_h"] == pytest.approx(3600.0)
    assert gpu["vram_used_mib_max"] == 1540
    html = render_html(summary, store_samples := SoakStore(tmp_path / "h.db").monitor_samples(run_id))
    assert html.count("<svg") == 3  # temperature, power, VRAM (no clocks or throughput in this replay)
    assert "<script" not in html and " src=" not in html and 'href="http' not in html  # loads nothing
    assert len(store_samples) == 10


def test_report_text_is_escaped_in_html(tmp_path: Path) -> None:
    summary = {
        "run": {
            "id": 1,
            "created_at": "t",
            "hostname": "<b>host</b>",
            "profile": None,
            "interval_s": 1,
            "duration_s": 1,
            "gpu_names": None,
        },
        "gpus": [],
        "servers": [],
        "units": [],
        "notes": [],
    }
    assert "&lt;b&gt;host&lt;/b&gt;" in render_html(summary, [])


def test_history_v1_migrates_to_v2_keeping_bench_runs(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    con.executescript(SCHEMA_V1)
    con.execute(
        "INSERT INTO runs (sweep_id, created_at, url, model, workload_key, concurrency, complete, requests_ok, "
        "requests_failed, duration_s, token_source, result_json, workload_json, server_json, host_json, notes_json) "
        "VALUES ('s', 't', 'u', 'm', 'k', 1, 1, 1, 0, 1.0, 'usage', '{}', '{}', '{}', '{}', '[]')"
    )
    con.execute("PRAGMA user_version = 1")
    con.commit()
    con.close()
    with SoakStore(path) as store:
        run_id = store.start_monitor_run(
            created_at="t", hostname=None, profile=None, interval_s=1, gpu_names=None, units=[], notes=[]
        )
        assert run_id == 1
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    assert con.execute("SELECT model FROM runs").fetchall() == [("m",)]
    con.close()


def test_report_without_runs_is_one_line(tmp_path: Path) -> None:
    with SoakStore(tmp_path / "h.db", write=True) as store, pytest.raises(UsageError, match="no monitor run"):
        store.monitor_run(None)


@given(st.text(max_size=20))
def test_parse_duration_accepts_only_times(text: str) -> None:
    try:
        seconds = soak.parse_duration(text)
    except UsageError as exc:
        assert "--duration" in str(exc)
        return
    assert 0 < seconds <= soak.MAX_DURATION_S


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("8h", 28800), ("1.5d", 129600)])
def test_parse_duration_units(text: str, seconds: float) -> None:
    assert soak.parse_duration(text) == seconds


def test_cli_bad_server_is_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {
        "GPUPROV_NVML_REPLAY": str(_state(tmp_path, "rtx4090.constructed.json")),
        "PATH": "/usr/bin:/bin",
        "GPUPROV_STATE_DIR": str(tmp_path / "s"),
        "HOME": str(tmp_path),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "provision", "monitor", "--once", "--server", "vllm:http://x"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and "--server 'vllm:http://x'" in proc.stderr
    assert shutil.which("true")  # the environment above keeps /usr/bin


@contextlib.contextmanager
def _http(answer: Callable[[str], tuple[int, bytes]]) -> Iterator[str]:
    """A loopback HTTP server answering GET PATH with ``answer(PATH)``; yields its base URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = answer(self.path)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_vllm_watcher_over_http_gives_tokens_per_second() -> None:
    """The recorded /metrics served on loopback, the generation counter moved by 100 tokens between reads."""
    recorded = (DATA / "servers" / "vllm-0.7-qwen2.5-coder-1.5b.metrics.txt").read_text()
    bodies = [recorded, recorded.replace("} 955.0", "} 1055.0")]
    clock = iter([10.0, 12.0])
    with _http(lambda path: (200, bodies.pop(0).encode()) if path == "/metrics" else (404, b"")) as url:
        watcher = ServerWatcher(url, "vllm", monotonic=lambda: next(clock))
        first, second = watcher.read(), watcher.read()
    assert first.up and "generated_tokens_per_s" not in first.figures
    assert second.figures["generated_tokens_per_s"] == 50.0  # 100 tokens in 2 s
    assert second.figures["requests_running"] == 0.0 and second.figures["kv_cache_used_pct"] == 0.0


def test_a_gpu_that_reports_only_the_t_limit_margin(tmp_path: Path) -> None:
    state = _state(tmp_path, "rtx4090.constructed.json", temperature_slowdown_c=None, temperature_margin_c=3)
    with _monitor(state, tmp_path / "s") as mon:
        sample = mon.sample().to_dict()
        registry, _ = registry_for(mon)
        fams = _families(generate_latest(registry).decode())
    console = Console(record=True, width=220, color_system=None)
    console.print(render(sample))
    assert "3 °C to T.Limit" in console.export_text()
    assert [v for _, v in fams["gpuprov_gpu_temperature_margin_celsius"]] == [3.0]


def test_llama_cpp_unit_reader_falls_back_to_slots() -> None:
    """A llama-server started without --metrics answers /metrics with 501 (not supported): /slots says it."""
    slots = b'[{"id": 0, "is_processing": true}, {"id": 1, "is_processing": false}]'
    not_supported = b'{"error": {"code": 501, "type": "not_supported_error"}}'
    with _http(lambda path: (200, slots) if path == "/slots" else (501, not_supported)) as url:
        reading = ServerWatcher(url, "llama_cpp").read()
    assert reading.up and reading.figures == {"requests_running": 1, "slots": 2}


def test_unit_restarts_during_a_run_from_systemctl_show() -> None:
    """NRestarts at the start and at the end of the run, as ``systemctl show`` gives them."""
    run = {
        "id": 1,
        "created_at": "t",
        "hostname": None,
        "profile": None,
        "interval_s": 1.0,
        "duration_s": 1.0,
        "gpu_names": None,
        "notes": [],
        "units": [
            {
                "unit": "gpuprov-vllm.service",
                "start": {"unit": "gpuprov-vllm.service", "NRestarts": "2", "ActiveState": "active"},
                "end": {"unit": "gpuprov-vllm.service", "NRestarts": "5", "ActiveState": "active", "Result": "success"},
            },
            "gpuprov-llama-cpp.service",
        ],
    }
    assert soak.summarize(run, [])["units"] == [
        {"unit": "gpuprov-vllm.service", "restarts": 3, "state_end": "active", "result_end": "success", "error": None}
    ]


def test_live_view_runs_for_its_duration(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {
        "GPUPROV_NVML_REPLAY": str(_state(tmp_path, "rtx4090.constructed.json")),
        "PATH": "/usr/bin:/bin",
        "GPUPROV_STATE_DIR": str(tmp_path / "s"),
        "HOME": str(tmp_path),
        "COLUMNS": "200",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "provision", "monitor", "--no-installed", "--duration", "1s", "--interval", "0.2"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "NVIDIA GeForce RTX 4090" in proc.stdout and "450 W" in proc.stdout


def test_xid_events_counted_in_view_and_exporter(tmp_path: Path) -> None:
    """The replay plays the Xid events its state file lists (79: fell off the bus) to the NVML event set."""
    data = {"snapshot": json.loads((SNAPSHOTS / "rtx2080x2.published.json").read_text()), "calls": []}
    state = tmp_path / "replay.json"
    state.write_text(json.dumps(data))
    with _monitor(state, tmp_path / "s") as mon:
        assert mon.notes == ["no profile applied on this host (gpuprov apply PROFILE): no reference to compare with"]
        data["xid_events"] = [{"gpu": 1, "xid": 79}, {"gpu": 1, "xid": 79}, {"gpu": 0, "xid": 48}]
        _replace(state, data)
        deadline = time.monotonic() + 10
        while sum(mon._xid.snapshot().values()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        sample = mon.sample().to_dict()
        registry, _ = registry_for(mon)
        fams = _families(generate_latest(registry).decode())
    assert [g["xid_errors"] for g in sample["gpus"]] == [{"48": 1}, {"79": 2}]
    with SoakStore(tmp_path / "h.db", write=True) as store:
        run_id = store.start_monitor_run(
            created_at="t", hostname=None, profile=None, interval_s=1, gpu_names=None, units=[], notes=[]
        )
        store.add_monitor_sample(run_id, sample)
        summary = soak.summarize(store.monitor_run(run_id), store.monitor_samples(run_id))
    assert [g["xid_errors"] for g in summary["gpus"]] == [{"48": 1}, {"79": 2}]
    assert sorted((s[0]["gpu"], s[0]["xid"], s[1]) for s in fams["gpuprov_gpu_xid_errors_total"]) == [
        ("0", "48", 1.0),
        ("1", "79", 2.0),
    ]
    console = Console(record=True, width=200, color_system=None)
    console.print(render(sample))
    assert "GPU 1: Xid 79 reported 2 time(s) since the start" in console.export_text()


def test_bad_xid_events_in_a_replay_state_is_one_error(tmp_path: Path) -> None:
    from provision.errors import SnapshotError

    data = {"snapshot": json.loads((SNAPSHOTS / "rtx4090.constructed.json").read_text()), "xid_events": [{"gpu": -1}]}
    state = tmp_path / "replay.json"
    state.write_text(json.dumps(data))
    with pytest.raises(SnapshotError, match="xid_events must be a list"):
        ReplayNvml.from_state_file(state)


def _report_html_without_matplotlib(tmp_path: Path, db: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """``gpuprov monitor report --html`` in a Python where ``import matplotlib`` fails (None in sys.modules)."""
    code = (
        "import runpy, sys; sys.modules['matplotlib'] = None; "
        f"sys.argv = ['gpuprov', 'monitor', 'report', '--db', {str(db)!r}, '--html', {str(out)!r}]; "
        "runpy.run_module('provision', run_name='__main__')"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GPUPROV_STATE_DIR": str(tmp_path / "s")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)


def test_html_report_without_matplotlib_says_how_to_install_it(tmp_path: Path) -> None:
    """matplotlib is the report extra: without it --html is one line naming the extra, and nothing is
    written or migrated (a schema-1 history stays at schema 1)."""
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.executescript(SCHEMA_V1)
    con.execute("PRAGMA user_version = 1")
    con.commit()
    con.close()
    out = tmp_path / "report.html"
    proc = _report_html_without_matplotlib(tmp_path, db, out)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "matplotlib, which is not installed" in proc.stderr
    assert "uv pip install 'gpuprov[report]'" in proc.stderr
    assert not out.exists()
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 1
    con.close()


def test_html_report_from_the_cli_draws_the_plots(tmp_path: Path) -> None:
    """With matplotlib (the report extra, in the dev group), the same command writes the plots."""
    state = _state(tmp_path, "rtx4090.constructed.json", power_draw_w=300.0)
    clock = _Clock()
    db = tmp_path / "h.db"
    with _monitor(state, tmp_path / "s", monotonic=clock.monotonic) as mon, SoakStore(db, write=True) as store:
        soak.record(
            mon,
            store,
            duration_s=120,
            interval_s=60,
            units=[],
            hostname="h",
            profile=None,
            clock=(clock.monotonic, clock.sleep),
        )
    out = tmp_path / "report.html"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GPUPROV_STATE_DIR": str(tmp_path / "s")}
    proc = subprocess.run(
        [sys.executable, "-m", "provision", "monitor", "report", "--db", str(db), "--html", str(out)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.read_text(encoding="utf-8").count("<svg") == 3  # temperature, power, VRAM


def test_matplotlib_is_only_the_report_extra() -> None:
    """The installed gpuprov's own metadata (written by the build backend) asks for matplotlib only under the
    report extra, and importing the monitor and its commands does not import it."""
    import importlib.metadata

    from packaging.requirements import Requirement

    plotting = [Requirement(r) for r in importlib.metadata.requires("gpuprov") or [] if r.startswith("matplotlib")]
    assert plotting and all(str(r.marker) == 'extra == "report"' for r in plotting), plotting
    code = (
        "import sys, provision.cli.monitor, provision.monitor.htmlreport, provision.monitor.soak, "
        "provision.monitor.exporter; print('matplotlib' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "False"


def test_html_report_plots_clocks_and_server_throughput(tmp_path: Path) -> None:
    """A replayed RTX 2080 pair at 1800/7000 MHz, and a vLLM (its recorded /metrics on loopback) generating
    600 tokens between samples 60 s apart: all five plots are drawn, the throughput at 10 tokens/s."""
    from provision.monitor.htmlreport import PLOTS, figures

    state = _state(tmp_path, "rtx2080x2.published.json", sm_clock_mhz=1800, memory_clock_mhz=7000)
    recorded = (DATA / "servers" / "vllm-0.7-qwen2.5-coder-1.5b.metrics.txt").read_text()
    reads = {"n": 0}

    def answer(path: str) -> tuple[int, bytes]:
        if path != "/metrics":
            return 404, b""
        reads["n"] += 1
        return 200, recorded.replace("} 955.0", f"}} {955 + 600 * reads['n']}.0").encode()

    clock = _Clock()
    with _http(answer) as url:
        watcher = ServerWatcher(url, "vllm", monotonic=clock.monotonic)
        with (
            _monitor(state, tmp_path / "s", monotonic=clock.monotonic, servers=[watcher]) as mon,
            SoakStore(tmp_path / "h.db", write=True) as store,
        ):
            run_id = soak.record(
                mon,
                store,
                duration_s=180,
                interval_s=60,
                units=[],
                hostname="h",
                profile=None,
                clock=(clock.monotonic, clock.sleep),
            )
            run, samples = store.monitor_run(run_id), store.monitor_samples(run_id)
    drawn = figures(samples)
    assert sorted(drawn) == sorted(name for name, _ in PLOTS)
    (line,) = drawn["throughput"].axes[0].get_lines()
    assert list(line.get_ydata()) == [10.0, 10.0, 10.0]  # the first read has no rate yet
    clocks = {line.get_label(): set(line.get_ydata()) for line in drawn["clocks"].axes[0].get_lines()}
    assert clocks == {"GPU 0 SM": {1800}, "GPU 0 memory": {7000}, "GPU 1 SM": {1800}, "GPU 1 memory": {7000}}
    assert render_html(soak.summarize(run, samples), samples).count("<svg") == 5
