"""The settings of one ``gpuprov bench`` run and their checks: the endpoint, model and workload, the
concurrency levels, how many requests or how long, the deadlines, the warm-up, the best level's rules.
A bad value is a :class:`~provision.errors.UsageError` before anything is sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from provision.bench.client import Connection, Endpoint
from provision.bench.stats import check_max_error_rate
from provision.bench.workload import Workload
from provision.errors import UsageError

#: the default request deadline: this much, plus :data:`REQUEST_TIMEOUT_S_PER_TOKEN` per max_tokens
REQUEST_TIMEOUT_BASE_S = 60.0
#: (a server slower than 2 tokens/s after its first token is not worth measuring to the end)
REQUEST_TIMEOUT_S_PER_TOKEN = 0.5


def default_request_timeout_s(max_tokens: int) -> float:
    """The default total deadline of one request: 60 s + 0.5 s per token asked for."""
    return REQUEST_TIMEOUT_BASE_S + REQUEST_TIMEOUT_S_PER_TOKEN * max_tokens


#: requests in flight at most: one client thread each; past this a sweep measures the client, not the server
MAX_CONCURRENCY = 1024


@dataclass
class BenchConfig:
    endpoint: Endpoint
    model: str
    workload: Workload
    concurrencies: list[int] = field(default_factory=lambda: [1])
    #: requests per level (None with duration_s: as many as fit; both None: 4 × concurrency, at least 8)
    requests: int | None = None
    duration_s: float | None = None
    #: seconds without a byte from the server before a request counts as failed
    timeout_s: float = 60.0
    #: seconds from sending to the end of the answer before a request counts as failed (None:
    #: default_request_timeout_s of the largest max_tokens the workload asks for)
    request_timeout_s: float | None = None
    warmup: int = 1
    slo_ms: float | None = None
    #: best level: the highest share of failed requests a level may have (0: none)
    max_error_rate: float = 0.0
    include_usage: bool = True

    def __post_init__(self) -> None:
        if not self.concurrencies or any(c < 1 for c in self.concurrencies):
            raise UsageError("--concurrency takes positive integers, like 1,2,4,8")
        if max(self.concurrencies) > MAX_CONCURRENCY:
            raise UsageError(
                f"--concurrency {max(self.concurrencies)}: at most {MAX_CONCURRENCY} requests in flight "
                "(one client thread each)"
            )
        check_max_error_rate(self.max_error_rate)
        if self.requests is not None and self.requests < 1:
            raise UsageError(f"--requests must be at least 1, not {self.requests}")
        if self.duration_s is not None and self.duration_s <= 0:
            raise UsageError(f"--duration must be more than 0 seconds, not {self.duration_s:g}")
        if not self.timeout_s > 0:
            raise UsageError(f"--timeout must be more than 0 seconds, not {self.timeout_s:g}")
        if self.request_timeout_s is None:
            asked = [p.max_tokens for p in self.workload.prompts if p.max_tokens is not None]
            self.request_timeout_s = default_request_timeout_s(max([self.workload.max_tokens, *asked]))
        elif not 0 < self.request_timeout_s < float("inf"):
            raise UsageError(f"--request-timeout must be more than 0 seconds, not {self.request_timeout_s:g}")
        if self.warmup < 0:
            raise UsageError(f"--warmup cannot be negative ({self.warmup})")
        if self.slo_ms is not None and self.slo_ms <= 0:
            raise UsageError(f"--slo-ms must be more than 0, not {self.slo_ms:g}")
        if not self.model.strip():
            raise UsageError("--model must name the model the server serves")

    @property
    def deadline_s(self) -> float:
        """The total deadline of one request (set in __post_init__)."""
        return self.request_timeout_s or default_request_timeout_s(self.workload.max_tokens)

    def connection(self) -> Connection:
        return Connection(self.endpoint, timeout_s=self.timeout_s, request_timeout_s=self.deadline_s)

    def requests_for(self, concurrency: int) -> int | None:
        if self.requests is not None:
            return self.requests
        if self.duration_s is not None:
            return None
        return max(8, 4 * concurrency)
