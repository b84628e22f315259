"""Percentiles, and the summary of the requests sent at one concurrency level.

Definitions (the ones vLLM's ``benchmark_serving`` and most serving benchmarks use):

- time to first token (TTFT): from sending the request to the first event carrying text;
- inter-token latency (ITL): the gaps between successive text-carrying events of a request, all
  requests pooled (a server that sends several tokens per event shows longer, fewer gaps);
- time per output token (TPOT): per request, (latency − TTFT) / (output tokens − 1);
- latency: from sending to ``data: [DONE]``;
- per-request output tokens/s: output tokens / latency;
- aggregate output tokens/s and requests/s: over the level's wall time, successful requests only;
- requests cut at the end of a ``--duration`` level are counted as cut, neither answered nor
  failed, and are in none of the figures above.

Percentiles interpolate linearly between closest ranks (numpy's default, ``statistics.quantiles``
with ``method="inclusive"``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from provision.bench.client import RequestResult


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """The ``pct``-th percentile (0–100) of already sorted values, linear between closest ranks."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile {pct} is outside 0..100")
    rank = (len(sorted_values) - 1) * pct / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    frac = rank - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * frac


@dataclass
class Distribution:
    count: int = 0
    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    min: float | None = None
    max: float | None = None

    @classmethod
    def of(cls, values: Iterable[float]) -> Distribution:
        data = sorted(values)
        if not data:
            return cls()
        return cls(
            count=len(data),
            mean=math.fsum(data) / len(data),
            p50=percentile(data, 50),
            p90=percentile(data, 90),
            p99=percentile(data, 99),
            min=data[0],
            max=data[-1],
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Distribution:
        return cls(
            count=data.get("count", 0),
            mean=data.get("mean"),
            p50=data.get("p50"),
            p90=data.get("p90"),
            p99=data.get("p99"),
            min=data.get("min"),
            max=data.get("max"),
        )


@dataclass
class LevelResult:
    """Everything measured at one concurrency level."""

    concurrency: int
    requests_sent: int = 0
    requests_ok: int = 0
    requests_failed: int = 0
    #: requests still running when their --duration level ended (neither answered nor failed)
    requests_cut: int = 0
    duration_s: float = 0.0
    requests_per_s: float | None = None
    output_tokens: int = 0
    output_tokens_per_s: float | None = None
    prompt_tokens_mean: float | None = None
    ttft_ms: Distribution = field(default_factory=Distribution)
    itl_ms: Distribution = field(default_factory=Distribution)
    tpot_ms: Distribution = field(default_factory=Distribution)
    latency_ms: Distribution = field(default_factory=Distribution)
    request_output_tokens_per_s: Distribution = field(default_factory=Distribution)
    #: how output tokens were counted: "usage" (the server's count), "tokenizer" (the streamed text
    #: counted by the server's tokenizer), "estimated" (from the text's length), "mixed", or "none"
    #: (no successful request)
    token_source: str = "none"
    #: error message -> how many requests failed with it
    errors: dict[str, int] = field(default_factory=dict)
    #: successful requests that generated no text (the model stopped at once): no TTFT
    requests_without_text: int = 0
    #: answered requests that generated more tokens than their max_tokens (the server ignores it)
    requests_over_max_tokens: int = 0
    #: the most tokens one answered request generated
    output_tokens_max: int | None = None
    #: why the level ended before its requests/duration were done (None: it completed)
    stop_reason: str | None = None
    #: GPU readings while this level ran (see provision.bench.gpu); None: sampling was off
    gpu: dict[str, Any] | None = None
    #: the requests behind these figures (kept in the history's requests table, not in to_dict)
    request_results: list[RequestResult] = field(default_factory=list, repr=False, compare=False)

    @property
    def complete(self) -> bool:
        return self.stop_reason is None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(replace(self, request_results=[]))
        del data["request_results"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LevelResult:
        kwargs = {k: v for k, v in data.items() if k in _LEVEL_FIELDS}  # a newer gpuprov's extra fields
        for key in ("ttft_ms", "itl_ms", "tpot_ms", "latency_ms", "request_output_tokens_per_s"):
            kwargs[key] = Distribution.from_dict(kwargs.get(key) or {})
        return cls(**kwargs)


_LEVEL_FIELDS = frozenset(LevelResult.__dataclass_fields__)


def summarize(
    concurrency: int, results: Sequence[RequestResult], duration_s: float, *, stop_reason: str | None = None
) -> LevelResult:
    ok = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok and not r.cut]
    level = LevelResult(
        concurrency=concurrency,
        requests_sent=len(results),
        requests_ok=len(ok),
        requests_failed=len(failed),
        requests_cut=sum(1 for r in results if r.cut),
        duration_s=duration_s,
        stop_reason=stop_reason,
    )
    level.output_tokens = sum(r.output_tokens for r in ok)
    level.output_tokens_max = max((r.output_tokens for r in ok), default=None)
    level.requests_over_max_tokens = sum(1 for r in ok if over_max_tokens(r))
    level.requests_without_text = sum(1 for r in ok if r.ttft_s is None)
    if duration_s > 0:
        level.requests_per_s = len(ok) / duration_s
        level.output_tokens_per_s = level.output_tokens / duration_s
    prompts = [r.prompt_tokens for r in ok if r.prompt_tokens is not None]
    level.prompt_tokens_mean = math.fsum(prompts) / len(prompts) if prompts else None
    level.ttft_ms = Distribution.of(r.ttft_s * 1000 for r in ok if r.ttft_s is not None)
    level.latency_ms = Distribution.of(r.latency_s * 1000 for r in ok if r.latency_s is not None)
    level.itl_ms = Distribution.of(
        (b - a) * 1000 for r in ok for a, b in zip(r.chunk_offsets_s, r.chunk_offsets_s[1:], strict=False)
    )
    level.tpot_ms = Distribution.of(
        (r.latency_s - r.ttft_s) * 1000 / (r.output_tokens - 1)
        for r in ok
        if r.latency_s is not None and r.ttft_s is not None and r.output_tokens > 1
    )
    level.request_output_tokens_per_s = Distribution.of(r.output_tokens / r.latency_s for r in ok if r.latency_s)
    sources = {r.token_source for r in ok}
    level.token_source = sources.pop() if len(sources) == 1 else ("mixed" if sources else "none")
    level.errors = dict(Counter(r.error or "unknown error" for r in failed).most_common())
    return level


def over_max_tokens(result: RequestResult) -> bool:
    """The request generated more tokens than it asked for. A counted number (usage, tokenizer) must
    not exceed max_tokens; an estimate is allowed a quarter more, and 2 tokens."""
    if result.max_tokens is None:
        return False
    if result.token_source in ("usage", "tokenizer"):
        return result.output_tokens > result.max_tokens
    return result.output_tokens > result.max_tokens * 1.25 + 2


def check_max_error_rate(value: float) -> float:
    """``--max-error-rate``: a share of requests in [0, 1); UsageError otherwise."""
    from provision.errors import UsageError

    if not 0.0 <= value < 1.0:
        raise UsageError(f"--max-error-rate {value:g}: a share of requests, from 0 up to (not) 1")
    return value


def error_rate(requests_ok: int, requests_failed: int) -> float:
    total = requests_ok + requests_failed
    return requests_failed / total if total else 0.0


def best_level(
    levels: Sequence[LevelResult], *, slo_ms: float | None = None, max_error_rate: float = 0.0
) -> tuple[LevelResult | None, str]:
    """The level with the highest output tokens/s among those whose share of failed requests is at most
    ``max_error_rate`` (default: none failed) and (with an SLO) p90 latency within ``slo_ms``; ties go
    to the lower concurrency. Returns it and why."""
    eligible: list[LevelResult] = []
    for lv in levels:
        if lv.requests_ok == 0 or not lv.complete or lv.output_tokens_per_s is None:
            continue
        if error_rate(lv.requests_ok, lv.requests_failed) > max_error_rate:
            continue
        if slo_ms is not None and (lv.latency_ms.p90 is None or lv.latency_ms.p90 > slo_ms):
            continue
        eligible.append(lv)
    errors = "without errors" if max_error_rate == 0 else f"with at most {max_error_rate:.1%} failed requests"
    if not eligible:
        hint = "" if max_error_rate else " (--max-error-rate accepts a share of failures)"
        if slo_ms is not None and any(lv.requests_ok for lv in levels):
            return None, f"no level kept p90 latency within {slo_ms:g} ms {errors}{hint}"
        return None, f"no level completed {errors}{hint}"
    best = max(eligible, key=lambda lv: (lv.output_tokens_per_s or 0.0, -lv.concurrency))
    why = f"highest output tokens/s {errors}"
    if slo_ms is not None:
        why += f" with p90 latency within {slo_ms:g} ms"
    return best, why
