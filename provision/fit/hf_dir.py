"""Read a Hugging Face model directory: ``config.json`` for the shape, ``*.safetensors`` headers for
exact weight bytes — or, without weight files, a parameter count (from the config's shapes or given)
times the bits per weight of a quantization.

A safetensors file starts with an 8-byte little-endian header length N, then N bytes of JSON:
``{"tensor.name": {"dtype": "BF16", "shape": [...], "data_offsets": [begin, end]}, "__metadata__":
{...}}`` (the safetensors format specification). Only that header is read, never the tensor data.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

from provision.errors import UsageError
from provision.fit.memory_model import SIXTEEN_BIT_EMBEDDINGS, WEIGHT_BITS, normalize_quantization
from provision.fit.model import LayerSpec, ModelSpec

#: a header larger than this is not a real one (the format's reference implementation caps it at
#: 100 MB: safetensors ``MAX_HEADER_SIZE``)
MAX_HEADER_BYTES = 100_000_000

#: bytes per element of safetensors dtypes (format specification)
SAFETENSORS_DTYPE_BYTES = {
    "F64": 8,
    "I64": 8,
    "U64": 8,
    "F32": 4,
    "I32": 4,
    "U32": 4,
    "F16": 2,
    "BF16": 2,
    "I16": 2,
    "U16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "F8_E8M0": 1,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}

_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")
_INPUT = re.compile(r"(?:^|\.)embed_tokens\.")
_OUTPUT = re.compile(r"(^|\.)lm_head\.|(^|\.)model\.norm\.|^norm\.")

_TORCH_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float8_e4m3fn": 1}


def read_safetensors_header(path: Path) -> dict[str, dict[str, Any]]:
    """The tensor entries of one safetensors file's header (``__metadata__`` left out)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise UsageError(f"{path}: too short for a safetensors file")
            (length,) = struct.unpack("<Q", head)
            if length > MAX_HEADER_BYTES or 8 + length > size:
                raise UsageError(f"{path}: safetensors header length {length} is not plausible: damaged file?")
            raw = fh.read(length)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UsageError(f"{path}: safetensors header is not JSON: damaged file?") from None
    if not isinstance(header, dict):
        raise UsageError(f"{path}: safetensors header is not a JSON object")
    tensors: dict[str, dict[str, Any]] = {}
    data_bytes = size - 8 - length
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data_bytes
        ):
            raise UsageError(f"{path}: tensor {name!r} has bad data_offsets {offsets!r}: damaged or truncated?")
        _check_extent(path, name, entry, offsets[1] - offsets[0])
        tensors[name] = entry
    return tensors


def _check_extent(path: Path, name: str, entry: dict[str, Any], extent: int) -> None:
    """The bytes between a tensor's offsets are its shape × its dtype's size, as the format's reference
    implementation requires: offsets alone would let a header claim a [1e12, 1e12] BF16 tensor in 2 bytes."""
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise UsageError(f"{path}: tensor {name!r} has a bad shape {str(shape)[:80]}: damaged file?")
    dtype = entry.get("dtype")
    size = SAFETENSORS_DTYPE_BYTES.get(dtype) if isinstance(dtype, str) else None
    if size is None:
        return  # a dtype newer than this table (sub-byte floats): the offsets are all there is
    elements = 1
    for d in shape:
        elements *= d
    if elements * size != extent:
        raise UsageError(
            f"{path}: tensor {name!r} is {dtype} {shape} ({elements * size:,} bytes) but its data_offsets "
            f"span {extent:,} bytes: damaged or forged header"
        )


def _config(directory: Path) -> dict[str, Any]:
    config_path = directory / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{directory}: no config.json: not a Hugging Face model directory") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{config_path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{config_path}: not valid JSON (line {exc.lineno})") from None
    if not isinstance(config, dict):
        raise UsageError(f"{config_path}: not a JSON object")
    # multimodal wrappers (Gemma 3, Llava, Mistral 3...) keep the language model in text_config
    text = config.get("text_config")
    if isinstance(text, dict):
        merged = dict(config)
        merged.update(text)
        return merged
    return config


def _int(config: dict[str, Any], key: str, where: Path, default: int | None = None) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        if default is None and key not in config:
            raise UsageError(f"{where}/config.json: no {key}: cannot size the model")
        raise UsageError(f"{where}/config.json: {key} = {value!r} is not a positive integer")
    return value


def config_parameter_count(config: dict[str, Any], where: Path) -> tuple[int, int, int]:
    """(embedding+head parameters, parameters per layer, norm parameters) of a dense decoder.

    Attention: q and o projections over ``n_head × head_dim``, k and v over ``n_kv × head_dim``;
    MLP: gate, up and down (``3 × hidden × intermediate``); two norms per layer. Mixture-of-experts
    configs count ``num_local_experts`` / ``num_experts`` MLPs per layer.
    """
    hidden = _int(config, "hidden_size", where)
    n_head = _int(config, "num_attention_heads", where)
    n_kv = _int(config, "num_key_value_heads", where, n_head)
    head_dim = _int(config, "head_dim", where, hidden // n_head)
    inter = _int(config, "intermediate_size", where)
    vocab = _int(config, "vocab_size", where)
    experts = config.get("num_local_experts") or config.get("num_experts") or 1
    experts = experts if isinstance(experts, int) and experts > 0 else 1
    attention = hidden * n_head * head_dim * 2 + hidden * n_kv * head_dim * 2
    mlp = 3 * hidden * inter * experts
    per_layer = attention + mlp + 2 * hidden
    tied = bool(config.get("tie_word_embeddings", False))
    embeddings = vocab * hidden * (1 if tied else 2)
    return embeddings, per_layer, hidden


def _layer_specs(config: dict[str, Any], where: Path, layer_bytes: list[int]) -> tuple[LayerSpec, ...]:
    n_layer = len(layer_bytes)
    hidden = _int(config, "hidden_size", where)
    n_head = _int(config, "num_attention_heads", where)
    n_kv = _int(config, "num_key_value_heads", where, n_head)
    head_dim = _int(config, "head_dim", where, hidden // n_head)
    window = config.get("sliding_window")
    layer_types = config.get("layer_types")
    if isinstance(layer_types, list) and len(layer_types) == n_layer:
        sliding = [t == "sliding_attention" for t in layer_types]
    elif isinstance(window, int) and window > 0 and config.get("use_sliding_window", True):
        # Mistral-style configs: sliding_window applies to every layer (Qwen2 sets
        # use_sliding_window false and a window it does not use)
        sliding = [True] * n_layer
    else:
        sliding = [False] * n_layer
    return tuple(
        LayerSpec(
            index=il,
            weight_bytes=layer_bytes[il],
            n_head_kv=n_kv,
            head_dim_k=head_dim,
            head_dim_v=head_dim,
            sliding_window=int(window) if sliding[il] and isinstance(window, int) else None,
        )
        for il in range(n_layer)
    )


def _dtype_bytes(config: dict[str, Any]) -> int:
    dtype = config.get("torch_dtype") or config.get("dtype") or "bfloat16"
    return _TORCH_DTYPE_BYTES.get(str(dtype), 2)


def read_hf_dir(path: str | Path, *, quantization: str | None = None) -> ModelSpec:
    """The model in a Hugging Face directory; ``quantization`` sizes it from its parameter count."""
    directory = Path(path)
    if not directory.is_dir():
        raise UsageError(f"{directory}: not a directory")
    config = _config(directory)
    n_layer = _int(config, "num_hidden_layers", directory)
    hidden = _int(config, "hidden_size", directory)
    n_head = _int(config, "num_attention_heads", directory)
    vocab = _int(config, "vocab_size", directory)
    inter = _int(config, "intermediate_size", directory)
    context = config.get("max_position_embeddings")
    context = context if isinstance(context, int) and context > 0 else 4096
    model_dtype = _dtype_bytes(config)
    files = sorted(directory.glob("*.safetensors"))
    notes: list[str] = []

    if files and quantization is None:
        layer_bytes = [0] * n_layer
        input_bytes = output_bytes = other_bytes = 0
        for file in files:
            for name, entry in read_safetensors_header(file).items():
                begin, end = entry["data_offsets"]
                size = end - begin
                match = _LAYER.search(name)
                if match and int(match.group(1)) < n_layer:
                    layer_bytes[int(match.group(1))] += size
                elif _INPUT.search(name):
                    input_bytes += size
                elif _OUTPUT.search(name):
                    output_bytes += size
                else:
                    other_bytes += size
        exact = True
        quant_name: str | None = None
        qc = config.get("quantization_config")
        if isinstance(qc, dict) and isinstance(qc.get("quant_method"), str):
            quant_name = qc["quant_method"].upper()
    else:
        canonical = normalize_quantization(quantization or ("BF16" if model_dtype == 2 else "F32"))
        if quantization is not None and canonical is None:
            raise UsageError(f"unknown quantization {quantization!r}: use one of {', '.join(sorted(WEIGHT_BITS))}")
        assert canonical is not None
        bits = WEIGHT_BITS[canonical]
        embeddings, per_layer, norm = config_parameter_count(config, directory)
        embed_bits = 16.0 if canonical in SIXTEEN_BIT_EMBEDDINGS else bits
        tied = bool(config.get("tie_word_embeddings", False))
        input_bytes = int(vocab * hidden * embed_bits / 8)
        output_bytes = (0 if tied else int(vocab * hidden * embed_bits / 8)) + norm * 2
        layer_bytes = [int(per_layer * bits / 8)] * n_layer
        other_bytes = 0
        exact = False
        quant_name = canonical
        total = embeddings + per_layer * n_layer + norm
        notes.append(f"weights estimated from {total / 1e9:.2f}B parameters at {bits:.2f} bits per weight")
    tied = bool(config.get("tie_word_embeddings", False)) and output_bytes < input_bytes
    name_or_path = config.get("_name_or_path")
    return ModelSpec(
        name=name_or_path if isinstance(name_or_path, str) and name_or_path else directory.name,
        source=str(directory),
        format="hf" if exact else "parameters",
        architecture=str(config.get("model_type") or "unknown"),
        n_embd=hidden,
        n_head=n_head,
        n_ff=inter,
        n_vocab=vocab,
        context_length=context,
        layers=_layer_specs(config, directory, layer_bytes),
        input_bytes=input_bytes,
        output_bytes=output_bytes,
        output_duplicate_bytes=input_bytes if tied else 0,
        other_bytes=other_bytes,
        weights_exact=exact,
        quantization=quant_name,
        activation_bytes=model_dtype,
        notes=tuple(notes),
    )
