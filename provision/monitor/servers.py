"""The server side of ``gpuprov monitor``: what the inference server in front of the GPU is doing.

Each engine says it its own way: vLLM and llama-server (``--metrics``) serve Prometheus text at ``/metrics``
(running and waiting requests, KV-cache use, token counters); llama-server without ``--metrics`` still
has ``/slots``; Ollama lists its loaded models at ``/api/ps``; llama-cpp-python's ``llama_cpp.server``
exposes no load figures at all, only its OpenAI-compatible ``/v1/models`` (up or down, which model).
:class:`ServerWatcher` reads one server and turns token counters into tokens/s between two reads.
A server that does not answer is a reading (``up: false`` and why), never an exception.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from provision.engineflags import ENGINE_IDS, LLAMA_CPP_ENGINE, OLLAMA_ENGINE, VLLM_ENGINE

#: seconds one read of a server may take: a monitor sample must not stall behind a hung server
TIMEOUT_S = 2.0
MAX_BODY_BYTES = 4 * 1024 * 1024

#: ``llama_cpp``: either llama.cpp server (what a ``serving.llama_cpp`` unit runs: llama-server, or
#: llama-cpp-python's): /metrics, then /slots, then /v1/models, whichever it answers
ENGINES = (VLLM_ENGINE, "llama_server", "llama_cpp_python", LLAMA_CPP_ENGINE, OLLAMA_ENGINE)


def parse_prometheus_text(text: str) -> dict[str, float]:
    """Sample name -> value summed over its label sets (``vllm:generation_tokens_total``), from the text
    exposition format, parsed by prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + float(sample.value)
    return out


def _first(metrics: dict[str, float], *names: str) -> float | None:
    for name in names:
        if name in metrics:
            return metrics[name]
    return None


def vllm_figures(metrics: dict[str, float]) -> dict[str, Any]:
    """vLLM's scheduler and cache gauges and token counters (names of v0 and of the v1 engine)."""
    kv = _first(metrics, "vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
    return {
        "requests_running": _first(metrics, "vllm:num_requests_running"),
        "requests_waiting": _first(metrics, "vllm:num_requests_waiting"),
        "kv_cache_used_pct": None if kv is None else round(kv * 100, 2),
        "generated_tokens_total": _first(metrics, "vllm:generation_tokens_total"),
        "prompt_tokens_total": _first(metrics, "vllm:prompt_tokens_total"),
        "requests_ok_total": _first(metrics, "vllm:request_success_total"),
        "preemptions_total": _first(metrics, "vllm:num_preemptions_total"),
    }


def llama_server_figures(metrics: dict[str, float]) -> dict[str, Any]:
    """llama.cpp's llama-server ``--metrics`` (``llamacpp:`` names)."""
    kv = _first(metrics, "llamacpp:kv_cache_usage_ratio")
    return {
        "requests_running": _first(metrics, "llamacpp:requests_processing"),
        "requests_waiting": _first(metrics, "llamacpp:requests_deferred"),
        "kv_cache_used_pct": None if kv is None else round(kv * 100, 2),
        "generated_tokens_total": _first(metrics, "llamacpp:tokens_predicted_total"),
        "prompt_tokens_total": _first(metrics, "llamacpp:prompt_tokens_total"),
    }


def slots_figures(slots: Any) -> dict[str, Any]:
    """llama-server's ``/slots``: one entry per slot, ``is_processing`` while it serves a request."""
    if not isinstance(slots, list):
        raise ValueError("/slots did not return a list")
    busy = sum(1 for s in slots if isinstance(s, dict) and s.get("is_processing"))
    return {"requests_running": busy, "slots": len(slots)}


def ollama_figures(ps: Any) -> dict[str, Any]:
    """Ollama's ``/api/ps``: the models loaded and how much of each sits in VRAM."""
    models = ps.get("models") if isinstance(ps, dict) else None
    if not isinstance(models, list):
        raise ValueError("/api/ps has no models list")
    loaded = [
        {"model": str(m.get("name") or m.get("model") or "?"), "size_vram_mib": int(m.get("size_vram") or 0) // 2**20}
        for m in models
        if isinstance(m, dict)
    ]
    return {"models_loaded": loaded}


def openai_models_figures(models: Any) -> dict[str, Any]:
    data = models.get("data") if isinstance(models, dict) else None
    if not isinstance(data, list):
        raise ValueError("/v1/models has no data list")
    return {"models_loaded": [{"model": str(m.get("id", "?"))} for m in data if isinstance(m, dict)]}


@dataclass
class ServerReading:
    url: str
    engine: str
    up: bool
    error: str | None = None
    figures: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "engine": self.engine, "up": self.up, "error": self.error, **self.figures}


class ServerWatcher:
    """Reads one server again and again; keeps the last token counter to give tokens/s."""

    def __init__(self, url: str, engine: str, *, api_key: str | None = None, monotonic: Any = time.monotonic) -> None:
        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}: one of {', '.join(ENGINES)}")
        self.url = url.rstrip("/")
        self.engine = engine
        self.api_key = api_key
        self._monotonic = monotonic
        self._last_tokens: tuple[float, float] | None = None  # (monotonic s, generated tokens total)

    def _get(self, path: str) -> bytes:
        request = urllib.request.Request(self.url + path)
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            body: bytes = response.read(MAX_BODY_BYTES)  # urlopen's response is untyped (Any) in typeshed
            return body

    def _json(self, path: str) -> Any:
        return json.loads(self._get(path))

    def read(self) -> ServerReading:
        try:
            figures = self._figures()
        except urllib.error.HTTPError as exc:
            return ServerReading(self.url, self.engine, False, f"HTTP {exc.code} {exc.reason}")
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return ServerReading(self.url, self.engine, False, f"not answering: {reason}")
        except ValueError as exc:  # JSON or Prometheus text that is not what the engine serves
            return ServerReading(self.url, self.engine, False, f"unexpected answer: {exc}")
        now = self._monotonic()
        tokens = figures.get("generated_tokens_total")
        if tokens is not None:
            if self._last_tokens is not None and now > self._last_tokens[0] and tokens >= self._last_tokens[1]:
                figures["generated_tokens_per_s"] = round(
                    (tokens - self._last_tokens[1]) / (now - self._last_tokens[0]), 2
                )
            self._last_tokens = (now, tokens)
        return ServerReading(self.url, self.engine, True, None, figures)

    def _figures(self) -> dict[str, Any]:
        if self.engine == "vllm":
            return vllm_figures(parse_prometheus_text(self._get("/metrics").decode("utf-8", "replace")))
        if self.engine == "llama_server":
            try:
                text = self._get("/metrics").decode("utf-8", "replace")
            except urllib.error.HTTPError:  # started without --metrics (501): its slots still tell
                return slots_figures(self._json("/slots"))
            return llama_server_figures(parse_prometheus_text(text))
        if self.engine == "ollama":
            return ollama_figures(self._json("/api/ps"))
        if self.engine == LLAMA_CPP_ENGINE:
            for path in ("/metrics", "/slots"):
                try:
                    body = self._get(path)
                except urllib.error.HTTPError as exc:
                    if exc.code in (404, 501):  # not this server's, or not enabled: the next way
                        continue
                    raise
                if path == "/metrics":
                    return llama_server_figures(parse_prometheus_text(body.decode("utf-8", "replace")))
                return slots_figures(json.loads(body))
        return openai_models_figures(self._json("/v1/models"))


#: the engine ids of installed serving units (provision.serving.units) -> the reader for them: the reader
#: of the same name (``llama_cpp`` reads either llama.cpp server)
UNIT_ENGINES = {engine: engine for engine in ENGINE_IDS}


def watchers_for_installed(servers: list[Any]) -> list[ServerWatcher]:
    """A watcher per serving unit gpuprov installed (``Snapshot.host.servers``); a wildcard address is
    read on loopback."""
    out = []
    for server in servers:
        engine = UNIT_ENGINES.get(server.engine)
        if engine is None or server.port is None:
            continue
        host = server.host or "127.0.0.1"
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        out.append(ServerWatcher(f"http://{host}:{server.port}", engine))
    return out
