"""One entry point for model inputs: a ``.gguf`` file or a Hugging Face model directory."""

from __future__ import annotations

from pathlib import Path

from provision.console import printable_copy
from provision.errors import UsageError
from provision.fit.model import ModelSpec


def read_model(path: str | Path, *, quantization: str | None = None) -> ModelSpec:
    """Read ``path``: a GGUF file (exact), or a directory with ``config.json`` (exact from its
    safetensors headers; from its parameter count when ``quantization`` is given or it has no
    weight files). Its text (name, architecture, notes) made printable: a file can hold anything."""
    spec: ModelSpec = printable_copy(_read(Path(path), quantization))
    return spec


def _read(p: Path, quantization: str | None) -> ModelSpec:
    if p.is_dir():
        from provision.fit.hf_dir import read_hf_dir

        return read_hf_dir(p, quantization=quantization)
    if not p.exists():
        raise UsageError(f"{p}: no such file or directory")
    if p.name == "config.json":
        from provision.fit.hf_dir import read_hf_dir

        return read_hf_dir(p.parent, quantization=quantization)
    if quantization is not None:
        raise UsageError(
            f"{p}: --quant sizes a Hugging Face directory from its parameter count; a GGUF file "
            "already has its quantization"
        )
    from provision.fit.gguf_file import read_gguf

    return read_gguf(p)
