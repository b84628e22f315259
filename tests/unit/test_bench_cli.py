"""``gpuprov bench`` end to end as a user runs it (a subprocess: real exit codes, stdout, stderr),
against the local test server, with GPUs from the NVML replay backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from provision.bench.gpu import GpuMonitor
from provision.errors import SnapshotError
from provision.replay import ReplayNvml
from tests.conftest import load_snapshot
from tests.unit.test_bench_server import FakeServer, Script


def gpuprov(*args: str, env: dict[str, str] | None = None, rc: int | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "GPUPROV_NVML_REPLAY"}
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "provision", *args], capture_output=True, text=True, env=full_env)
    if rc is not None:
        assert proc.returncode == rc, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.fixture
def hot_gpu(tmp_path: Path) -> Path:
    """A replay state: one RTX 4080, busy, held back by its thermal limit (sw_thermal_slowdown)."""
    snap = load_snapshot("rtx4080")
    gpu = snap.gpus[0]
    gpu.utilization_gpu_pct, gpu.power_draw_w, gpu.temperature_c = 97, 296.5, 83
    gpu.clock_event_reasons_mask = 0x20
    path = tmp_path / "hot4080.json"
    path.write_text(snap.to_json())
    return path


@pytest.fixture
def no_driver(tmp_path: Path) -> Path:
    snap = load_snapshot("rtx4080")
    snap.driver.nvml.ok, snap.driver.nvml.kind, snap.gpus = False, "library_not_found", []
    path = tmp_path / "nodriver.json"
    path.write_text(snap.to_json())
    return path


def test_sweep_json_stores_history_compares_and_estimates(tmp_path: Path, hot_gpu: Path) -> None:
    db = str(tmp_path / "bench.db")
    env = {"GPUPROV_NVML_REPLAY": str(hot_gpu)}
    with FakeServer(Script(tokens=6, per_token_s=0.005, capacity=2)) as srv:
        proc = gpuprov(
            "bench",
            srv.url + "/v1",
            "--model",
            "fake-model",
            "-c",
            "1,2,4",
            "-n",
            "8",
            "--max-tokens",
            "6",
            "--db",
            db,
            "--profile",
            "quiet",
            "--engine",
            "vllm",
            "--engine-version",
            "0.11.0",
            "--json",
            env=env,
            rc=0,
        )
    data = json.loads(proc.stdout)
    assert [lv["concurrency"] for lv in data["levels"]] == [1, 2, 4]
    assert all(lv["requests_ok"] == 8 and lv["requests_failed"] == 0 for lv in data["levels"])
    assert data["best"]["concurrency"] in (1, 2, 4) and data["stored_run_ids"] == [1, 2, 3]
    assert data["levels"][0]["token_source"] == "usage" and data["usage_requested"] is True
    assert data["server"]["engine"] == "vllm" and data["server"]["models"] == ["fake-model"]
    assert data["host"]["gpus"][0]["name"] == "NVIDIA GeForce RTX 4080"
    gpu = data["levels"][0]["gpu"]
    assert gpu["status"] == "ok" and gpu["samples"] >= 2
    [g] = gpu["gpus"]
    assert (g["utilization_gpu_pct_mean"], g["power_draw_w_mean"], g["temperature_c_max"]) == (97, 296.5, 83)
    assert g["throttle_reasons"] == {"sw_thermal_slowdown": 1.0}

    history = json.loads(gpuprov("bench", "history", "--db", db, "--json", rc=0).stdout)
    assert [r["id"] for r in history["runs"]] == [3, 2, 1]
    assert history["runs"][0]["profile"] == "quiet" and history["runs"][0]["engine_version"] == "0.11.0"
    best_id = next(r["id"] for r in history["runs"] if r["is_best"])
    assert best_id == data["stored_run_ids"][[1, 2, 4].index(data["best"]["concurrency"])]

    # without --profile, the run records the profile `gpuprov apply` last applied here
    state = tmp_path / "state"
    state.mkdir()
    (state / "profile.json").write_text('{"profile": "rtx4080"}')
    db2 = str(tmp_path / "bench2.db")
    with FakeServer(Script(tokens=2, per_token_s=0.001, capacity=2)) as srv:
        gpuprov(
            "bench",
            srv.url + "/v1",
            "--model",
            "fake-model",
            "-c",
            "1",
            "-n",
            "2",
            "--max-tokens",
            "2",
            "--db",
            db2,
            "--no-gpu",
            "--json",
            env={"GPUPROV_STATE_DIR": str(state)},
            rc=0,
        )
    newest = json.loads(gpuprov("bench", "history", "--db", db2, "--json", rc=0).stdout)["runs"][0]
    assert newest["profile"] == "rtx4080"

    cmp = json.loads(gpuprov("bench", "history", "--db", db, "--compare", "1", "3", "--json", rc=0).stdout)
    tps = next(c for c in cmp["changes"] if c["metric"] == "output tokens/s")
    assert tps["ratio"] == pytest.approx(tps["after"] / tps["before"])
    assert "different concurrency (1 / 4)" in cmp["warnings"]

    est = json.loads(gpuprov("bench", "estimate", "--requests", "200000", "--db", db, "--json", rc=0).stdout)
    assert len(est["estimates"]) == 3
    for e in est["estimates"]:
        assert e["seconds"] == pytest.approx(200000 / e["requests_per_s"])
    assert est["estimates"] == sorted(est["estimates"], key=lambda e: e["seconds"])

    table = gpuprov("bench", "estimate", "-n", "200000", "--db", db, rc=0).stdout
    assert "time for 200,000 requests" in table and "vllm 0.11.0" in table


def test_table_names_best_level_throttling_and_storage(tmp_path: Path, hot_gpu: Path) -> None:
    db = tmp_path / "bench.db"
    with FakeServer(Script(tokens=4)) as srv:
        proc = gpuprov(
            "bench",
            srv.url,
            "-m",
            "fake-model",
            "-c",
            "1,2",
            "-n",
            "4",
            "--db",
            str(db),
            env={"GPUPROV_NVML_REPLAY": str(hot_gpu)},
            rc=0,
        )
    out = proc.stdout
    assert "best concurrency:" in out
    assert "GPU held back by heat or power: GPU 0 (sw_thermal_slowdown 100%)" in out
    assert "output tokens counted from: usage" in out
    assert f"stored as run 1–2 in {db}" in out
    listing = gpuprov("bench", "history", "--db", str(db), rc=0).stdout
    assert "fake-model" in listing and "NVIDIA GeForce RTX 4080" in listing


def test_no_gpu_is_reported_not_fatal(tmp_path: Path, no_driver: Path) -> None:
    with FakeServer(Script(tokens=2)) as srv:
        proc = gpuprov(
            "bench",
            srv.url,
            "-m",
            "fake-model",
            "-n",
            "2",
            "--db",
            str(tmp_path / "b.db"),
            env={"GPUPROV_NVML_REPLAY": str(no_driver)},
            rc=0,
        )
    assert "no GPU samples: libnvidia-ml.so.1" in proc.stdout


def test_errors_mid_run_exit_1_with_partial_results_shown_and_stored(tmp_path: Path) -> None:
    db = str(tmp_path / "b.db")
    with FakeServer(Script(tokens=3, http_errors={2: 503}, stream_errors={4: 1})) as srv:
        proc = gpuprov("bench", srv.url, "-m", "fake-model", "-n", "6", "--db", db, "--no-gpu", rc=1)
    # progress lines (stderr, "bench: ...") and then the one line that says why the exit code is 1
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == "gpuprov: 2 of 6 requests failed: HTTP 503: injected failure of request 2"
    assert all(line.startswith("bench: ") for line in lines[:-1])
    assert "1 failed: HTTP 503" in proc.stdout and "1 failed: the server reported an error mid-stream" in proc.stdout
    [run] = json.loads(gpuprov("bench", "history", "--db", db, "--json", rc=0).stdout)["runs"]
    assert run["results"]["requests_failed"] == 2 and run["results"]["requests_ok"] == 4


def test_server_dying_mid_run_keeps_what_was_measured(tmp_path: Path) -> None:
    db = str(tmp_path / "b.db")
    with FakeServer(Script(tokens=2, hang_from=3)) as srv:
        proc = gpuprov(
            "bench",
            srv.url,
            "-m",
            "fake-model",
            "-n",
            "50",
            "--timeout",
            "0.2",
            "--db",
            db,
            "--warmup",
            "0",
            "--no-gpu",
            "--json",
            rc=1,
        )
    data = json.loads(proc.stdout)
    assert data["stop_reason"].startswith("stopped after 5 failed requests in a row: no data from the server")
    assert data["levels"][0]["requests_ok"] == 3 and data["stored_run_ids"] == [1]
    assert "gpuprov: 5 of 8 requests failed: stopped after 5 failed requests in a row" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["localhost:8000"], "is not a URL"),
        (["ftp://h/"], "must start with http:// or https://"),
        (["http://127.0.0.1:1", "-c", "1,x"], "--concurrency takes comma-separated positive integers"),
        (["http://127.0.0.1:1", "-c", "0"], "--concurrency takes comma-separated positive integers"),
        (["http://127.0.0.1:1", "--max-tokens", "0"], "--max-tokens must be at least 1"),
        (["http://127.0.0.1:1", "--prompts", "/nonexistent.jsonl"], "/nonexistent.jsonl: no such file"),
        (["http://127.0.0.1:1", "--timeout", "0"], "--timeout must be more than 0"),
        (["http://127.0.0.1:1", "--request-timeout", "0"], "--request-timeout must be more than 0"),
        (["http://127.0.0.1:1", "--request-timeout", "inf"], "--request-timeout must be more than 0"),
        (["http://[::1"], "is not a valid URL (Invalid IPv6 URL)"),  # issue 14, item 9: was a traceback
    ],
)
def test_bad_usage_is_one_line_exit_2_and_nothing_stored(tmp_path: Path, args: list[str], message: str) -> None:
    db = tmp_path / "b.db"
    proc = gpuprov("bench", *args, "-m", "x", "--db", str(db), rc=2)
    assert proc.stderr.count("\n") == 1 and message in proc.stderr and proc.stderr.startswith("gpuprov: error: ")
    assert not db.exists()


def test_server_down_is_one_line_and_nothing_stored(tmp_path: Path) -> None:
    srv = FakeServer()
    srv.httpd.server_close()
    db = tmp_path / "b.db"
    proc = gpuprov("bench", srv.url, "-m", "x", "--db", str(db), rc=1)
    assert proc.stderr == (
        f"gpuprov: error: cannot connect to {srv.url}: connection refused — is the server running on port {srv.port}?\n"
    )
    with __import__("sqlite3").connect(db) as con:
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 0


def test_wrong_model_fails_at_warm_up_with_the_servers_message(tmp_path: Path) -> None:
    with FakeServer(Script(http_errors={1_000_000_000: 404})) as srv:
        proc = gpuprov("bench", srv.url, "-m", "nope", "--db", str(tmp_path / "b.db"), rc=1)
    assert "the warm-up request to" in proc.stderr and "HTTP 404: injected failure" in proc.stderr


def test_history_and_estimate_without_a_database(tmp_path: Path) -> None:
    proc = gpuprov("bench", "history", "--db", str(tmp_path / "none.db"), rc=2)
    assert "no bench history at" in proc.stderr
    proc = gpuprov("bench", "estimate", "-n", "0", "--db", str(tmp_path / "none.db"), rc=2)
    assert "--requests must be at least 1" in proc.stderr


def test_xdg_data_home_is_the_default_place(tmp_path: Path) -> None:
    with FakeServer(Script(tokens=1)) as srv:
        gpuprov("bench", srv.url, "-m", "fake-model", "-n", "1", "--no-gpu", env={"XDG_DATA_HOME": str(tmp_path)}, rc=0)
    assert (tmp_path / "gpuprov" / "bench.db").is_file()
    assert "fake-model" in gpuprov("bench", "history", env={"XDG_DATA_HOME": str(tmp_path)}, rc=0).stdout


def test_bench_alone_shows_help() -> None:
    proc = gpuprov("bench")
    assert "history" in proc.stdout + proc.stderr and "estimate" in proc.stdout + proc.stderr


# -- GPU sampling through the probe, in process -----------------------------------------------------


def test_monitor_summarises_readings_between_two_times(hot_gpu: Path) -> None:
    with GpuMonitor(lambda: ReplayNvml.from_state_file(hot_gpu), interval_s=0.01) as monitor:
        import time

        start = time.perf_counter()
        time.sleep(0.1)
        summary = monitor.summary(start, time.perf_counter())
    assert summary["status"] == "ok" and summary["samples"] >= 2
    assert summary["gpus"][0]["throttle_reasons"] == {"sw_thermal_slowdown": 1.0}


def test_monitor_with_an_unreadable_replay_file_reports_why(tmp_path: Path) -> None:
    def broken() -> ReplayNvml:
        raise SnapshotError(f"replay state {tmp_path}/x.json: cannot read: no such file")

    with GpuMonitor(broken) as monitor:
        summary = monitor.summary(0, 1e12)
    assert summary == {
        "status": f"replay state {tmp_path}/x.json: cannot read: no such file",
        "interval_s": 1.0,
        "samples": 0,
        "gpus": [],
    }


def test_ctrl_c_keeps_and_stores_what_finished_exit_130(tmp_path: Path) -> None:
    import signal
    import time

    db = str(tmp_path / "b.db")
    with FakeServer(Script(tokens=5, per_token_s=0.05)) as srv:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "provision",
                "bench",
                srv.url,
                "-m",
                "fake-model",
                "-n",
                "200",
                "--warmup",
                "0",
                "--no-gpu",
                "--db",
                db,
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={k: v for k, v in os.environ.items() if k != "GPUPROV_NVML_REPLAY"},
        )
        deadline = time.monotonic() + 30
        while len(srv.bodies) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err
    data = json.loads(out)
    assert data["stop_reason"] == "interrupted (Ctrl-C)"
    level = data["levels"][0]
    assert 3 <= level["requests_ok"] < 200 and level["requests_failed"] == 0
    [run] = json.loads(gpuprov("bench", "history", "--db", db, "--json", rc=0).stdout)["runs"]
    assert run["stop_reason"] == "interrupted (Ctrl-C)" and run["results"]["requests_ok"] == level["requests_ok"]


def test_ignored_max_tokens_is_named_and_never_compared_as_the_same_workload(tmp_path: Path) -> None:
    """Issue 20, item 3: 200 tokens a request under --max-tokens 32 was stored as max_tokens=32."""
    db = str(tmp_path / "b.db")
    common = ("-m", "fake-model", "-n", "2", "--max-tokens", "32", "--no-gpu", "--db", db, "--json")
    with FakeServer(Script(tokens=200)) as honest:
        first = json.loads(gpuprov("bench", honest.url, *common, rc=0).stdout)
    with FakeServer(Script(tokens=200, ignore_max_tokens=True)) as ignoring:
        second = json.loads(gpuprov("bench", ignoring.url, *common, rc=0).stdout)
    assert first["request_timeout_s"] == 60 + 0.5 * 32
    assert not any("ignores max_tokens" in n for n in first["notes"])
    assert any("the server ignores max_tokens: 2 of 2 answered requests" in n for n in second["notes"])
    assert second["workload"]["max_tokens_ignored_up_to"] == 200
    runs = json.loads(gpuprov("bench", "history", "--db", db, "--json", rc=0).stdout)["runs"]
    assert runs[0]["workload_key"].endswith("max_tokens=32 (ignored by the server: up to 200 generated)")
    cmp = json.loads(gpuprov("bench", "history", "--db", db, "--compare", "1", "2", "--json", rc=0).stdout)
    assert any(w.startswith("different workloads") for w in cmp["warnings"])
    est = json.loads(gpuprov("bench", "estimate", "-n", "10", "--db", db, "--json", rc=0).stdout)
    assert len(est["estimates"]) == 2  # two configurations, not one mixing both


class _HostileServer(FakeServer):
    """Every completion fails with an error message full of rich markup and control characters."""

    MESSAGE = "[/x] boom [bold]\x1b[31mred\nFindings: forged"

    def handle_completion(self, handler: Any, body: dict[str, Any]) -> None:
        handler._json(500, {"error": {"message": self.MESSAGE}})


def test_server_text_with_markup_and_control_characters_is_printed_inert(tmp_path: Path) -> None:
    """A closing tag in a server's error message was a rich MarkupError traceback."""
    with _HostileServer(Script()) as srv:
        proc = gpuprov("bench", srv.url, "-m", "fake-model", "--warmup", "0", "-n", "2", "--no-gpu", "--no-store", rc=1)
    shown = "HTTP 500: [/x] boom [bold]\\x1b[31mred\\nFindings: forged"
    assert f"c=1: 2 failed: {shown}" in proc.stdout
    assert proc.stderr.splitlines()[-1] == f"gpuprov: 2 of 2 requests failed: {shown}"
    assert "\x1b" not in proc.stdout + proc.stderr
    assert not any(line.startswith("Findings: forged") for line in (proc.stdout + proc.stderr).splitlines())
