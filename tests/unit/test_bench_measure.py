"""Measurement correctness: ``gpuprov bench``'s runner against a local server whose timing the test
controls. Bounds come from the scripted delays: a measured time can never be shorter than the delay
the server waited (lower bounds are tight), and the slack above it only covers scheduling on a busy
machine (upper bounds are loose). No assertion is about how fast gpuprov itself is."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from provision.bench.client import Endpoint
from provision.bench.config import BenchConfig
from provision.bench.runner import run_bench, run_level
from provision.bench.serverinfo import BenchError
from provision.bench.stats import percentile
from provision.bench.workload import Workload, load_prompts
from tests.unit.test_bench_server import FakeServer, Script

#: scheduling slack on a loaded 2-core machine (threads, sleeps overshooting)
SLACK_S = 0.08


def config(url: str, **kw: object) -> BenchConfig:
    workload = kw.pop("workload", None) or Workload(api=str(kw.pop("api", "chat")), prompt_tokens=8, max_tokens=64)
    defaults: dict[str, object] = {"warmup": 0, "timeout_s": 5.0}
    defaults.update(kw)
    return BenchConfig(endpoint=Endpoint.parse(url), model="fake-model", workload=workload, **defaults)  # type: ignore[arg-type]


def test_ttft_itl_tpot_and_rates_follow_the_server_delays() -> None:
    ttft_s, per_token_s, tokens, requests = 0.12, 0.03, 6, 4
    with FakeServer(Script(ttft_s=ttft_s, per_token_s=per_token_s, tokens=tokens)) as srv:
        level = run_level(config(srv.url, requests=requests), 1)
    assert level.requests_ok == requests and level.requests_failed == 0
    assert level.token_source == "usage" and level.output_tokens == requests * tokens
    ttft_ms = ttft_s * 1000
    assert ttft_ms <= level.ttft_ms.min and level.ttft_ms.max < ttft_ms + SLACK_S * 1000
    # gaps between events: one per token after the first; single gaps may be shortened by a late one
    assert level.itl_ms.count == requests * (tokens - 1)
    assert per_token_s * 1000 - 5 < level.itl_ms.p50 < (per_token_s + SLACK_S / 2) * 1000
    # time per output token is (latency - TTFT) / (tokens - 1): a first token delivered late (the client's
    # scheduling, not the server's) shortens it a little, as it shortens single gaps
    assert per_token_s * 1000 - 5 < level.tpot_ms.p50 < (per_token_s + SLACK_S / 2) * 1000
    latency_s = ttft_s + (tokens - 1) * per_token_s
    assert latency_s * 1000 <= level.latency_ms.min < (latency_s + SLACK_S) * 1000
    # one request at a time: requests/s is at most 1/latency, output tokens/s is tokens × that
    assert 1 / (latency_s + SLACK_S) < level.requests_per_s <= 1 / latency_s
    assert level.output_tokens_per_s == pytest.approx(level.requests_per_s * tokens)
    per_request = level.request_output_tokens_per_s
    assert tokens / (latency_s + SLACK_S) < per_request.p50 <= tokens / latency_s


def test_concurrency_overlaps_requests_and_multiplies_throughput() -> None:
    ttft_s, per_token_s, tokens = 0.05, 0.02, 6
    latency_s = ttft_s + (tokens - 1) * per_token_s
    with FakeServer(Script(ttft_s=ttft_s, per_token_s=per_token_s, tokens=tokens)) as srv:
        level = run_level(config(srv.url, requests=12), 4)
        assert srv.max_in_flight == 4
    assert level.requests_ok == 12
    # never faster than four at a time allow; and the measured requests really overlapped: the
    # sum of their latencies over the wall time is the mean number in flight (4 but for the edges)
    assert level.requests_per_s <= 4 / latency_s
    mean_in_flight = sum(r.latency_s or 0 for r in level.request_results) / level.duration_s
    assert 2.5 < mean_in_flight <= 4.0
    assert level.output_tokens_per_s == pytest.approx(level.requests_per_s * tokens)


def test_percentiles_come_from_the_per_request_delays(tmp_path: Path) -> None:
    delays_ms = [10 * (i + 1) for i in range(20)]  # 10..200 ms before the first token
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"request delay_ms={d}"}) + "\n" for d in delays_ms))
    loaded, sha = load_prompts(prompts, "completions")
    workload = Workload(api="completions", max_tokens=2, prompts=loaded, prompts_file=str(prompts), prompts_sha256=sha)
    with FakeServer(Script(tokens=2)) as srv:
        level = run_level(config(srv.url, workload=workload, requests=20), 20)
    assert level.requests_ok == 20
    expected = sorted(float(d) for d in delays_ms)
    # 20 requests at once on a shared 2-core machine: a late thread can add ~100 ms; the lower bounds are what
    # tell each percentile apart (p90 >= 181 ms is no p50), the upper ones only that nothing else was measured
    slack_ms = 4 * SLACK_S * 1000
    for pct, measured in ((50, level.ttft_ms.p50), (90, level.ttft_ms.p90), (99, level.ttft_ms.p99)):
        want = percentile(expected, pct)  # 105, 181, 198.1 ms
        assert want <= measured < want + slack_ms, (pct, measured, want)
    assert expected[0] <= level.ttft_ms.min < expected[0] + slack_ms


def test_http_error_and_error_event_mid_stream_are_counted_not_hidden() -> None:
    script = Script(tokens=4, http_errors={2: 500}, stream_errors={5: 2})
    with FakeServer(script) as srv:
        level = run_level(config(srv.url, requests=8), 2)
    assert (level.requests_sent, level.requests_ok, level.requests_failed) == (8, 6, 2)
    assert level.errors == {
        "HTTP 500: injected failure of request 2": 1,
        "the server reported an error mid-stream: injected error mid-stream": 1,
    }
    assert level.output_tokens == 6 * 4  # failed requests' tokens are not throughput
    assert level.complete


def test_stream_dropped_without_done_is_a_failure() -> None:
    with FakeServer(Script(tokens=5, drops={1: 3})) as srv:
        level = run_level(config(srv.url, requests=3), 1)
    assert level.requests_failed == 1
    [message] = level.errors
    assert "closed" in message and "3 text events" in message


def test_streams_cut_only_under_concurrency_get_a_hint() -> None:
    hint = "--interrupt_requests False"
    with FakeServer(Script(tokens=4, per_token_s=0.01, drop_when_busy=True)) as srv:
        concurrent = run_bench(config(srv.url, concurrencies=[1, 2], requests=4))
    assert concurrent.levels[0].requests_failed == 0 and concurrent.levels[1].requests_failed > 0
    assert any(hint in note for note in concurrent.notes)
    with FakeServer(Script(tokens=2, drops={3: 1})) as srv:
        alone = run_bench(config(srv.url, concurrencies=[1, 2], requests=4))
        no_single = run_bench(config(srv.url, concurrencies=[2, 4], requests=4))
    assert not any(hint in note for note in alone.notes)  # cut at 1 too: not that
    # no concurrency-1 level ran: nothing says the cuts were due to concurrency (issue 20, item 4)
    assert [lv.requests_failed for lv in no_single.levels] == [1, 1]
    assert not any(hint in note for note in no_single.notes)


def test_server_dying_mid_run_stops_the_level_and_keeps_what_was_measured() -> None:
    srv = FakeServer(Script(tokens=3, per_token_s=0.01))
    srv.__enter__()
    stopped = False

    def progress(concurrency: int, done: int, planned: int | None, elapsed: float) -> None:
        nonlocal stopped
        if done == 4 and not stopped:
            stopped = True
            srv.stop()

    level = run_level(config(srv.url, requests=100, timeout_s=2.0), 1, on_progress=progress)
    assert level.requests_ok == 4
    assert level.requests_failed == 5  # max(5, 2 × 1) in a row, then it stops
    assert level.requests_sent == 9 < 100
    assert level.stop_reason is not None and "5 failed requests in a row" in level.stop_reason
    assert "connection refused" in level.stop_reason
    assert not level.complete


def test_an_answer_without_text_counts_as_answered_without_a_ttft() -> None:
    with FakeServer(Script(tokens=3, empty={1})) as srv:
        run = run_bench(config(srv.url, requests=3))
    [level] = run.levels
    assert (level.requests_ok, level.requests_failed, level.requests_without_text) == (3, 0, 1)
    assert level.ttft_ms.count == 2 and level.output_tokens == 6
    assert any(note.startswith("1 requests generated no text") for note in run.notes)


def test_hung_server_times_out_each_request_after_timeout() -> None:
    timeout_s = 0.3
    with FakeServer(Script(tokens=2, hang_from=2)) as srv:
        start = time.perf_counter()
        level = run_level(config(srv.url, requests=20, timeout_s=timeout_s), 1)
        elapsed = time.perf_counter() - start
    assert level.requests_ok == 2 and level.requests_failed == 5
    assert level.errors == {"no data from the server for 0.3 s (--timeout)": 5}
    assert elapsed >= 5 * timeout_s  # each hung request waited the full timeout before failing


def test_tokens_from_usage_when_sent_else_counted_events() -> None:
    script = Script(tokens=8, tokens_per_event=2)
    with FakeServer(script) as srv:
        with_usage = run_level(config(srv.url, requests=2), 1)
        without = run_level(config(srv.url, requests=2, include_usage=False), 1)
    assert with_usage.token_source == "usage" and with_usage.output_tokens == 2 * 8
    # 4 events of 2 tokens (" tok tok"): estimated from the text's length, not counted as 4 events
    assert without.token_source == "estimated" and without.output_tokens == 2 * 8


def test_warmup_falls_back_when_the_server_rejects_stream_options() -> None:
    with FakeServer(Script(tokens=3, reject_stream_options=True)) as srv:
        run = run_bench(config(srv.url, requests=2, warmup=1))
    assert not run.config.include_usage
    assert any("stream_options" in note for note in run.notes)
    assert run.levels[0].requests_ok == 2 and run.levels[0].token_source == "estimated"
    assert any("output tokens estimated from the streamed text" in note for note in run.notes)


def test_warmup_failure_stops_before_measuring_with_the_servers_message() -> None:
    with FakeServer(Script(http_errors={1_000_000_000: 404})) as srv, pytest.raises(BenchError) as info:
        run_bench(config(srv.url, requests=2, warmup=1))
    assert "warm-up request" in str(info.value) and "HTTP 404: injected failure" in str(info.value)


def test_server_down_is_one_clear_error() -> None:
    srv = FakeServer()
    url = srv.url
    srv.httpd.server_close()  # the port is free again: nothing listens there
    with pytest.raises(BenchError, match="connection refused — is the server running on port"):
        run_bench(config(url, requests=1))


def test_sweep_names_the_level_where_throughput_peaks() -> None:
    # per-token time grows as (in flight / 4)^1.5 past 4: throughput peaks at 4 concurrent requests
    script = Script(per_token_s=0.01, tokens=12, capacity=4, overload_exponent=1.5)
    with FakeServer(script) as srv:
        run = run_bench(config(srv.url, concurrencies=[2, 4, 8]))
    assert [lv.concurrency for lv in run.levels] == [2, 4, 8]
    assert [lv.requests_sent for lv in run.levels] == [8, 16, 32]  # default: 4 × concurrency, at least 8
    assert run.best is not None and run.best.concurrency == 4
    assert run.best_reason == "highest output tokens/s without errors"


def test_sweep_slo_picks_the_fastest_level_whose_p90_latency_fits() -> None:
    # past 4 in flight, per-token time grows as (in flight / 4)^0.5: 8 gives more tokens/s (~1.4×)
    # but each request takes longer: 19 × 20 ms = 380 ms at 4, 19 × 28.3 ms = 537 ms at 8
    script = Script(per_token_s=0.02, tokens=20, capacity=4, overload_exponent=0.5)
    with FakeServer(script) as srv:
        free = run_bench(config(srv.url, concurrencies=[4, 8], requests=16))
        bounded = run_bench(config(srv.url, concurrencies=[4, 8], requests=16, slo_ms=460.0))
    assert free.best is not None and free.best.concurrency == 8
    assert bounded.levels[1].latency_ms.p90 > 460.0
    assert bounded.best is not None and bounded.best.concurrency == 4
    assert bounded.best_reason.endswith("with p90 latency within 460 ms")


def test_duration_bounds_the_level() -> None:
    with FakeServer(Script(tokens=2, per_token_s=0.02)) as srv:
        level = run_level(config(srv.url, duration_s=0.5), 2)
    # new requests stop at 0.5 s; the ones in flight finish (each ~0.02 s)
    assert 0.5 <= level.duration_s < 0.5 + SLACK_S + 0.1
    assert level.requests_ok >= 4


def test_same_seed_same_requests_across_runs() -> None:
    with FakeServer(Script(tokens=1)) as srv:
        run_level(config(srv.url, requests=3), 1)
        first = [json.dumps(b, sort_keys=True) for b in srv.bodies]
        srv.bodies.clear()
        run_level(config(srv.url, requests=3), 3)
        second = sorted(json.dumps(b, sort_keys=True) for b in srv.bodies)
    assert sorted(first) == second and len(set(first)) == 3


def test_a_tolerated_share_of_failures_keeps_a_level_eligible() -> None:
    """One injected HTTP 500 in each level: strict, no level is best; with 20 % tolerated, the fastest is."""
    script = Script(per_token_s=0.01, tokens=8, capacity=4, overload_exponent=1.5, http_errors={3: 500})
    with FakeServer(script) as srv:
        strict = run_bench(config(srv.url, concurrencies=[1, 4], requests=8))
    with FakeServer(Script(per_token_s=0.01, tokens=8, capacity=4, overload_exponent=1.5, http_errors={3: 500})) as srv:
        lenient = run_bench(config(srv.url, concurrencies=[1, 4], requests=8, max_error_rate=0.2))
    assert any(lv.requests_failed for lv in strict.levels)
    assert strict.best is None and "--max-error-rate" in strict.best_reason
    assert lenient.best is not None and lenient.best_reason.startswith("highest output tokens/s with at most 20.0%")


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(concurrencies=[1, 2048]), "at most 1024 requests in flight"),
        (dict(max_error_rate=1.0), "--max-error-rate 1"),
        (dict(max_error_rate=-0.1), "--max-error-rate -0.1"),
    ],
)
def test_bad_sweep_settings(kw: dict, message: str) -> None:
    from provision.errors import UsageError

    with pytest.raises(UsageError, match=re.escape(message)):
        config("http://127.0.0.1:9", **kw)


def test_interrupted_warm_up_keeps_what_there_is(monkeypatch: pytest.MonkeyPatch) -> None:
    from provision.bench import runner

    def interrupted(config: object, notes: list[str], on_message: object = None) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "warm_up", interrupted)
    with FakeServer(Script()) as srv:
        run = run_bench(config(srv.url, warmup=1))
    assert run.interrupted and run.levels == [] and run.best is None
    assert "interrupted during the warm-up: nothing was measured" in run.notes
    assert run.host["hostname"]  # named even without GPU sampling
