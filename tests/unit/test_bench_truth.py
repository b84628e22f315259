"""The test server as the truth: what ``gpuprov bench`` reports against a server whose timing and
behaviour are known exactly (issue 20's oracles).

Timing: TTFT 200 ms, 20 ms between tokens, 64 tokens a request, the server in a process of its own
(its interpreter lock is not the client's). At concurrency 1 and 16 every figure is within 3 % of
what the schedule makes it. Misbehaviours: each ends as a clear failure, a note, or a correct count
(marked estimated where it can only be estimated), in bounded wall time (deadline + 10 s at most:
bounds that prove a run ends, not how fast gpuprov is)."""

from __future__ import annotations

import time

import pytest

from provision.bench.runner import run_bench, run_level
from provision.bench.tokens import TokenCounter, token_count
from tests.unit.test_bench_measure import config
from tests.unit.test_bench_server import FakeServer, Script, ServerProcess

TTFT_S, ITL_S, TOKENS = 0.2, 0.02, 64
LATENCY_S = TTFT_S + (TOKENS - 1) * ITL_S  # 1.46 s: the last token leaves then
TOLERANCE = 0.03
MARGIN_S = 10.0


@pytest.mark.parametrize(("concurrency", "requests"), [(1, 4), (16, 32)])
def test_figures_match_the_servers_schedule_within_3_percent(concurrency: int, requests: int) -> None:
    with ServerProcess(Script(ttft_s=TTFT_S, per_token_s=ITL_S, tokens=TOKENS)) as url:
        level = run_level(config(url, requests=requests, timeout_s=30.0), concurrency)
    assert level.requests_ok == requests and level.requests_failed == 0
    assert level.token_source == "usage" and level.output_tokens == requests * TOKENS
    truth = {
        "ttft_ms p50": (level.ttft_ms.p50, TTFT_S * 1000),
        "itl_ms p50": (level.itl_ms.p50, ITL_S * 1000),
        "itl_ms mean": (level.itl_ms.mean, ITL_S * 1000),
        "tpot_ms p50": (level.tpot_ms.p50, ITL_S * 1000),
        "latency_ms p50": (level.latency_ms.p50, LATENCY_S * 1000),
        # closed loop: each client sends its next request as its last one ends
        "output tokens/s": (level.output_tokens_per_s, concurrency * TOKENS / LATENCY_S),
        "requests/s": (level.requests_per_s, concurrency / LATENCY_S),
    }
    off = {name: measured / want - 1 for name, (measured, want) in truth.items()}
    assert all(abs(err) <= TOLERANCE for err in off.values()), off


@pytest.mark.parametrize("engine", ["vllm", "llama.cpp", "llama-cpp-python"])
def test_several_tokens_per_event_without_usage_are_counted_by_the_servers_tokenizer(engine: str) -> None:
    """4 tokens an event, no usage: 32 tokens a request, counted as 8 before (4x too few)."""
    script = Script(tokens=32, tokens_per_event=4, usage=False, tokenizer=engine, per_token_s=0.001)
    with FakeServer(script) as srv:
        start = time.perf_counter()
        run = run_bench(config(srv.url, requests=3))
        elapsed = time.perf_counter() - start
    [level] = run.levels
    assert level.token_source == "tokenizer" and level.output_tokens == 3 * 32
    assert level.tpot_ms.count == 3
    assert run.server["tokenizer"] == ("/extras/tokenize" if engine == "llama-cpp-python" else "/tokenize")
    assert any("counted by the server's tokenizer" in note for note in run.notes)
    assert elapsed < MARGIN_S


def test_without_usage_or_tokenizer_tokens_are_estimated_and_marked() -> None:
    with FakeServer(Script(tokens=32, tokens_per_event=4, usage=False, per_token_s=0.001)) as srv:
        run = run_bench(config(srv.url, requests=2))
    [level] = run.levels
    assert level.token_source == "estimated"
    assert 2 * 32 * 0.75 <= level.output_tokens <= 2 * 32 * 1.25  # not 2 × 8 events
    assert run.server["tokenizer"] is None
    assert any("estimated from the streamed text" in n and "no tokenizer endpoint answered" in n for n in run.notes)


def test_usage_and_tokenizer_cross_checked() -> None:
    with FakeServer(Script(tokens=20, tokenizer="vllm")) as srv:
        agree = run_bench(config(srv.url, requests=4))
    with FakeServer(Script(tokens=20, tokenizer="vllm", usage_scale=1.5)) as srv:
        disagree = run_bench(config(srv.url, requests=4))
    assert agree.levels[0].token_source == "usage" and not any("disagree" in n for n in agree.notes)
    assert disagree.levels[0].output_tokens == 4 * 30  # usage is what figures follow
    [note] = [n for n in disagree.notes if "disagree" in n]
    assert "/tokenize" in note and "33%" in note and "120 vs 80 tokens" in note


def test_a_server_ignoring_max_tokens_is_named_and_its_workload_says_so() -> None:
    with FakeServer(Script(tokens=200, ignore_max_tokens=True)) as srv:
        cfg = config(srv.url, requests=2)
        cfg.workload.max_tokens = 32
        run = run_bench(cfg)
    assert run.levels[0].requests_over_max_tokens == 2 and run.levels[0].output_tokens_max == 200
    assert any("the server ignores max_tokens: 2 of 2" in n and "up to 200 under max_tokens=32" in n for n in run.notes)
    assert run.config.workload.key().endswith("max_tokens=32 (ignored by the server: up to 200 generated)")
    with FakeServer(Script(tokens=200)) as srv:  # an honest server stops at 32: nothing said
        cfg = config(srv.url, requests=2)
        cfg.workload.max_tokens = 32
        honest = run_bench(cfg)
    assert honest.levels[0].output_tokens == 64 and honest.levels[0].requests_over_max_tokens == 0
    assert not any("ignores max_tokens" in n for n in honest.notes)
    assert "ignored" not in honest.config.workload.key()


@pytest.mark.parametrize(
    ("script", "kind", "message"),
    [
        (Script(tokens=8, http_errors={1: 500}), "http", "HTTP 500: injected failure of request 1"),
        (Script(tokens=8, stream_errors={1: 3}), "stream", "the server reported an error mid-stream"),
        (Script(tokens=8, drops={1: 3}), "stream", "the server closed the connection mid-stream"),
        (Script(tokens=8, malformed={1: 3}), "protocol", "the server sent an event that is not JSON"),
    ],
    ids=["http-500-mid-run", "error-event", "connection-cut", "malformed-event"],
)
def test_each_misbehaviour_is_one_clear_failure_and_the_rest_is_measured(
    script: Script, kind: str, message: str
) -> None:
    with FakeServer(script) as srv:
        start = time.perf_counter()
        level = run_level(config(srv.url, requests=4), 1)
        elapsed = time.perf_counter() - start
    [failed] = [r for r in level.request_results if not r.ok]
    assert failed.index == 1 and failed.error_kind == kind and message in (failed.error or "")
    assert (level.requests_ok, level.requests_failed) == (3, 1) and level.output_tokens == 3 * 8
    assert elapsed < MARGIN_S


def test_token_count_reads_each_endpoints_answer() -> None:
    assert token_count({"count": 3, "tokens": [1, 2, 3]}) == 3
    assert token_count({"tokens": [1, 2]}) == 2
    assert token_count({"tokens": "x"}) is None and token_count([1]) is None and token_count({"count": -1}) is None


def test_no_tokenizer_is_looked_for_once() -> None:
    from provision.bench.client import Endpoint

    with FakeServer(Script()) as srv:
        counter = TokenCounter(Endpoint.parse(srv.url), "fake-model", None, 5.0)
        assert not counter.available() and not counter.available()
        assert counter.count("tok tok") is None and counter.count("") == 0
