"""Real Prometheus parts: Debian's ``prometheus`` scrapes ``gpuprov exporter`` (a replayed RTX 4090) on
loopback and its HTTP API answers PromQL with the replayed values; ``promtool`` checks and unit-tests the
shipped alert rules (and a rule file with a wrong ``for:`` fails those tests)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "provision/data/prometheus/gpuprov-alerts.yml"
RULE_TESTS = REPO / "tests/data/prometheus/gpuprov-alerts.test.yml"
SNAPSHOT = REPO / "tests/data/snapshots/rtx4090.constructed.json"


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} not installed: Debian package prometheus (scripts/test installs it)"
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_promtool_checks_and_tests_the_rules(tmp_path: Path) -> None:
    promtool = _tool("promtool")
    check = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 8 rules found" in check.stdout
    run = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name], capture_output=True, text=True, cwd=RULE_TESTS.parent
    )
    assert run.returncode == 0, run.stdout + run.stderr
    # the tests can fail: thermal throttling that must last 30 minutes does not fire at 6
    (tmp_path / "provision/data/prometheus").mkdir(parents=True)
    (tmp_path / "tests/data/prometheus").mkdir(parents=True)
    wrong = RULES.read_text().replace("for: 5m\n", "for: 30m\n", 1)
    (tmp_path / "provision/data/prometheus" / RULES.name).write_text(wrong)
    shutil.copy(RULE_TESTS, tmp_path / "tests/data/prometheus")
    bad = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name],
        capture_output=True,
        text=True,
        cwd=tmp_path / "tests/data/prometheus",
    )
    assert bad.returncode != 0 and "GpuprovThermalThrottling" in bad.stdout + bad.stderr


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[0]} exited with {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{url} did not answer within {timeout_s} s: {log.read_text()[-3000:]}")
        time.sleep(0.3)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    data = json.loads(SNAPSHOT.read_text())
    data["gpus"][0]["clock_event_reasons_mask"] = 0x4 | 0x20  # power cap + thermal slowdown
    data["gpus"][0]["temperature_c"] = 83
    state = tmp_path / "replay.json"
    state.write_text(json.dumps(data))
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "profile.json").write_text(json.dumps({"profile": "rtx4090", "applied_at": "2026-12-04T00:00:00"}))
    port = _free_port()
    env = {**os.environ, "GPUPROV_NVML_REPLAY": str(state), "GPUPROV_STATE_DIR": str(state_dir)}
    log = tmp_path / "exporter.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "provision", "exporter", "--port", str(port), "--no-installed"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        _wait_http(f"http://127.0.0.1:{port}/metrics", proc, log)
        yield f"127.0.0.1:{port}", state
    finally:
        _stop(proc)
        assert "Traceback" not in log.read_text()


def _query(base: str, promql: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]["result"]


def _poll(base: str, promql: str, timeout_s: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        result = _query(base, promql)
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def test_prometheus_scrapes_the_exporter(exporter: tuple[str, Path], tmp_path: Path) -> None:
    target, state = exporter
    port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{json.dumps(str(RULES))}]\n"
        f"scrape_configs:\n  - job_name: gpuprov\n    static_configs: [{{targets: ['{target}']}}]\n"
    )
    log = tmp_path / "prometheus.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                _tool("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{base}/-/ready", proc, log)
        limit = _poll(base, "gpuprov_gpu_power_limit_watts")
        assert [float(r["value"][1]) for r in limit] == [450.0]
        assert limit[0]["metric"]["name"] == "NVIDIA GeForce RTX 4090" and limit[0]["metric"]["gpu"] == "0"
        assert limit[0]["metric"]["uuid"].startswith("GPU-")
        temp = _query(base, "gpuprov_gpu_temperature_celsius")
        assert [float(r["value"][1]) for r in temp] == [83.0]
        thermal = _query(base, 'gpuprov_gpu_clock_event_reason{reason="sw_thermal_slowdown"} == 1')
        assert len(thermal) == 1
        assert _query(base, 'gpuprov_gpu_clock_event_reason{reason="hw_slowdown"} == 1') == []
        drift = _query(base, "gpuprov_profile_drift")
        assert [(r["metric"]["profile"], float(r["value"][1])) for r in drift] == [("rtx4090", 1.0)]
        assert [float(r["value"][1]) for r in _query(base, "gpuprov_profile_power_limit_watts")] == [250.0]
        # the GPU falls off the bus while the exporter runs: it keeps answering, the GPU reads 0 and errors count
        data = json.loads(state.read_text())
        data["gpus"][0].setdefault("unavailable", {})["handle"] = "gpu_lost"
        tmp = state.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(state)
        assert len(_poll(base, "gpuprov_gpu_up == 0")) == 1
        assert len(_poll(base, "gpuprov_probe_errors_total > 0")) == 1
        assert [float(r["value"][1]) for r in _query(base, 'up{job="gpuprov"}')] == [1.0]
    finally:
        _stop(proc)
