"""One streamed request to an OpenAI-compatible server, timed: standard library ``http.client`` only.

Each load worker owns one :class:`Connection` (HTTP/1.1 keep-alive, like a real client pool). Times
are ``time.perf_counter()`` readings; the first token is the first event that carries generated
text. Tokens are the server's count (``usage.completion_tokens``, asked for with
``stream_options.include_usage``) when it sends one, else the number of text-carrying events; each
result says which.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from provision.bench.sse import DONE, SseParser, error_message, interpret
from provision.errors import UsageError

#: why a request failed: the run stops early when the server is gone (connect) or every request so
#: far has failed the same way
ERROR_KINDS = ("connect", "timeout", "http", "stream", "protocol")

#: how a stream the server cut off (connection closed before ``data: [DONE]``) is reported
STREAM_CLOSED = "the server closed the connection mid-stream"


@dataclass(frozen=True)
class Endpoint:
    """The server's base URL, split for ``http.client``."""

    scheme: str
    host: str
    port: int
    base_path: str

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """Accepts ``http://host:port``, ``.../v1`` (Ollama's documented base URL) or a full
        ``.../v1/chat/completions`` URL; anything after ``/v1`` is dropped (the API picks the path)."""
        text = url.strip()
        if "://" not in text:
            raise UsageError(f"{url!r} is not a URL: give one like http://127.0.0.1:8000")
        parts = urllib.parse.urlsplit(text)
        if parts.scheme not in ("http", "https"):
            raise UsageError(f"{url!r}: the URL must start with http:// or https://")
        if not parts.hostname:
            raise UsageError(f"{url!r}: the URL has no host")
        try:
            port = parts.port
        except ValueError:
            raise UsageError(f"{url!r}: the port is not a number from 0 to 65535") from None
        if port is None:
            port = 443 if parts.scheme == "https" else 80
        path = parts.path.rstrip("/")
        marker = path.find("/v1")
        if marker >= 0 and (len(path) == marker + 3 or path[marker + 3] == "/"):
            path = path[:marker]
        return cls(parts.scheme, parts.hostname, port, path)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.base_path}"

    def connect(self, timeout_s: float) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=timeout_s, context=ssl.create_default_context()
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout_s)


@dataclass
class RequestResult:
    index: int
    ok: bool = False
    #: perf_counter at send; the runner turns it into an offset from the start of the level
    started_s: float = 0.0
    ttft_s: float | None = None
    latency_s: float | None = None
    #: arrival of each text-carrying event, seconds after the first one (inter-token latency)
    chunk_offsets_s: list[float] = field(default_factory=list, repr=False)
    output_tokens: int = 0
    #: "usage" (the server's count) or "chunks" (text-carrying events counted)
    token_source: str = "chunks"
    prompt_tokens: int | None = None
    error: str | None = None
    error_kind: str | None = None

    def fail(self, kind: str, message: str) -> RequestResult:
        self.ok, self.error_kind, self.error = False, kind, message
        return self


class _Stale(Exception):
    """A reused keep-alive connection the server had already closed: retry once on a fresh one."""


class Connection:
    def __init__(self, endpoint: Endpoint, *, timeout_s: float) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None
        self._reused = False

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def get_json(self, path: str) -> Any:
        """A plain GET (model list, version): the parsed JSON, or None on any failure."""
        try:
            conn = self.endpoint.connect(self.timeout_s)
            try:
                conn.request("GET", self.endpoint.base_path + path, headers={"Accept": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                return json.loads(data) if resp.status == 200 else None
            finally:
                conn.close()
        except (OSError, http.client.HTTPException, ValueError):
            return None

    def stream(self, index: int, path: str, body: dict[str, Any]) -> RequestResult:
        payload = json.dumps(body).encode()
        try:
            return self._stream(index, path, payload)
        except _Stale:
            self.close()
            return self._stream(index, path, payload)

    def _stream(self, index: int, path: str, payload: bytes) -> RequestResult:
        result = RequestResult(index=index)
        reused = self._conn is not None
        if self._conn is None:
            self._conn = self.endpoint.connect(self.timeout_s)
        conn = self._conn
        result.started_s = time.perf_counter()
        try:
            try:
                conn.request("POST", self.endpoint.base_path + path, body=payload, headers={
                    "Content-Type": "application/json", "Accept": "text/event-stream",
                })  # fmt: skip
                resp = conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                if reused:
                    raise _Stale() from None
                raise
            if resp.status != 200:
                text = resp.read(65536)
                self.close()
                return result.fail("http", f"HTTP {resp.status}: {_body_message(text, resp.reason)}")
            ctype = resp.getheader("Content-Type", "")
            if "text/event-stream" not in ctype:
                self.close()
                return result.fail(
                    "protocol", f"the server answered {ctype or 'no Content-Type'}, not a stream (text/event-stream)"
                )
            self._read_events(resp, result)
            if resp.will_close or not result.ok:
                self.close()
            return result
        except _Stale:
            raise
        except TimeoutError:
            self.close()
            return result.fail("timeout", f"no data from the server for {self.timeout_s:g} s (--timeout)")
        except (ConnectionRefusedError, socket.gaierror) as exc:
            self.close()
            return result.fail("connect", f"cannot connect to {self.endpoint.url}: {_os_message(exc)}")
        except (http.client.IncompleteRead, http.client.RemoteDisconnected, ConnectionResetError) as exc:
            self.close()
            got = f" after {result.output_tokens} tokens" if result.ttft_s is not None else ""
            return result.fail("stream", f"{STREAM_CLOSED}{got} ({type(exc).__name__})")
        except OSError as exc:
            self.close()
            kind = "connect" if result.ttft_s is None and not reused else "stream"
            return result.fail(kind, f"{self.endpoint.url}: {_os_message(exc)}")
        except http.client.HTTPException as exc:
            self.close()
            return result.fail("protocol", f"bad HTTP from the server: {type(exc).__name__}: {exc}")

    def _read_events(self, resp: http.client.HTTPResponse, result: RequestResult) -> None:
        parser = SseParser()
        first_at: float | None = None
        usage_tokens: int | None = None
        chunks = 0
        saw_done = ended = False
        while not ended:
            raw = resp.readline(1 << 20)
            if not raw:
                data = parser.flush()
                if data is None:
                    break
                ended = True
            else:
                data = parser.feed_line(raw.decode("utf-8", "replace"))
                if data is None:
                    continue
            now = time.perf_counter()
            if data.strip() == DONE:
                saw_done = True
                break
            chunk = interpret(data)
            if chunk.error is not None:
                result.fail("stream", f"the server reported an error mid-stream: {chunk.error}")
                result.output_tokens = usage_tokens if usage_tokens is not None else chunks
                return
            if chunk.text:
                if first_at is None:
                    first_at = now
                    result.ttft_s = now - result.started_s
                result.chunk_offsets_s.append(now - first_at)
                chunks += 1
            if chunk.completion_tokens is not None:
                usage_tokens = chunk.completion_tokens
            if chunk.prompt_tokens is not None:
                result.prompt_tokens = chunk.prompt_tokens
        end = time.perf_counter()
        result.latency_s = end - result.started_s
        if usage_tokens is not None:
            result.output_tokens, result.token_source = usage_tokens, "usage"
        else:
            result.output_tokens, result.token_source = chunks, "chunks"
        if not saw_done:
            result.fail("stream", f"{STREAM_CLOSED} after {result.output_tokens} tokens (no 'data: [DONE]')")
            return
        # a stream with no text is an answer (the model stopped at once): counted, with no TTFT
        result.ok = True
        resp.read()  # drain to the end of the body so the connection can be reused


def _body_message(raw: bytes, reason: str) -> str:
    text = raw.decode("utf-8", "replace").strip()
    try:
        return error_message(json.loads(text))
    except ValueError:
        return (text.splitlines()[0][:200] if text else reason) or "no message"


def _os_message(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running, on this port?)"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror or exc})"
    return exc.strerror or str(exc) or type(exc).__name__
