"""Read a GGUF file's header into a :class:`~provision.fit.model.ModelSpec` with the ``gguf`` package.

Only the header is read (metadata and tensor infos: name, type, shape); tensor data stays on disk.
Tensor byte sizes are ggml's (``GGML_QUANT_SIZES``), as ``gguf.GGUFReader`` computes them.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Literal

import numpy as np
from gguf import GGUFReader, GGUFValueType, LlamaFileType

from provision.errors import UsageError
from provision.fit.model import LayerSpec, ModelSpec

#: llama.cpp's sliding-window layer patterns (llama-model.cpp ``hparams.set_swa_pattern(n)``: layer
#: ``il`` slides when ``il % n < n - 1``) for architectures whose GGUF carries only the window size.
#: A file with ``{arch}.attention.sliding_window_pattern`` says it itself.
SWA_PATTERNS: dict[str, int] = {
    "gemma2": 2,
    "gpt-oss": 2,
    "cohere2": 4,
    "llama4": 4,
    "gemma3n": 5,
    "gemma3": 6,
}

_BLOCK = re.compile(r"^blk\.(\d+)\.")
_INPUT_TENSORS = ("token_embd.weight", "token_embd_norm.weight", "token_embd_norm.bias", "token_types.weight")
_OUTPUT_TENSORS = ("output.weight", "output.bias", "output_norm.weight", "output_norm.bias")


class _HeaderReader(GGUFReader):
    """``GGUFReader`` with array metadata read in one step.

    The stock reader makes a numpy view per array element; a 262,144-token vocabulary then takes
    ~15 s to open. Here a numeric array becomes one part and a string array one part per string
    (no separate length parts), which keeps :meth:`ReaderField.contents` answering the same.
    Everything else (magic, version, byte order, tensor infos, alignment) is the stock reader's.
    """

    def _get_field_parts(self, orig_offs: int, raw_type: int) -> tuple[int, list[Any], list[int], list[Any]]:
        if GGUFValueType(raw_type) != GGUFValueType.ARRAY:
            return super()._get_field_parts(orig_offs, raw_type)
        offs = orig_offs
        raw_itype = self._get(offs, np.uint32)
        offs += int(raw_itype.nbytes)
        alen = self._get(offs, np.uint64)
        offs += int(alen.nbytes)
        itype = GGUFValueType(int(raw_itype[0]))
        count = int(alen[0])
        parts: list[Any] = [raw_itype, alen]
        nptype = self.gguf_scalar_to_np.get(itype)
        if nptype is not None:
            values = self._get(offs, nptype, count)
            if len(values) != count:
                raise ValueError("array runs past the end of the file")
            parts.append(values)
            return offs + int(values.nbytes) - orig_offs, parts, [2], [GGUFValueType.ARRAY, itype]
        if itype == GGUFValueType.STRING:
            host_little = sys.byteorder == "little"
            little = host_little if self.byte_order == "I" else not host_little
            order: Literal["little", "big"] = "little" if little else "big"
            raw = memoryview(self.data.data)  # the memmap's buffer: the file's bytes, not copied
            data: list[int] = []
            end = len(self.data)
            for _ in range(count):
                if offs + 8 > end:
                    raise ValueError("string array runs past the end of the file")
                length = int.from_bytes(raw[offs : offs + 8], order)
                offs += 8
                if offs + length > end:
                    raise ValueError("string array runs past the end of the file")
                parts.append(self.data[offs : offs + length])
                data.append(len(parts) - 1)
                offs += length
            return offs - orig_offs, parts, data, [GGUFValueType.ARRAY, itype]
        # nested arrays: rare in model metadata; the stock reader handles them element by element
        return super()._get_field_parts(orig_offs, raw_type)


def open_reader(path: Path) -> GGUFReader:
    """A reader over ``path``'s header, or a UsageError saying why the file cannot be one."""
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    if path.is_dir():
        raise UsageError(f"{path}: is a directory, expected a .gguf file")
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if magic != b"GGUF":
        raise UsageError(f"{path}: not a GGUF file (it does not start with the GGUF magic)")
    try:
        return _HeaderReader(path)
    except (ValueError, KeyError, IndexError, OverflowError, UnicodeDecodeError, TypeError) as exc:
        raise UsageError(f"{path}: damaged or truncated GGUF header ({exc})") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _value(reader: GGUFReader, key: str) -> Any:
    field = reader.fields.get(key)
    if field is None:
        return None
    try:
        return field.contents()
    except (ValueError, UnicodeDecodeError, IndexError):
        return None


def _per_layer(value: Any, n_layer: int, key: str, path: Path) -> list[int]:
    """A hyperparameter that is either one number or one per layer (Nemotron, OpenELM...)."""
    if isinstance(value, list):
        if len(value) != n_layer:
            raise UsageError(f"{path}: {key} has {len(value)} values for {n_layer} layers")
        return [int(v) for v in value]
    return [int(value)] * n_layer


def _swa_layers(reader: GGUFReader, arch: str, n_layer: int) -> list[bool]:
    pattern = _value(reader, f"{arch}.attention.sliding_window_pattern")
    if isinstance(pattern, list) and len(pattern) == n_layer:
        return [bool(v) for v in pattern]
    period = int(pattern) if isinstance(pattern, int) and pattern > 0 else SWA_PATTERNS.get(arch)
    if period is None:
        return [False] * n_layer
    return [il % period < period - 1 for il in range(n_layer)]


def _file_type_name(value: Any) -> str | None:
    if not isinstance(value, int):
        return None
    try:
        return LlamaFileType(value).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    except ValueError:
        return None


def read_gguf(path: str | Path) -> ModelSpec:
    """The model a GGUF file describes: shape from metadata, weight bytes from its tensor infos."""
    p = Path(path)
    reader = open_reader(p)
    arch = _value(reader, "general.architecture")
    if not isinstance(arch, str) or not arch:
        raise UsageError(f"{p}: GGUF has no general.architecture: not a model file?")
    n_layer = _value(reader, f"{arch}.block_count")
    n_embd = _value(reader, f"{arch}.embedding_length")
    if not isinstance(n_layer, int) or not isinstance(n_embd, int) or n_layer <= 0 or n_embd <= 0:
        raise UsageError(f"{p}: GGUF lacks {arch}.block_count / {arch}.embedding_length: not an LLM?")
    n_head_raw = _value(reader, f"{arch}.attention.head_count")
    if n_head_raw is None:
        raise UsageError(f"{p}: GGUF lacks {arch}.attention.head_count")
    n_heads = _per_layer(n_head_raw, n_layer, f"{arch}.attention.head_count", p)
    kv_raw = _value(reader, f"{arch}.attention.head_count_kv")
    n_heads_kv = n_heads if kv_raw is None else _per_layer(kv_raw, n_layer, f"{arch}.attention.head_count_kv", p)
    n_head = max(n_heads)
    if n_head <= 0:
        raise UsageError(f"{p}: {arch}.attention.head_count is 0")
    head_dim_k = _value(reader, f"{arch}.attention.key_length") or n_embd // n_head
    head_dim_v = _value(reader, f"{arch}.attention.value_length") or n_embd // n_head
    n_ff_raw = _value(reader, f"{arch}.feed_forward_length") or 0
    n_ff = max(n_ff_raw) if isinstance(n_ff_raw, list) else int(n_ff_raw)
    context_length = _value(reader, f"{arch}.context_length")
    window = _value(reader, f"{arch}.attention.sliding_window")
    swa = _swa_layers(reader, arch, n_layer) if isinstance(window, int) and window > 0 else [False] * n_layer

    layer_bytes = [0] * n_layer
    input_bytes = output_bytes = other_bytes = 0
    has_output_head = False
    n_vocab = _value(reader, f"{arch}.vocab_size")
    for tensor in reader.tensors:
        size = int(tensor.n_bytes)
        match = _BLOCK.match(tensor.name)
        if match:
            index = int(match.group(1))
            if index >= n_layer:
                raise UsageError(f"{p}: tensor {tensor.name} is past block_count {n_layer}")
            layer_bytes[index] += size
        elif tensor.name in _INPUT_TENSORS:
            input_bytes += size
            if tensor.name == "token_embd.weight" and not isinstance(n_vocab, int):
                n_vocab = int(tensor.shape[-1])
        elif tensor.name in _OUTPUT_TENSORS:
            output_bytes += size
            has_output_head = has_output_head or tensor.name == "output.weight"
        else:
            other_bytes += size
    if not isinstance(n_vocab, int):
        tokens = reader.fields.get("tokenizer.ggml.tokens")
        n_vocab = len(tokens.data) if tokens is not None else 0
    embd = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
    # without output.weight llama.cpp loads token_embd a second time as the output head
    # (TENSOR_DUPLICATED) on the output device; the input copy stays on the CPU
    duplicate = int(embd.n_bytes) if embd is not None and not has_output_head else 0

    layers = tuple(
        LayerSpec(
            index=il,
            weight_bytes=layer_bytes[il],
            n_head_kv=n_heads_kv[il],
            head_dim_k=int(head_dim_k),
            head_dim_v=int(head_dim_v),
            sliding_window=int(window) if swa[il] else None,
        )
        for il in range(n_layer)
    )
    notes: list[str] = []
    if _value(reader, f"{arch}.attention.kv_lora_rank"):
        notes.append(f"{arch} compresses its KV cache (MLA); the KV estimate uses full heads and is an upper bound")
    name = _value(reader, "general.name")
    return ModelSpec(
        name=name if isinstance(name, str) and name else p.stem,
        source=str(p),
        format="gguf",
        architecture=arch,
        n_embd=n_embd,
        n_head=n_head,
        n_ff=n_ff,
        n_vocab=int(n_vocab),
        context_length=int(context_length) if isinstance(context_length, int) and context_length > 0 else 4096,
        layers=layers,
        input_bytes=input_bytes,
        output_bytes=output_bytes,
        output_duplicate_bytes=duplicate,
        other_bytes=other_bytes,
        weights_exact=True,
        quantization=_file_type_name(_value(reader, "general.file_type")),
        notes=tuple(notes),
    )


def tensor_data_bytes(path: str | Path) -> int:
    """Bytes from the start of the tensor data to the end of the file (alignment padding included)."""
    reader = open_reader(Path(path))
    return int(len(reader.data) - reader.data_offset)
