"""Serving engines on PATH: ollama, vllm, llama-server.

Only ``ollama --version`` is run (a static Go binary, milliseconds). ``vllm --version`` imports torch
(seconds) and ``llama-server --version`` initialises its GPU backends, so for those we report the path;
vLLM's version comes from the Python environment's metadata.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from provision.snapshot import Engine

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
