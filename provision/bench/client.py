"""One streamed request to an OpenAI-compatible server, timed: standard library ``http.client`` only.

Each load worker owns one :class:`Connection` (HTTP/1.1 keep-alive, like a real client pool). Times
are ``time.perf_counter()`` readings; the first token is the first event that carries generated
text. Tokens are the server's count (``usage.completion_tokens``, asked for with
``stream_options.include_usage``) when it sends one; otherwise the runner counts the streamed text
(the server's tokenizer, or an estimate) and each result says which.

Two clocks bound a request: ``timeout_s``, the longest wait for the next byte (a socket timeout),
and ``request_timeout_s``, the total deadline from sending to ``data: [DONE]`` (the watchdog of
:mod:`~provision.bench.deadline` shuts the socket down when it passes, so a server that trickles
tokens cannot hold a request open). :meth:`Connection.cut` ends a request from another thread: the
runner uses it to end the requests still running when a ``--duration`` level is over.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Literal

from provision.bench.deadline import WATCHDOG
from provision.bench.sse import DONE, SseParser, error_message, interpret
from provision.errors import UsageError

#: why a request failed: the run stops early when the server is gone (connect) or every request so
#: far has failed the same way; "cut": the runner ended it because its level was over (neither
#: answered nor failed)
ErrorKind = Literal["connect", "timeout", "http", "stream", "protocol", "cut"]

CUT: ErrorKind = "cut"

#: how a request cut at the end of a --duration level is reported
CUT_AT_LEVEL_END = "cut at the level's end (--duration)"
#: how a request cut because its level stopped early (the server gone or too slow) is reported
CUT_AT_STOP = "cut when the level stopped early"

#: how a stream the server cut off (connection closed before ``data: [DONE]``) is reported
STREAM_CLOSED = "the server closed the connection mid-stream"

#: :meth:`Connection.cut`'s reason when the request's own deadline passed (a failure, not a cut)
_DEADLINE = "deadline"


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
        try:
            parts = urllib.parse.urlsplit(text)
            hostname = parts.hostname
        except ValueError as exc:  # "Invalid IPv6 URL": an unclosed [ or a bracket in the wrong place
            raise UsageError(f"{url!r} is not a valid URL ({exc}): give one like http://[::1]:8000") from None
        if parts.scheme not in ("http", "https"):
            raise UsageError(f"{url!r}: the URL must start with http:// or https://")
        if not hostname:
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
        return cls(parts.scheme, hostname, port, path)

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
    #: "usage" (the server's count), "tokenizer" (the streamed text counted by the server's
    #: tokenizer) or "estimated" (from the text's length and the events that carried it)
    token_source: str = "estimated"
    #: the server's own count (usage.completion_tokens), when it sent one
    usage_tokens: int | None = None
    #: text-carrying events received
    text_events: int = 0
    #: the generated text (the runner counts its tokens without usage, then drops it)
    text: str = field(default="", repr=False)
    #: the max_tokens this request asked for
    max_tokens: int | None = None
    prompt_tokens: int | None = None
    error: str | None = None
    error_kind: ErrorKind | None = None

    @property
    def cut(self) -> bool:
        """Ended by the runner at its level's end: neither answered nor failed."""
        return self.error_kind == CUT

    def fail(self, kind: ErrorKind, message: str) -> RequestResult:
        self.ok, self.error_kind, self.error = False, kind, message
        return self


class _Stale(Exception):
    """A reused keep-alive connection the server had already closed: retry once on a fresh one."""


def _shutdown(conn: http.client.HTTPConnection | None) -> None:
    """Wake the thread reading ``conn``: its next read sees the end of the stream."""
    sock = None if conn is None else conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class Connection:
    def __init__(self, endpoint: Endpoint, *, timeout_s: float, request_timeout_s: float | None = None) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        #: total deadline of one request (None: only the idle timeout bounds it)
        self.request_timeout_s = request_timeout_s
        #: the last get_json found no answer in time (a hung server, not a missing route)
        self.last_get_timed_out = False
        self._conn: http.client.HTTPConnection | None = None
        self._guard = threading.Lock()
        self._active = False
        self._cut_reason: str | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _finish(self) -> str | None:
        """The request in flight is over: why it was cut, or None."""
        with self._guard:
            self._active = False
            return self._cut_reason

    def cut(self, reason: str = CUT_AT_LEVEL_END) -> bool:
        """End the request in flight now (called from another thread), reported as ``reason``;
        False when none is in flight."""
        with self._guard:
            if not self._active or self._cut_reason is not None:
                return False
            self._cut_reason = reason
            conn = self._conn
        _shutdown(conn)
        return True

    def get_json(self, path: str) -> Any:
        """A plain GET (model list, version): the parsed JSON, or None on any failure. Bounded by the
        request deadline (or the idle timeout) as a whole, however slowly the server answers."""
        budget_s = self.request_timeout_s or self.timeout_s
        start = time.perf_counter()
        fired: list[bool] = []
        self.last_get_timed_out = False
        try:
            conn = self.endpoint.connect(min(self.timeout_s, budget_s))
            try:
                conn.connect()

                def give_up() -> None:
                    fired.append(True)
                    _shutdown(conn)

                watch = WATCHDOG.watch(start + budget_s, give_up)
                try:
                    conn.request("GET", self.endpoint.base_path + path, headers={"Accept": "application/json"})
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    watch.cancel()
                return json.loads(data) if resp.status == 200 else None
            finally:
                conn.close()
        except TimeoutError:
            self.last_get_timed_out = True
            return None
        except (OSError, http.client.HTTPException, ValueError):
            self.last_get_timed_out = bool(fired)
            return None

    def stream(self, index: int, path: str, body: dict[str, Any]) -> RequestResult:
        payload = json.dumps(body).encode()
        result = RequestResult(index=index)
        if isinstance(body.get("max_tokens"), int):
            result.max_tokens = body["max_tokens"]
        with self._guard:
            self._active, self._cut_reason = True, None
        watch = None
        if self.request_timeout_s is not None:
            watch = WATCHDOG.watch(time.perf_counter() + self.request_timeout_s, lambda: self.cut(_DEADLINE))
        try:
            try:
                self._stream(result, path, payload)
            except _Stale:
                self.close()
                if self._cut_reason is None:
                    self._stream(result, path, payload)
        finally:
            if watch is not None:
                watch.cancel()
            reason = self._finish()
        if reason is not None:
            self.close()  # its socket may be shut down: the next request takes a fresh one
            if not result.ok:
                if reason == _DEADLINE:
                    deadline = f"{self.request_timeout_s:g} s (--request-timeout)"
                    result.fail("timeout", f"no complete answer within {deadline}")
                else:
                    result.fail(CUT, reason)
        return result

    def _stream(self, result: RequestResult, path: str, payload: bytes) -> None:
        reused = self._conn is not None
        result.started_s = time.perf_counter()
        try:
            if self._conn is None:
                self._conn = self.endpoint.connect(self.timeout_s)
                self._conn.connect()
                with self._guard:
                    if self._cut_reason is not None:  # cut while connecting: the socket was not there yet
                        return
            conn = self._conn
            try:
                conn.request(
                    "POST",
                    self.endpoint.base_path + path,
                    body=payload,
                    headers={
                        "Content-Type": "application/json",
                        "Accept": "text/event-stream",
                    },
                )
                resp = conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                if reused:
                    raise _Stale() from None
                raise
            if resp.status != 200:
                text = resp.read(65536)
                self.close()
                result.fail("http", f"HTTP {resp.status}: {_body_message(text, resp.reason)}")
                return
            ctype = resp.getheader("Content-Type", "")
            if "text/event-stream" not in ctype:
                self.close()
                result.fail(
                    "protocol", f"the server answered {ctype or 'no Content-Type'}, not a stream (text/event-stream)"
                )
                return
            self._read_events(resp, result)
            if resp.will_close or not result.ok:
                self.close()
        except _Stale:
            raise
        except TimeoutError:
            self.close()
            result.fail("timeout", f"no data from the server for {self.timeout_s:g} s (--timeout)")
        except (ConnectionRefusedError, socket.gaierror) as exc:
            self.close()
            result.fail("connect", f"cannot connect to {self.endpoint.url}: {_os_message(exc)}")
        except (http.client.IncompleteRead, http.client.RemoteDisconnected, ConnectionResetError) as exc:
            self.close()
            got = f" after {result.text_events} text events" if result.ttft_s is not None else ""
            result.fail("stream", f"{STREAM_CLOSED}{got} ({type(exc).__name__})")
        except OSError as exc:
            self.close()
            kind: ErrorKind = "connect" if result.ttft_s is None and not reused else "stream"
            result.fail(kind, f"{self.endpoint.url}: {_os_message(exc)}")
        except http.client.HTTPException as exc:
            self.close()
            result.fail("protocol", f"bad HTTP from the server: {type(exc).__name__}: {exc}")

    def _read_events(self, resp: http.client.HTTPResponse, result: RequestResult) -> None:
        parser = SseParser()
        first_at: float | None = None
        parts: list[str] = []
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
                self._count(result, parts)
                if chunk.malformed:
                    result.fail("protocol", chunk.error)
                else:
                    result.fail("stream", f"the server reported an error mid-stream: {chunk.error}")
                return
            if chunk.text:
                if first_at is None:
                    first_at = now
                    result.ttft_s = now - result.started_s
                result.chunk_offsets_s.append(now - first_at)
                parts.append(chunk.text)
            if chunk.completion_tokens is not None:
                result.usage_tokens = chunk.completion_tokens
            if chunk.prompt_tokens is not None:
                result.prompt_tokens = chunk.prompt_tokens
        end = time.perf_counter()
        result.latency_s = end - result.started_s
        self._count(result, parts)
        if not saw_done:
            result.fail("stream", f"{STREAM_CLOSED} after {result.text_events} text events (no 'data: [DONE]')")
            return
        # a stream with no text is an answer (the model stopped at once): counted, with no TTFT
        result.ok = True
        resp.read()  # drain to the end of the body so the connection can be reused

    @staticmethod
    def _count(result: RequestResult, parts: list[str]) -> None:
        """Output tokens as far as the stream says: the server's usage, else an estimate the runner
        replaces with the server's tokenizer count when it can."""
        result.text_events = len(parts)
        result.text = "".join(parts)
        if result.usage_tokens is not None:
            result.output_tokens, result.token_source = result.usage_tokens, "usage"
        else:
            result.output_tokens, result.token_source = estimate_tokens(result.text, len(parts)), "estimated"


#: characters per token of English text in current BPE/SentencePiece vocabularies (about 4)
CHARS_PER_TOKEN = 4.0


def estimate_tokens(text: str, text_events: int) -> int:
    """Tokens in generated ``text`` without the server's count: its length at about 4 characters a
    token, and never fewer than the events that carried it (each carried at least one token)."""
    return max(text_events, round(len(text) / CHARS_PER_TOKEN))


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
