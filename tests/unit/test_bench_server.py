"""A local OpenAI-compatible streaming server whose timing the test controls (the test double behind
the ``gpuprov bench`` measurement tests), and tests that it speaks the wire format real servers do.

Standard library only: ``http.server`` on 127.0.0.1, port 0, HTTP/1.1 keep-alive with chunked
transfer encoding (what uvicorn, vLLM's and llama-cpp-python's server, sends). The request index is
read back from the body's ``seed`` (the workload sends ``seed + index``), so a test can script
request *i*: a delay before its first token, an HTTP error, an error event mid-stream, a malformed
event, a dropped connection, a hang.

It is the suite's truth: events leave on an absolute schedule (the first after ``ttft_s``, each next
one ``per_token_s`` × its tokens later, measured from the request's arrival, so a late wake-up never
shifts the ones after it), and it misbehaves on request: trickling tokens, ignoring ``max_tokens``,
several tokens per event, no usage, cutting streams when another request arrives, hanging. It can
count tokens the way real servers' tokenizer endpoints do (vLLM and llama.cpp's ``/tokenize``,
llama-cpp-python's ``/extras/tokenize``: each word is one token). :class:`ServerProcess` runs it in
a process of its own, so the client under test does not share its interpreter lock.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from provision.bench.sse import DONE, SseParser, interpret


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops a burst of connects (clients retry after 1 s)


@dataclass
class Script:
    ttft_s: float = 0.0
    per_token_s: float = 0.0
    tokens: int = 8
    #: tokens per streamed event (servers may batch several)
    tokens_per_event: int = 1
    #: send a usage chunk when asked (stream_options.include_usage)
    usage: bool = True
    prompt_tokens: int = 11
    #: request index -> HTTP status to answer with instead of a stream
    http_errors: dict[int, int] = field(default_factory=dict)
    #: request index -> tokens sent before an error event
    stream_errors: dict[int, int] = field(default_factory=dict)
    #: request index -> tokens sent before the connection is dropped without [DONE]
    drops: dict[int, int] = field(default_factory=dict)
    #: request index -> tokens sent before an event that is not JSON
    malformed: dict[int, int] = field(default_factory=dict)
    #: generate ``tokens`` whatever max_tokens the request asks for (honest servers stop there)
    ignore_max_tokens: bool = False
    #: drop a stream after its first event when another request is in flight (llama-cpp-python's
    #: server ends the running request when a new one arrives)
    drop_when_busy: bool = False
    #: answer tokenizer requests like this engine: "vllm", "llama.cpp" (POST /tokenize) or
    #: "llama-cpp-python" (POST /extras/tokenize, which adds a BOS token); None: no tokenizer
    tokenizer: str | None = None
    #: never answer anything, GETs included (a hung server that still accepts connections)
    silent: bool = False
    #: usage.completion_tokens = tokens × this (a server whose usage counts something else)
    usage_scale: float = 1.0
    #: request indexes whose answer has no text at all (the model ended its turn at once)
    empty: set[int] = field(default_factory=set)
    #: request indexes (>=) from which the server never answers
    hang_from: int | None = None
    #: reject bodies carrying stream_options with HTTP 400 (older servers)
    reject_stream_options: bool = False
    #: per-token delay grows with requests in flight beyond this many (a GPU's batch capacity)
    capacity: int | None = None
    #: per-token delay × (in flight / capacity) ** overload_exponent past capacity: above 1,
    #: throughput falls past capacity; below 1, it still grows, but latency grows too
    overload_exponent: float = 1.5
    seed_base: int = 0
    #: who the server says it is: /v1/models' owned_by, and GET paths answered with JSON (engine identity)
    owned_by: str = "gpuprov-tests"
    get_routes: dict[str, Any] = field(default_factory=dict)


class FakeServer:
    """``with FakeServer(Script(...)) as srv: srv.url`` — stops on exit."""

    def __init__(self, script: Script | None = None) -> None:
        self.script = script or Script()
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.bodies: list[dict[str, Any]] = []
        self.release = threading.Event()  # set on stop: hung handlers return
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                # as uvicorn does: without it, Nagle holds each small event until the client's delayed
                # ACK (40 ms), and a no-delay server answers ~22 requests/s whatever the client
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with server.lock:
                    server.connections.append(self.connection)

            def do_GET(self) -> None:
                if server.script.silent:
                    server.release.wait(60)
                    self.close_connection = True
                    return
                if self.path == "/v1/models":
                    self._json(
                        200,
                        {
                            "object": "list",
                            "data": [{"id": "fake-model", "object": "model", "owned_by": server.script.owned_by}],
                        },
                    )
                elif self.path in server.script.get_routes:
                    self._json(200, server.script.get_routes[self.path])
                else:
                    self._json(404, {"detail": "Not Found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                if self.path in ("/tokenize", "/extras/tokenize"):
                    server.handle_tokenize(self, body)
                    return
                with server.lock:
                    server.bodies.append(body)
                server.handle_completion(self, body)

            def _json(self, status: int, obj: Any) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.connections: list[socket.socket] = []
        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop listening and drop open connections: a server that died."""
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        with self.lock:
            for conn in self.connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    # -- tokenizer endpoints -------------------------------------------------------------------------
    def handle_tokenize(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        """vLLM: {"prompt"} -> {"count", "tokens"}; llama.cpp: {"content"} -> {"tokens"};
        llama-cpp-python: {"input"} -> {"tokens"} with a BOS token first. Each word is a token."""
        kind = self.script.tokenizer
        wanted = {
            "vllm": ("/tokenize", "prompt"),
            "llama.cpp": ("/tokenize", "content"),
            "llama-cpp-python": ("/extras/tokenize", "input"),
        }
        if kind not in wanted or handler.path != wanted[kind][0] or not isinstance(body.get(wanted[kind][1]), str):
            handler._json(404, {"detail": "Not Found"})  # type: ignore[attr-defined]
            return
        tokens = [7] * len(body[wanted[kind][1]].split())
        if kind == "llama-cpp-python":
            handler._json(200, {"tokens": [1, *tokens]})  # type: ignore[attr-defined]
        elif kind == "vllm":
            handler._json(200, {"count": len(tokens), "max_model_len": 4096, "tokens": tokens})  # type: ignore[attr-defined]
        else:
            handler._json(200, {"tokens": tokens})  # type: ignore[attr-defined]

    # -- one completion ----------------------------------------------------------------------------
    def handle_completion(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        arrived = time.perf_counter()
        s = self.script
        index = int(body.get("seed", 0)) - s.seed_base
        if s.reject_stream_options and "stream_options" in body:
            handler._json(400, {"error": {"message": "Unrecognized request argument: stream_options"}})  # type: ignore[attr-defined]
            return
        if index in s.http_errors:
            handler._json(s.http_errors[index], {"error": {"message": f"injected failure of request {index}"}})  # type: ignore[attr-defined]
            return
        if s.silent or (s.hang_from is not None and index >= s.hang_from):
            self.release.wait(60)
            handler.close_connection = True
            return
        chat = "messages" in body
        text = json.dumps(body.get("messages") or body.get("prompt"))
        delay = re.search(r"delay_ms=(\d+)", text)
        ttft_s = int(delay.group(1)) / 1000 if delay else s.ttft_s
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            # the fields real servers put in every chunk (some clients dispatch on "object")
            head = {
                "id": f"cmpl-{index}",
                "object": "chat.completion.chunk" if chat else "text_completion",
                "created": int(time.time()),
                "model": body.get("model", "fake-model"),
            }
            handler.send_response(200)
            handler.send_header("Content-Type", "text/event-stream")
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            if chat:  # the role-only first chunk chat servers send
                self._event(handler, {**head, "choices": [{"index": 0, "delta": {"role": "assistant"}}]})
            due = arrived + ttft_s  # when the next event leaves: an absolute schedule
            _sleep_until(due)
            sent = 0
            asked = body.get("max_tokens")
            tokens = 0 if index in s.empty else s.tokens
            if isinstance(asked, int) and not s.ignore_max_tokens:
                tokens = min(tokens, asked)
            while sent < tokens:
                if index in s.stream_errors and sent >= s.stream_errors[index]:
                    self._event(handler, {"error": {"message": "injected error mid-stream", "code": 500}})
                    break
                if index in s.malformed and sent >= s.malformed[index]:
                    self._raw(handler, "data: {not json\n\n")
                    break
                busy = s.drop_when_busy and sent and self.in_flight > 1
                if busy or (index in s.drops and sent >= s.drops[index]):
                    handler.wfile.flush()
                    handler.close_connection = True
                    handler.connection.shutdown(2)
                    return
                if sent:
                    due += self._per_token_s() * s.tokens_per_event
                    _sleep_until(due)
                n = min(s.tokens_per_event, tokens - sent)
                piece = " tok" * n
                choice = {"index": 0, "delta": {"content": piece}} if chat else {"index": 0, "text": piece}
                self._event(handler, {**head, "choices": [choice]})
                sent += n
            else:
                if s.usage and body.get("stream_options", {}).get("include_usage"):
                    self._event(
                        handler,
                        {
                            **head,
                            "choices": [],
                            "usage": {
                                "prompt_tokens": s.prompt_tokens,
                                "completion_tokens": round(tokens * s.usage_scale),
                                "total_tokens": s.prompt_tokens + tokens,
                            },
                        },
                    )
            self._raw(handler, f"data: {DONE}\n\n")
            handler.wfile.write(b"0\r\n\r\n")
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True
        finally:
            with self.lock:
                self.in_flight -= 1

    def _per_token_s(self) -> float:
        s = self.script
        if s.capacity is None:
            return s.per_token_s
        with self.lock:
            load = self.in_flight
        return s.per_token_s * max(1.0, load / s.capacity) ** s.overload_exponent

    def _event(self, handler: BaseHTTPRequestHandler, obj: Any) -> None:
        self._raw(handler, f"data: {json.dumps(obj)}\n\n")

    @staticmethod
    def _raw(handler: BaseHTTPRequestHandler, text: str) -> None:
        data = text.encode()
        handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        handler.wfile.flush()


def _sleep_until(when: float) -> None:
    delay = when - time.perf_counter()
    if delay > 0:
        time.sleep(delay)


def serve(script_json: str) -> None:
    """Run a FakeServer until stdin closes; its URL is the first line on stdout (ServerProcess)."""
    data = json.loads(script_json)
    for key in ("http_errors", "stream_errors", "drops", "malformed"):
        data[key] = {int(k): v for k, v in data.get(key, {}).items()}
    data["empty"] = set(data.get("empty", []))
    with FakeServer(Script(**data)) as srv:
        print(srv.url, flush=True)
        sys.stdin.read()


class ServerProcess:
    """A FakeServer in a process of its own: ``with ServerProcess(Script(...)) as url: ...``."""

    def __init__(self, script: Script) -> None:
        data = asdict(script)
        data["empty"] = sorted(data["empty"])
        code = "import sys; from tests.unit.test_bench_server import serve; serve(sys.argv[1])"
        self._args = [sys.executable, "-c", code, json.dumps(data)]
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> str:
        from pathlib import Path

        root = Path(__file__).resolve().parents[2]
        self._proc = subprocess.Popen(self._args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=root)
        assert self._proc.stdout is not None
        url = self._proc.stdout.readline().strip()
        assert url.startswith("http://"), "the test server did not start"
        return url

    def __exit__(self, *exc_info: object) -> None:
        assert self._proc is not None
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


# -- the double speaks the format ------------------------------------------------------------------


def _stream(url: str, body: dict[str, Any], path: str = "/v1/chat/completions") -> list[str]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("Transfer-Encoding") == "chunked"
    parser, events = SseParser(), []
    for line in resp.read().decode().splitlines(keepends=True):
        if (data := parser.feed_line(line)) is not None:
            events.append(data)
    conn.close()
    return events


def test_fake_server_streams_chat_chunks_usage_and_done() -> None:
    with FakeServer(Script(tokens=3)) as srv:
        events = _stream(
            srv.url, {"model": "m", "messages": [], "stream": True, "stream_options": {"include_usage": True}}
        )
    assert events[-1] == DONE
    chunks = [interpret(e) for e in events[:-1]]
    assert [c.text for c in chunks] == ["", " tok", " tok", " tok", ""]
    assert chunks[-1].completion_tokens == 3
    assert chunks[-1].prompt_tokens == 11


def test_fake_server_completions_without_usage_unless_asked() -> None:
    with FakeServer(Script(tokens=2)) as srv:
        events = _stream(srv.url, {"model": "m", "prompt": "x", "stream": True}, "/v1/completions")
    assert [interpret(e).text for e in events[:-1]] == [" tok", " tok"]
    assert all(interpret(e).completion_tokens is None for e in events[:-1])


@pytest.mark.parametrize(
    ("owned_by", "routes", "engine", "version"),
    [
        ("vllm", {"/version": {"version": "0.11.0"}}, "vllm", "0.11.0"),
        ("library", {"/api/version": {"version": "0.12.3"}}, "ollama", "0.12.3"),
        ("llamacpp", {"/props": {"build_info": "b6869-ab3f5f0a", "total_slots": 4}}, "llama.cpp", "b6869-ab3f5f0a"),
        (
            "me",
            {"/openapi.json": {"info": {"title": "🦙 llama.cpp Python API", "version": "0.3.36"}}},
            "llama-cpp-python",
            "0.3.36",
        ),
        ("someone", {}, None, None),  # a server that does not say what it is: not guessed
    ],
)
def test_server_info_names_the_engine_only_when_it_says_so(owned_by, routes, engine, version) -> None:  # type: ignore[no-untyped-def]
    from provision.bench.client import Endpoint
    from provision.bench.serverinfo import server_info

    with FakeServer(Script(owned_by=owned_by, get_routes=routes)) as srv:
        info = server_info(Endpoint.parse(srv.url), 5.0)
    assert (info["engine"], info["engine_version"]) == (engine, version)
    assert info["models"] == ["fake-model"]
