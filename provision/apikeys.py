"""The serving API keys apply makes, and how a secret file is shown: never by its content.

apply makes a key (letters and digits, :data:`KEY_LENGTH` of them) and records the SHA-256 of the file it
wrote in gpuprov's state directory (``keys.json``: path → hash; never the key). A later apply keeps a key
file whose hash is recorded and replaces any other — ``gpuprov render``'s placeholder, or a key written
by hand — with one of its own: a key gpuprov did not make is no key to serve with. The replaced file is
recorded for ``gpuprov revert`` like any other (in ``previous.json``, root's alone).

Wherever a secret file would be shown (a diff, a module result, a log) it is described instead:
``(secret, 44 bytes, changed)``.
"""

from __future__ import annotations

import hashlib
import secrets
import string
from pathlib import Path

#: characters of a key made by apply: safe unquoted in an environment file, a header and a URL
KEY_ALPHABET = string.ascii_letters + string.digits
#: 43 letters and digits: 256 bits of randomness (62 ** 43 > 2 ** 256)
KEY_LENGTH = 43
#: the shortest key apply makes: 22 letters and digits, 128 bits
MIN_KEY_LENGTH = 22
KEYS_FILE = "keys.json"
#: the shortest piece of a secret masked in module results (hidden_values)
MIN_HIDDEN = 4


def new_key(length: int = KEY_LENGTH) -> str:
    if length < 1:
        raise ValueError(f"key length must be positive, got {length}")
    return "".join(secrets.choice(KEY_ALPHABET) for _ in range(length))


def key_content(key: str, env: str | None) -> str:
    """The key file: ``ENV=KEY`` (an environment file) or the bare key (``--api-key-file``), one line."""
    return f"{env}={key}\n" if env else f"{key}\n"


def fingerprint(content: str) -> str:
    return "sha256:" + hashlib.sha256(content.encode("utf-8", "surrogateescape")).hexdigest()


def _recorded(state_dir: Path) -> dict[str, str]:
    from provision.applystate import _read

    data = _read(state_dir / KEYS_FILE).get("keys")
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def made_by_gpuprov(state_dir: Path, path: str, content: str | None) -> bool:
    """Is ``content`` the key file apply wrote at ``path`` (by the hash it recorded)?"""
    if content is None:
        return False
    recorded = _recorded(state_dir).get(path)
    return recorded is not None and secrets.compare_digest(recorded, fingerprint(content))


def remember(state_dir: Path, path: str, content: str | None) -> None:
    """Record the hash of the key file apply wrote at ``path`` (None: it is gone, forget it)."""
    from provision.applystate import _write

    keys = _recorded(state_dir)
    if content is None:
        if path not in keys:
            return
        del keys[path]
    else:
        keys[path] = fingerprint(content)
    _write(state_dir / KEYS_FILE, {"version": 1, "keys": keys})


def describe(content: str | None, *, changed: bool = False) -> str:
    """A secret file as it may be shown: its size, never its content."""
    if content is None:
        return "(absent)"
    size = len(content.encode("utf-8", "surrogateescape"))
    return f"(secret, {size} byte{'s' if size != 1 else ''}{', changed' if changed else ''})"


def hidden_values(*contents: str | None) -> set[str]:
    """What must never appear in any output for these secret contents: each whole file, each line, and
    each value after ``=`` (the key alone) — for Ansible's ``no_log_values``, which masks them anywhere.
    Pieces shorter than :data:`MIN_HIDDEN` are left out: masking "1" would mask every number in a result
    (the diff and messages show no content anyway; this is the second line of defence)."""
    out: set[str] = set()
    for text in contents:
        for line in (text or "").split("\n"):  # as an environment file is read: not at \x85 or \u2028
            out.update((line.strip(), line.partition("=")[2].strip()))
        out.add(text or "")
    return {v for v in out if len(v) >= MIN_HIDDEN}
