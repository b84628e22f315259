"""Every ``gpuprov bench`` run ends in bounded time, whatever the server does (issue 20, item 1; issue
14, item 11): a total deadline per request, ``--duration`` cutting what still runs at a level's
end, one bounded look at a hung server. Bounds on wall time are generous (deadline + 10 s): they
prove the run is bounded, not how fast gpuprov is, so a loaded machine cannot make them flake."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from provision.bench.client import CUT_AT_LEVEL_END
from provision.bench.config import default_request_timeout_s
from provision.bench.deadline import Watchdog
from provision.bench.runner import run_bench, run_level
from provision.bench.serverinfo import BenchError
from tests.unit.test_bench_measure import config
from tests.unit.test_bench_server import FakeServer, Script

#: what "returns within the deadline plus a few seconds" allows on a loaded 2-core machine
MARGIN_S = 10.0


def test_watchdog_cuts_at_the_deadline_and_not_after_cancel() -> None:
    dog = Watchdog()
    cut, kept = threading.Event(), threading.Event()
    start = time.perf_counter()
    dog.watch(start + 0.2, cut.set)
    dog.watch(start + 0.1, kept.set).cancel()
    assert cut.wait(5)
    assert time.perf_counter() - start >= 0.2
    assert not kept.is_set()


def test_watchdog_forgets_cancelled_entries() -> None:
    dog = Watchdog()
    far = time.perf_counter() + 3600
    for _ in range(5000):
        dog.watch(far, lambda: None).cancel()
    assert len(dog._heap) < 2100  # compacted, not 5000 dead entries waiting an hour


def test_trickling_server_is_cut_at_the_request_deadline() -> None:
    """One token every 2 s, 64 asked for, an idle timeout it never trips: the deadline ends it."""
    with FakeServer(Script(per_token_s=2.0, tokens=64)) as srv:
        start = time.perf_counter()
        level = run_level(config(srv.url, requests=8, timeout_s=8.0, request_timeout_s=1.5), 1)
        elapsed = time.perf_counter() - start
    assert level.requests_failed == 1 and level.requests_ok == 0  # the first one ran out of time: stop
    assert level.errors == {"no complete answer within 1.5 s (--request-timeout)": 1}
    assert level.stop_reason is not None and "none of the first 1 requests finished in time" in level.stop_reason
    assert 1.5 <= elapsed < 1.5 + MARGIN_S


def test_trickle_at_concurrency_stops_after_one_wave() -> None:
    with FakeServer(Script(per_token_s=2.0, tokens=64)) as srv:
        start = time.perf_counter()
        level = run_level(config(srv.url, requests=40, timeout_s=8.0, request_timeout_s=1.0), 4)
        elapsed = time.perf_counter() - start
    # the first wave ran out of time: the level stops, and any request sent meanwhile is cut, not waited for
    assert level.requests_failed == 4 and level.requests_ok == 0
    assert level.requests_sent == 4 + level.requests_cut
    assert elapsed < 1.0 + MARGIN_S


def test_trickling_warm_up_fails_within_the_deadline() -> None:
    with FakeServer(Script(per_token_s=2.0, tokens=64)) as srv:
        start = time.perf_counter()
        with pytest.raises(BenchError, match=r"warm-up request .* no complete answer within 1 s"):
            run_bench(config(srv.url, warmup=1, timeout_s=8.0, request_timeout_s=1.0))
        assert time.perf_counter() - start < 1.0 + MARGIN_S


def test_hung_server_is_asked_once_within_the_deadline() -> None:
    """Accepts connections, never answers: one GET, bounded, then one clear error (item 4)."""
    with FakeServer(Script(silent=True)) as srv:
        start = time.perf_counter()
        with pytest.raises(BenchError, match=r"did not answer GET /v1/models within 1 s: is the server hung"):
            run_bench(config(srv.url, warmup=1, timeout_s=30.0, request_timeout_s=1.0))
        elapsed = time.perf_counter() - start
        requests_seen = len(srv.connections)
    assert requests_seen == 2  # the reachability connect, and one GET: no retries, no more probes
    assert 1.0 <= elapsed < 1.0 + MARGIN_S


def test_duration_cuts_requests_still_running_after_the_grace() -> None:
    """Each request would take 64 × 0.5 s = 32 s; the level is 0.5 s, cut 2 s after its end."""
    from provision.bench.runner import LEVEL_END_GRACE_S

    with FakeServer(Script(per_token_s=0.5, tokens=64)) as srv:
        start = time.perf_counter()
        level = run_level(config(srv.url, duration_s=0.5, timeout_s=30.0, request_timeout_s=60.0), 3)
        elapsed = time.perf_counter() - start
    assert (level.requests_cut, level.requests_failed, level.requests_ok) == (3, 0, 0)
    assert level.errors == {} and level.latency_ms.count == 0 and level.ttft_ms.count == 0
    assert all(r.error == CUT_AT_LEVEL_END for r in level.request_results)
    assert level.complete  # cut at the end is how a --duration level ends, not a stop
    assert 0.5 + LEVEL_END_GRACE_S <= elapsed < 0.5 + LEVEL_END_GRACE_S + MARGIN_S


def test_duration_keeps_the_answered_and_cuts_the_rest() -> None:
    """Fast answers within the level are all kept; a slow one still running after the grace is cut."""
    with FakeServer(Script(per_token_s=0.02, tokens=4)) as fast:
        level = run_level(config(fast.url, duration_s=0.3), 1)
    assert level.requests_cut == 0 and level.requests_ok >= 2 and level.requests_failed == 0
    with FakeServer(Script(per_token_s=0.3, tokens=20)) as slow:
        run = run_bench(config(slow.url, concurrencies=[1], duration_s=0.2, timeout_s=30.0, request_timeout_s=60.0))
    [lv] = run.levels
    assert lv.requests_cut == 1 and lv.requests_failed == 0
    assert run.best is None  # nothing answered: no figures to choose from
    assert any("requests were cut (still running 2 s after" in n for n in run.notes)


def test_default_deadline_grows_with_max_tokens() -> None:
    assert default_request_timeout_s(128) == 124.0
    assert default_request_timeout_s(4096) == 60.0 + 2048.0
    with FakeServer() as srv:
        cfg = config(srv.url)
    assert cfg.request_timeout_s == default_request_timeout_s(64)


def _gpuprov(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "GPUPROV_NVML_REPLAY"}
    proc = subprocess.run(
        [sys.executable, "-m", "provision", *args], capture_output=True, text=True, env=env, timeout=timeout_s
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_cli_trickling_server_ends_within_the_deadline_with_one_clear_line(tmp_path: Path) -> None:
    """The reported case: --timeout 8 against a token every 5 s under --max-tokens 128 ran ~10 min."""
    with FakeServer(Script(per_token_s=5.0, tokens=128)) as srv:
        start = time.perf_counter()
        proc = _gpuprov(
            "bench",
            srv.url,
            "-m",
            "fake-model",
            "--timeout",
            "8",
            "--request-timeout",
            "3",
            "--max-tokens",
            "128",
            "--no-gpu",
            "--db",
            str(tmp_path / "b.db"),
        )
        elapsed = time.perf_counter() - start
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("gpuprov: error: the warm-up request to")
    assert "no complete answer within 3 s (--request-timeout)" in proc.stderr
    assert elapsed < 3 + MARGIN_S


def test_cli_progress_goes_to_stderr_and_stdout_stays_json(tmp_path: Path) -> None:
    with FakeServer(Script(tokens=2)) as srv:
        proc = _gpuprov(
            "bench",
            srv.url,
            "-m",
            "fake-model",
            "-c",
            "1,2",
            "-n",
            "2",
            "--no-gpu",
            "--json",
            "--db",
            str(tmp_path / "b.db"),
        )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)  # nothing else on stdout
    assert [lv["concurrency"] for lv in data["levels"]] == [1, 2]
    lines = proc.stderr.splitlines()
    assert lines[0] == "bench: warm-up: 1 request (not measured)"
    assert "bench: concurrency 1: sending 2 requests" in lines
    assert any(line.startswith("bench: concurrency 2: 2 answered, 0 failed in ") for line in lines)


def test_cli_help_states_the_deadline_default() -> None:
    proc = _gpuprov("bench", "run", "--help")
    text = " ".join(proc.stdout.split())
    assert "--request-timeout" in text and "60 s + 0.5 s × --max-tokens" in text


def _read_only_dir(path: Path) -> bool:
    """Make ``path`` unwritable even for root (chattr +i); False where that cannot be done."""
    path.chmod(0o555)
    if os.geteuid() != 0:
        return True
    return subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0


def test_cli_db_in_a_read_only_directory_says_why(tmp_path: Path) -> None:
    """Issue 14, item 14: it said "not a gpuprov bench history database"."""
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "old.db").write_bytes(b"")
    if not _read_only_dir(ro):
        pytest.skip("cannot make a directory read-only here (no chattr)")
    try:
        new = _gpuprov("bench", "http://127.0.0.1:9", "-m", "m", "--db", str(ro / "bench.db"))
        old = _gpuprov("bench", "http://127.0.0.1:9", "-m", "m", "--db", str(ro / "old.db"))
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(ro)], check=False)
        ro.chmod(0o755)
    assert new.returncode == 2 and new.stderr.count("\n") == 1
    assert f"{ro / 'bench.db'}: cannot create the bench history: " in new.stderr
    assert old.returncode == 2 and "cannot make files in" in old.stderr and "journal" in old.stderr
    assert "not a gpuprov bench history" not in new.stderr + old.stderr
