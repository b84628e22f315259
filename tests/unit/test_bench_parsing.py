"""The pure parts of ``gpuprov bench``: percentiles, the SSE wire format, streamed chunks, URLs and
workloads (property-based where the input is the user's or the server's)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provision.bench.client import Endpoint
from provision.bench.sse import DONE, SseParser, error_message, interpret
from provision.bench.stats import Distribution, percentile
from provision.bench.workload import CHAT_INSTRUCTION, WORDS, Workload, generated_text, load_prompts, parse_prompt_line
from provision.errors import UsageError

# -- percentiles -----------------------------------------------------------------------------------

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(st.lists(finite, min_size=2, max_size=60))
def test_percentiles_match_the_standard_librarys_inclusive_quantiles(values: list[float]) -> None:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    data = sorted(values)
    for pct in (50, 90, 99):
        assert percentile(data, pct) == pytest.approx(cuts[pct - 1], rel=1e-9, abs=1e-6)


@given(st.lists(finite, min_size=1, max_size=60), st.floats(min_value=0, max_value=100))
def test_percentile_lies_between_min_and_max_and_grows_with_pct(values: list[float], pct: float) -> None:
    data = sorted(values)
    value = percentile(data, pct)
    assert data[0] <= value <= data[-1]
    assert percentile(data, 0) == data[0] and percentile(data, 100) == data[-1]
    assert percentile(data, min(100.0, pct + 1)) >= value


def test_percentiles_worked_example() -> None:
    data = [float(10 * i) for i in range(1, 21)]  # 10..200
    assert (percentile(data, 50), percentile(data, 90), percentile(data, 99)) == pytest.approx((105, 181, 198.1))
    dist = Distribution.of(reversed(data))
    assert (dist.count, dist.min, dist.max, dist.mean) == (20, 10, 200, 105)
    assert Distribution.of([]) == Distribution()
    with pytest.raises(ValueError):
        percentile([], 50)


# -- server-sent events ----------------------------------------------------------------------------

# a /v1/chat/completions stream as vLLM sends it (role chunk, content chunks, usage chunk, [DONE])
VLLM_CHAT = (
    'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":'
    '[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n'
    'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":'
    '[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}]}\n\n'
    'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":'
    '[{"index":0,"delta":{"content":" there"},"logprobs":null,"finish_reason":"length"}]}\n\n'
    'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],'
    '"usage":{"prompt_tokens":12,"total_tokens":14,"completion_tokens":2}}\n\n'
    "data: [DONE]\n\n"
)


def _events(text: str) -> list[str]:
    parser, out = SseParser(), []
    for line in text.splitlines(keepends=True):
        if (data := parser.feed_line(line)) is not None:
            out.append(data)
    if (data := parser.flush()) is not None:
        out.append(data)
    return out


def test_a_vllm_chat_stream() -> None:
    events = _events(VLLM_CHAT)
    assert events[-1] == DONE
    chunks = [interpret(e) for e in events[:-1]]
    assert [c.text for c in chunks] == ["", "Hello", " there", ""]
    assert (chunks[-1].completion_tokens, chunks[-1].prompt_tokens) == (2, 12)


def test_completions_text_reasoning_and_errors() -> None:
    assert interpret('{"choices":[{"index":0,"text":" 42","finish_reason":null}]}').text == " 42"
    assert interpret('{"choices":[{"delta":{"reasoning_content":"hmm"}}]}').text == "hmm"
    assert interpret('{"error":{"message":"out of memory","code":500}}').error == "out of memory"
    assert "not JSON" in (interpret("garbage").error or "")
    assert "not a JSON object" in (interpret("[1]").error or "")


def test_sse_comments_fields_multiline_and_crlf() -> None:
    text = ': keep-alive\r\nevent: message\r\nid: 7\r\ndata: {"a":\r\ndata:1}\r\n\r\ndata:[DONE]\r\n\r\n'
    assert _events(text) == ['{"a":\n1}', DONE]


@given(st.lists(st.dictionaries(st.text(max_size=5), st.text(max_size=8), max_size=3), max_size=6))
def test_sse_round_trip(objects: list[dict[str, str]]) -> None:
    """Any JSON objects framed as SSE (one ``data:`` line each) come back out unchanged."""
    text = "".join(f"data: {json.dumps(o)}\n\n" for o in objects) + "data: [DONE]\n\n"
    assert [json.loads(e) for e in _events(text)[:-1]] == objects


@given(st.text(max_size=200))
def test_interpret_never_raises(data: str) -> None:
    chunk = interpret(data)
    assert chunk.error is not None or isinstance(chunk.text, str)


def test_error_messages_from_openai_fastapi_and_plain_bodies() -> None:
    assert (
        error_message({"error": {"message": "model 'x' not found", "type": "NotFoundError"}}) == "model 'x' not found"
    )
    assert error_message({"detail": [{"loc": ["body", "max_tokens"], "msg": "Input should be > 0"}]}) == (
        "max_tokens: Input should be > 0"
    )
    assert error_message({"detail": "Not Found"}) == "Not Found"
    assert error_message({"error": "boom"}) == "boom"


# -- URLs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://localhost:11434/v1", "http://localhost:11434"),
        ("http://localhost:11434/v1/", "http://localhost:11434"),
        ("https://gw.example/llm/v1/chat/completions", "https://gw.example:443/llm"),
        ("http://[::1]:8080/v1", "http://[::1]:8080"),
        ("http://host/v1x", "http://host:80/v1x"),
    ],
)
def test_endpoint_parse(url: str, expected: str) -> None:
    assert Endpoint.parse(url).url == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("localhost:8000", "is not a URL"),
        ("ftp://host/v1", "must start with http:// or https://"),
        ("http://:8000", "has no host"),
        ("http://host:99999", "port is not a number"),
        ("http://host:abc", "port is not a number"),
        ("http://[::1", "is not a valid URL .Invalid IPv6 URL."),  # issue 14, item 9: was a traceback
        ("https://[fe80::1/v1", "is not a valid URL"),
    ],
)
def test_endpoint_parse_rejects_bad_urls(url: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        Endpoint.parse(url)


@given(st.text(max_size=60))
def test_endpoint_parse_gives_an_endpoint_or_a_usage_error(text: str) -> None:
    try:
        endpoint = Endpoint.parse(text)
    except UsageError:
        return
    assert endpoint.scheme in ("http", "https") and endpoint.host and 0 <= endpoint.port <= 65535


@given(st.sampled_from(["http://", "https://", "HTTP://"]), st.text(alphabet="[]:/@.%?#v1fe0abc-", max_size=30))
def test_endpoint_parse_of_url_like_text_never_raises_anything_else(scheme: str, rest: str) -> None:
    """Brackets, colons and at-signs where urllib is picky (the IPv6 traceback of issue 14)."""
    try:
        endpoint = Endpoint.parse(scheme + rest)
    except UsageError as exc:
        assert "\n" not in str(exc)
        return
    assert endpoint.host and 0 <= endpoint.port <= 65535


_KEYS = st.sampled_from(["count", "tokens", "x"])


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=3),
        max_leaves=12,
    )
)
def test_tokenizer_answers_give_a_count_or_none(answer: object) -> None:
    from provision.bench.tokens import token_count

    count = token_count(answer)
    assert count is None or (isinstance(count, int) and count >= 0)


@given(st.text(max_size=300), st.integers(min_value=0, max_value=50))
def test_token_estimate_is_at_least_the_events_and_grows_with_the_text(text: str, events: int) -> None:
    from provision.bench.client import estimate_tokens

    n = estimate_tokens(text, events)
    assert n >= events and n >= round(len(text) / 4) and estimate_tokens(text + "abcd", events) >= n


# -- workloads -------------------------------------------------------------------------------------


def test_generated_prompts_are_seeded_distinct_and_sized() -> None:
    a = Workload(prompt_tokens=50, seed=3)
    assert a.body(7, "m", include_usage=True) == Workload(prompt_tokens=50, seed=3).body(7, "m", include_usage=True)
    assert generated_text(3, 7, 50) != generated_text(3, 8, 50) != generated_text(4, 7, 50)
    words = generated_text(0, 0, 50).split()
    assert len(words) == 50 and set(words) <= set(WORDS)


def test_request_bodies() -> None:
    chat = Workload(api="chat", prompt_tokens=4, max_tokens=9, seed=10, ignore_eos=True).body(
        2, "m", include_usage=True
    )
    assert chat["messages"][0]["role"] == "user" and chat["max_tokens"] == 9 and chat["seed"] == 12
    assert chat["messages"][0]["content"].startswith(CHAT_INSTRUCTION + " ")
    assert len(chat["messages"][0]["content"].removeprefix(CHAT_INSTRUCTION).split()) == 4
    assert chat["stream"] is True and chat["stream_options"] == {"include_usage": True} and chat["ignore_eos"]
    comp = Workload(api="completions", prompt_tokens=4).body(0, "m", include_usage=False)
    assert isinstance(comp["prompt"], str) and "stream_options" not in comp and "ignore_eos" not in comp


def test_workload_key_separates_unlike_workloads() -> None:
    keys = {
        Workload(prompt_tokens=128).key(),
        Workload(prompt_tokens=256).key(),
        Workload(prompt_tokens=128, seed=1).key(),
        Workload(prompt_tokens=128, api="completions").key(),
        Workload(prompt_tokens=128, max_tokens=64).key(),
    }
    assert len(keys) == 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"api": "embeddings"}, "--api must be one of"),
        ({"max_tokens": 0}, "--max-tokens"),
        ({"prompt_tokens": 0}, "--prompt-tokens"),
    ],
)
def test_workload_rejects_bad_values(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        Workload(**kwargs)  # type: ignore[arg-type]


def test_jsonl_prompts(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a"}\n\n{"messages": [{"role": "user", "content": "b"}], "max_tokens": 5}\n')
    prompts, sha = load_prompts(path, "chat")
    assert [p.text for p in prompts] == ["a", None] and prompts[1].max_tokens == 5 and len(sha) == 64
    w = Workload(prompts=prompts, prompts_file=str(path), prompts_sha256=sha, prompt_tokens=None)
    assert w.body(0, "m", include_usage=False)["messages"] == [{"role": "user", "content": "a"}]
    assert w.body(3, "m", include_usage=False)["max_tokens"] == 5  # cycles through the file
    assert "p.jsonl@" + sha[:12] in w.key()


@pytest.mark.parametrize(
    ("content", "api", "message"),
    [
        ("{not json}\n", "chat", r"p.jsonl:1: not valid JSON"),
        ('{"prompt": "a"}\n[1]\n', "chat", r"p.jsonl:2: expected an object"),
        ('{"text": "a"}\n', "chat", 'expected a "prompt" string'),
        ('{"prompt": "a", "max_tokens": 0}\n', "chat", "max_tokens must be a positive integer"),
        ('{"messages": [{"role": "user", "content": "x"}]}\n', "completions", "need --api chat"),
        ('{"messages": []}\n', "chat", "non-empty list"),
        ("\n\n", "chat", "no prompts"),
    ],
)
def test_jsonl_prompt_errors_name_file_and_line(tmp_path: Path, content: str, api: str, message: str) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(content)
    with pytest.raises(UsageError, match=message):
        load_prompts(path, api)


def test_jsonl_file_problems(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        load_prompts(tmp_path / "missing.jsonl", "chat")
    with pytest.raises(UsageError, match="is a directory"):
        load_prompts(tmp_path, "chat")
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(UsageError, match="not UTF-8"):
        load_prompts(tmp_path / "bin.jsonl", "chat")


@given(st.text(max_size=120))
def test_any_prompt_line_is_a_prompt_or_a_usage_error(line: str) -> None:
    try:
        prompt = parse_prompt_line(line, "f:1", "chat")
    except UsageError as exc:
        assert str(exc).startswith("f:1: ")
        return
    assert prompt.text is not None or prompt.messages
