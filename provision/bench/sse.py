"""Server-sent events as OpenAI-compatible servers stream them, and what one streamed chunk says.

The wire format (WHATWG HTML, "server-sent events"): lines ``field: value``; ``data`` lines of one
event are joined with newlines; a blank line ends the event; lines starting with ``:`` are comments.
OpenAI-compatible servers send one JSON object per event and end with ``data: [DONE]``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

DONE = "[DONE]"


class SseParser:
    """Feed it lines (with or without their line ending); it returns each event's data when complete."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed_line(self, line: str) -> str | None:
        line = line.rstrip("\r\n")
        if line == "":
            return self.flush()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if not sep:
            name, value = line, ""
        elif value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        return None

    def flush(self) -> str | None:
        """The pending event (at a blank line, or when the stream ends without one)."""
        if not self._data:
            return None
        data = "\n".join(self._data)
        self._data = []
        return data


@dataclass
class Chunk:
    """What one streamed event carries, for timing: generated text, token usage, or an error."""

    text: str = ""
    #: the server's count of generated tokens so far (``usage.completion_tokens``), when it sent one
    completion_tokens: int | None = None
    prompt_tokens: int | None = None
    error: str | None = None
    #: the event is not an OpenAI chunk at all (not JSON, not an object): a protocol failure
    malformed: bool = False


def interpret(data: str) -> Chunk:
    """One event's data: a ``/v1/completions`` or ``/v1/chat/completions`` chunk (or an error object)."""
    try:
        obj = json.loads(data)
    except json.JSONDecodeError:
        return Chunk(error=f"the server sent an event that is not JSON: {data[:80]!r}", malformed=True)
    if not isinstance(obj, dict):
        return Chunk(error=f"the server sent an event that is not a JSON object: {data[:80]!r}", malformed=True)
    if "error" in obj:
        return Chunk(error=error_message(obj))
    chunk = Chunk()
    parts: list[str] = []
    for choice in obj.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        if isinstance(choice.get("text"), str):  # /v1/completions
            parts.append(choice["text"])
        delta = choice.get("delta")
        if isinstance(delta, dict):  # /v1/chat/completions; reasoning models stream reasoning first
            for key in ("reasoning_content", "reasoning", "content"):
                if isinstance(delta.get(key), str):
                    parts.append(delta[key])
    chunk.text = "".join(parts)
    usage = obj.get("usage")
    if isinstance(usage, dict):
        chunk.completion_tokens = _int(usage.get("completion_tokens"))
        chunk.prompt_tokens = _int(usage.get("prompt_tokens"))
    return chunk


def error_message(obj: Any) -> str:
    """The message of an OpenAI-style error body (``{"error": {"message": ...}}`` or variants)."""
    if isinstance(obj, dict):
        err = obj.get("error", obj)
        if isinstance(err, dict):
            for key in ("message", "detail", "msg"):
                value = err.get(key)
                if isinstance(value, str) and value:
                    return value
        if isinstance(err, str) and err:
            return err
        detail = obj.get("detail")
        if isinstance(detail, str) and detail:
            return detail
        if isinstance(detail, list) and detail:  # FastAPI validation errors
            first = detail[0]
            if isinstance(first, dict) and isinstance(first.get("msg"), str):
                loc = ".".join(str(p) for p in first.get("loc", []) if p != "body")
                return f"{loc}: {first['msg']}" if loc else first["msg"]
    return json.dumps(obj)[:200]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
