"""Output tokens when the server does not count them: its own tokenizer, or an estimate that says so.

A server that sends no ``usage`` leaves the client with the streamed text. Counting the events that
carried it is wrong whenever a server puts several tokens in one event (4 a event: 4× too few), so
the text is counted instead, after the level (the measured times are not disturbed):

- by the server's tokenizer endpoint, where it has one — vLLM ``POST /tokenize`` (``{"model",
  "prompt", "add_special_tokens": false}`` → ``{"count", "tokens"}``), llama.cpp's server
  ``POST /tokenize`` (``{"content"}`` → ``{"tokens"}``), llama-cpp-python ``POST /extras/tokenize``
  (``{"input"}`` → ``{"tokens"}``, a BOS token included: what the empty text counts is subtracted);
- else estimated from the text's length (:func:`~provision.bench.client.estimate_tokens`), and the
  level's ``token_source`` says ``estimated``.

When the server sends usage *and* has a tokenizer, a sample of requests is counted both ways: a
disagreement of more than :data:`CROSS_CHECK_TOLERANCE` is reported (a server whose usage counts
something else, or a tokenizer endpoint that is not the model's).
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from provision.bench.client import Endpoint, RequestResult
from provision.engineflags import ENGINE_NAMES, LLAMA_CPP_ENGINE

#: the largest relative disagreement between usage and the tokenizer count taken as agreement
CROSS_CHECK_TOLERANCE = 0.05

#: requests per level counted both ways when usage is there
CROSS_CHECK_SAMPLE = 8


@dataclass(frozen=True)
class TokenizerRoute:
    engine: str
    path: str

    def body(self, text: str, model: str) -> dict[str, Any]:
        if self.engine == "vllm":
            return {"model": model, "prompt": text, "add_special_tokens": False}
        if self.engine == ENGINE_NAMES[LLAMA_CPP_ENGINE]:
            return {"content": text, "add_special": False}
        return {"input": text, "model": model}


ROUTES = (
    TokenizerRoute("vllm", "/tokenize"),
    TokenizerRoute(ENGINE_NAMES[LLAMA_CPP_ENGINE], "/tokenize"),
    TokenizerRoute("llama-cpp-python", "/extras/tokenize"),
)


def token_count(answer: Any) -> int | None:
    """The token count in a tokenizer endpoint's answer (``count``, or the ``tokens`` list)."""
    if not isinstance(answer, dict):
        return None
    count = answer.get("count")
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        return count
    tokens = answer.get("tokens")
    return len(tokens) if isinstance(tokens, list) else None


@dataclass
class CrossCheck:
    requests: int = 0
    usage_tokens: int = 0
    tokenizer_tokens: int = 0

    @property
    def disagreement(self) -> float | None:
        if not self.usage_tokens:
            return None
        return abs(self.tokenizer_tokens - self.usage_tokens) / self.usage_tokens


@dataclass
class TokenCounter:
    """Finds the server's tokenizer endpoint once (by the engine it named, else each known one in
    turn) and counts generated text with it."""

    endpoint: Endpoint
    model: str
    engine: str | None
    timeout_s: float
    #: the working route (None: none found, or not looked for yet)
    route: TokenizerRoute | None = None
    #: tokens the endpoint counts for the empty text (a BOS token some add)
    baseline: int = 0
    cross_check: CrossCheck = field(default_factory=CrossCheck)
    _looked: bool = False
    _conn: http.client.HTTPConnection | None = field(default=None, repr=False)

    def available(self) -> bool:
        if not self._looked:
            self._looked = True
            routes = sorted(ROUTES, key=lambda r: r.engine != self.engine)
            give_up = time.perf_counter() + self.timeout_s  # a server that does not answer: asked once
            for route in routes:
                if time.perf_counter() > give_up:
                    break
                empty, probe = self._ask(route, ""), self._ask(route, "Hello world, counted.")
                if empty is not None and probe is not None and probe > empty:
                    self.route, self.baseline = route, empty
                    break
            self.close()
        return self.route is not None

    def count(self, text: str) -> int | None:
        if not text:
            return 0
        if self.route is None:
            return None
        n = self._ask(self.route, text)
        return None if n is None else max(0, n - self.baseline)

    def apply(self, results: Sequence[RequestResult]) -> None:
        """Count the answered requests that had no usage with the tokenizer, cross-check a sample of
        those that had it, then drop the texts (they are not kept)."""
        answered = [r for r in results if r.ok and r.text]
        estimated = [r for r in answered if r.token_source == "estimated"]
        with_usage = [r for r in answered if r.token_source == "usage"][:CROSS_CHECK_SAMPLE]
        if (estimated or with_usage) and self.available():
            budget_end = time.perf_counter() + self.timeout_s  # a slow tokenizer leaves the rest estimated
            for r in estimated:
                if time.perf_counter() > budget_end:
                    break
                n = self.count(r.text)
                if n is not None:
                    r.output_tokens, r.token_source = max(n, 1), "tokenizer"
            for r in with_usage:
                n = self.count(r.text)
                if n is not None and r.usage_tokens is not None:
                    self.cross_check.requests += 1
                    self.cross_check.usage_tokens += r.usage_tokens
                    self.cross_check.tokenizer_tokens += n
            self.close()
        for r in results:
            r.text = ""

    def note(self) -> str | None:
        """What the reader must know about the cross-check (None: nothing to say)."""
        check = self.cross_check
        off = check.disagreement
        if off is None or off <= CROSS_CHECK_TOLERANCE or self.route is None:
            return None
        return (
            f"the server's usage and its tokenizer ({self.route.path}) disagree by {off:.0%} over "
            f"{check.requests} sampled requests ({check.usage_tokens} vs {check.tokenizer_tokens} tokens): "
            "token figures follow usage"
        )

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _ask(self, route: TokenizerRoute, text: str) -> int | None:
        payload = json.dumps(route.body(text, self.model)).encode()
        started = time.perf_counter()
        for attempt in (0, 1):  # a kept-alive connection the server closed: once more on a fresh one
            try:
                if self._conn is None:
                    self._conn = self.endpoint.connect(self.timeout_s)
                self._conn.request(
                    "POST",
                    self.endpoint.base_path + route.path,
                    body=payload,
                    headers={"Content-Type": "application/json"},
                )
                resp = self._conn.getresponse()
                data = resp.read(1 << 24)
                if resp.will_close:
                    self.close()
                if resp.status != 200:
                    return None
                return token_count(json.loads(data))
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt or time.perf_counter() - started > self.timeout_s:
                    return None
            except (OSError, http.client.HTTPException, ValueError):
                self.close()
                return None
        return None
