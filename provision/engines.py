"""Serving engines on PATH: ollama, vllm, llama-server; and where Ollama's binary is on a host or image tree.

Only ``ollama --version`` is run (a static Go binary, milliseconds). ``vllm --version`` imports torch
(seconds) and ``llama-server --version`` initialises its GPU backends, so for those we report the path;
vLLM's version comes from the Python environment's metadata.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from provision.snapshot import Engine

#: where Ollama's binary is installed: its Linux installer puts it in the first of /usr/local/bin, /usr/bin,
#: /bin that is on PATH (ollama/ollama scripts/install.sh: "for BINDIR in /usr/local/bin /usr/bin /bin"; its
#: uninstall steps look in the same three); distribution packages put it in /usr/bin
OLLAMA_BINARIES = ("/usr/local/bin/ollama", "/usr/bin/ollama", "/bin/ollama")

_OLLAMA_VERSION = re.compile(r"version (?:is )?(\d+\.\d+\.\d+\S*)")


def parse_ollama_version(text: str) -> str | None:
    """Both "ollama version is 0.5.7" and "Warning: client version is 0.5.7"."""
    matches = _OLLAMA_VERSION.findall(text)
    return matches[-1] if matches else None


def find_engines(environ: dict[str, str]) -> list[Engine]:
    path = environ.get("PATH", os.defpath)
    found = []
    for name in ("ollama", "vllm", "llama-server"):
        exe = shutil.which(name, path=path)
        if not exe:
            continue
        version = None
        if name == "ollama":
            try:
                out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=5)
                version = parse_ollama_version(out.stdout + out.stderr)
            except (OSError, subprocess.SubprocessError):
                version = None
        found.append(Engine(name=name, path=exe, version=version))
    return found


def ollama_binary(root: Path = Path("/")) -> str | None:
    """Ollama's binary under ``root`` (a path as seen inside it, links followed inside the tree), or None.
    A binary elsewhere (``~/.local/bin``, ``/opt``) is Ollama's own unit's business:
    :func:`provision.serving.units.ollama_installed` looks for that unit too."""
    from provision.roottree import RootPathError, resolve

    for path in OLLAMA_BINARIES:
        try:
            if resolve(root, path).is_file():
                return path
        except (OSError, RootPathError):  # a link loop or an unreadable directory: not a binary found
            continue
    return None
