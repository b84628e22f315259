"""The requests a benchmark sends: generated from token lengths, or read from a JSONL file.

Generated prompts are words drawn from a fixed list of common English words, most of which are one
token with a leading space in the BPE/SentencePiece vocabularies of current models, so
``prompt_tokens`` words come out near that many tokens; chat prompts start with a short instruction
to write a story with them (given bare words, a chat model may end its turn at once), and the chat
template adds its own tokens. The server's own count (``usage``) is what the results report. Each
request index gets its own words (seeded: ``seed`` and the index), so two runs with the same seed
send the same requests, and requests share no more than that short instruction as a prefix a server
could cache.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.errors import UsageError

APIS = ("chat", "completions")
API_PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}

#: short, frequent English words, most of them one token (with their leading space) in BPE and
#: SentencePiece vocabularies; the server's own count (usage) is what results report
WORDS = (
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "are",
    "with",
    "as",
    "his",
    "they",
    "be",
    "at",
    "one",
    "have",
    "this",
    "from",
    "or",
    "had",
    "by",
    "hot",
    "word",
    "but",
    "what",
    "some",
    "we",
    "can",
    "out",
    "other",
    "were",
    "all",
    "there",
    "when",
    "up",
    "use",
    "your",
    "how",
    "said",
    "an",
    "each",
    "she",
    "which",
    "do",
    "their",
    "time",
    "if",
    "will",
    "way",
    "about",
    "many",
    "then",
    "them",
    "write",
    "would",
    "like",
    "so",
    "these",
    "her",
    "long",
    "make",
    "thing",
    "see",
    "him",
    "two",
    "has",
    "look",
    "more",
    "day",
    "could",
    "go",
    "come",
    "did",
    "number",
    "sound",
    "no",
    "most",
    "people",
    "my",
    "over",
    "know",
    "water",
    "than",
    "call",
    "first",
    "who",
    "may",
    "down",
    "side",
    "been",
    "now",
    "find",
    "any",
    "new",
    "work",
    "part",
    "take",
    "get",
    "place",
    "made",
    "live",
    "where",
    "after",
    "back",
    "little",
    "only",
    "round",
    "man",
    "year",
    "came",
    "show",
    "every",
    "good",
    "me",
    "give",
    "our",
    "under",
    "name",
    "very",
    "through",
    "just",
    "form",
    "great",
    "think",
    "say",
    "help",
    "low",
    "line",
    "differ",
    "turn",
    "cause",
    "much",
    "mean",
    "before",
    "move",
    "right",
    "boy",
    "old",
    "too",
    "same",
    "tell",
    "does",
    "set",
    "three",
    "want",
    "air",
    "well",
    "also",
    "play",
    "small",
    "end",
    "put",
    "home",
    "read",
    "hand",
    "port",
    "large",
    "spell",
    "add",
    "even",
    "land",
    "here",
    "must",
    "big",
    "high",
    "such",
    "follow",
    "act",
    "why",
    "ask",
    "men",
    "change",
    "went",
    "light",
    "kind",
)


#: what a generated chat prompt asks for, before its words: something long to write
CHAT_INSTRUCTION = "Write a long story that uses all of these words:"


@dataclass(frozen=True)
class Prompt:
    """One request's input: a prompt (completions) or chat messages, and its own max_tokens if any."""

    text: str | None = None
    messages: tuple[dict[str, Any], ...] | None = None
    max_tokens: int | None = None


@dataclass
class Workload:
    api: str = "chat"
    #: generated prompts of about this many tokens (None when prompts come from a file)
    prompt_tokens: int | None = 128
    max_tokens: int = 128
    seed: int = 0
    #: ask the server to go on past end-of-sequence (vLLM, llama.cpp server) so every request
    #: generates max_tokens
    ignore_eos: bool = False
    #: JSONL file the prompts came from, and its SHA-256 (runs compare only on the same file)
    prompts_file: str | None = None
    prompts_sha256: str | None = None
    prompts: list[Prompt] = field(default_factory=list, repr=False)
    #: set after a run when the server generated more than max_tokens: the most one request
    #: generated (the workload that really ran, so history never compares it with honest runs)
    max_tokens_ignored_up_to: int | None = None

    def __post_init__(self) -> None:
        if self.api not in APIS:
            raise UsageError(f"--api must be one of {', '.join(APIS)}, not {self.api!r}")
        if self.max_tokens < 1:
            raise UsageError(f"--max-tokens must be at least 1, not {self.max_tokens}")
        if self.prompts_file is None and (self.prompt_tokens is None or self.prompt_tokens < 1):
            raise UsageError(f"--prompt-tokens must be at least 1, not {self.prompt_tokens}")

    @property
    def path(self) -> str:
        return API_PATHS[self.api]

    def key(self) -> str:
        """What identifies this workload in the history: runs with equal keys are comparable."""
        if self.prompts_file is not None:
            source = f"file {Path(self.prompts_file).name}@{(self.prompts_sha256 or '')[:12]}"
        else:
            source = f"prompt~{self.prompt_tokens}tok seed={self.seed}"
        eos = " ignore_eos" if self.ignore_eos else ""
        ignored = ""
        if self.max_tokens_ignored_up_to is not None:
            ignored = f" (ignored by the server: up to {self.max_tokens_ignored_up_to} generated)"
        return f"{self.api} {source} max_tokens={self.max_tokens}{ignored}{eos}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "api": self.api,
            "prompt_tokens": self.prompt_tokens,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "ignore_eos": self.ignore_eos,
            "prompts_file": self.prompts_file,
            "prompts_sha256": self.prompts_sha256,
            "prompts_in_file": len(self.prompts) if self.prompts_file else None,
            "max_tokens_ignored_up_to": self.max_tokens_ignored_up_to,
            "key": self.key(),
        }

    def prompt(self, index: int) -> Prompt:
        if self.prompts:
            return self.prompts[index % len(self.prompts)]
        words = generated_text(self.seed, index, self.prompt_tokens or 1)
        if self.api == "chat":  # a chat model given bare words may end its turn at once
            return Prompt(text=f"{CHAT_INSTRUCTION} {words}")
        return Prompt(text=words)

    def body(self, index: int, model: str, *, include_usage: bool) -> dict[str, Any]:
        """The JSON body of request ``index`` (deterministic)."""
        prompt = self.prompt(index)
        body: dict[str, Any] = {"model": model}
        if self.api == "chat":
            messages = prompt.messages or ({"role": "user", "content": prompt.text or ""},)
            body["messages"] = list(messages)
        else:
            if prompt.text is None:
                raise UsageError("a prompt given as chat messages needs --api chat")
            body["prompt"] = prompt.text
        body["max_tokens"] = prompt.max_tokens or self.max_tokens
        body["temperature"] = 0
        body["seed"] = self.seed + index
        body["stream"] = True
        if include_usage:
            body["stream_options"] = {"include_usage": True}
        if self.ignore_eos:
            body["ignore_eos"] = True
        return body


def generated_text(seed: int, index: int, words: int) -> str:
    rng = random.Random(f"gpuprov-bench:{seed}:{index}")
    return " ".join(rng.choice(WORDS) for _ in range(words))


def load_prompts(path: str | Path, api: str) -> tuple[list[Prompt], str]:
    """Prompts from a JSONL file: one object a line, ``{"prompt": "..."}`` or ``{"messages": [...]}``,
    optionally with ``"max_tokens"``. Returns them and the file's SHA-256."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{p}: is a directory, expected a JSONL file of prompts") from None
    except OSError as exc:
        raise UsageError(f"{p}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{p}: not UTF-8 text, expected JSONL") from None
    prompts = [parse_prompt_line(line, f"{p}:{n}", api) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not prompts:
        raise UsageError(f"{p}: no prompts (expected one JSON object a line)")
    return prompts, hashlib.sha256(raw).hexdigest()


def parse_prompt_line(line: str, where: str, api: str) -> Prompt:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{where}: not valid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise UsageError(f'{where}: expected an object like {{"prompt": "..."}}')
    max_tokens = obj.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        raise UsageError(f"{where}: max_tokens must be a positive integer")
    if "messages" in obj:
        messages = obj["messages"]
        if api != "chat":
            raise UsageError(f"{where}: chat messages need --api chat")
        if (
            not isinstance(messages, list)
            or not messages
            or not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages)
        ):
            raise UsageError(f'{where}: "messages" must be a non-empty list of {{"role": ..., "content": ...}}')
        return Prompt(messages=tuple(messages), max_tokens=max_tokens)
    prompt = obj.get("prompt")
    if not isinstance(prompt, str):
        raise UsageError(f'{where}: expected a "prompt" string or a "messages" list')
    return Prompt(text=prompt, max_tokens=max_tokens)
