"""GGUF reading for gpuprov fit, on files written here with gguf's own writer (real format).

The helpers at the top (``write_gguf``, ``ARCHS``) are imported by the other test_fit* modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provision.errors import UsageError
from provision.fit.gguf_file import _HeaderReader, read_gguf, tensor_data_bytes

Q = gguf.GGMLQuantizationType


@dataclass(frozen=True)
class Arch:
    """The metadata and tensors of one architecture, as llama.cpp's converter writes them."""

    name: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_vocab: int
    context: int
    head_dim: int | None = None
    sliding_window: int | None = None
    tied: bool = False
    qkv_bias: bool = False


#: small but shaped like the real ones (heads, GQA, tied head, SWA, q/k norms)
ARCHS = {
    "llama": Arch("llama", n_layer=4, n_embd=256, n_head=8, n_head_kv=2, n_ff=512, n_vocab=512, context=8192),
    "qwen2": Arch(
        "qwen2", n_layer=3, n_embd=256, n_head=4, n_head_kv=2, n_ff=768, n_vocab=640, context=32768, qkv_bias=True
    ),
    "gemma3": Arch(
        "gemma3",
        n_layer=7,
        n_embd=128,
        n_head=4,
        n_head_kv=1,
        n_ff=256,
        n_vocab=1024,
        context=32768,
        head_dim=64,
        sliding_window=512,
        tied=True,
    ),
}


def _weight(writer: gguf.GGUFWriter, name: str, shape: tuple[int, ...], qtype: Q, *, sparse: bool) -> None:
    """One tensor; ``shape`` in ggml order (ne0 first). Quantized types get real byte blocks."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    n = int(np.prod(shape))
    nbytes = n * size // block
    if sparse:
        writer.add_tensor_info(name, list(reversed(shape)), np.dtype(np.float32), nbytes, raw_dtype=qtype)
        return
    if qtype == Q.F32:
        data = np.zeros(tuple(reversed(shape)), dtype=np.float32)
        writer.add_tensor(name, data)
    else:
        rows = tuple(reversed(shape))
        byte_shape = (*rows[:-1], rows[-1] * size // block)
        writer.add_tensor(name, np.zeros(byte_shape, dtype=np.uint8), raw_dtype=qtype)


def write_gguf(
    path: Path,
    arch: Arch,
    *,
    weight_type: Q = Q.Q8_0,
    tokens: int | None = None,
    sparse: bool = False,
    file_type: int = gguf.LlamaFileType.MOSTLY_Q8_0,
) -> Path:
    """A GGUF file for ``arch``. ``sparse`` writes only the header and extends the file to its full
    size without data (a sparse file: real shapes of a 7B model cost no disk)."""
    writer = gguf.GGUFWriter(str(path), arch.name)
    a = arch.name
    head_dim = arch.head_dim or arch.n_embd // arch.n_head
    writer.add_name(f"test {a}")
    writer.add_uint32(f"{a}.block_count", arch.n_layer)
    writer.add_uint32(f"{a}.embedding_length", arch.n_embd)
    writer.add_uint32(f"{a}.feed_forward_length", arch.n_ff)
    writer.add_uint32(f"{a}.attention.head_count", arch.n_head)
    writer.add_uint32(f"{a}.attention.head_count_kv", arch.n_head_kv)
    writer.add_uint32(f"{a}.context_length", arch.context)
    writer.add_float32(f"{a}.attention.layer_norm_rms_epsilon", 1e-6)
    if arch.head_dim:
        writer.add_uint32(f"{a}.attention.key_length", head_dim)
        writer.add_uint32(f"{a}.attention.value_length", head_dim)
    if arch.sliding_window:
        writer.add_uint32(f"{a}.attention.sliding_window", arch.sliding_window)
    writer.add_uint32("general.file_type", file_type)
    writer.add_string("tokenizer.ggml.model", "llama")
    n_tok = arch.n_vocab if tokens is None else tokens
    writer.add_array("tokenizer.ggml.tokens", [f"tok{i}" for i in range(n_tok)])
    writer.add_array("tokenizer.ggml.scores", [0.0] * n_tok)
    writer.add_array("tokenizer.ggml.token_type", [1] * n_tok)

    e, q_dim, kv_dim = arch.n_embd, arch.n_head * head_dim, arch.n_head_kv * head_dim
    _weight(writer, "token_embd.weight", (e, arch.n_vocab), weight_type, sparse=sparse)
    for il in range(arch.n_layer):
        b = f"blk.{il}"
        _weight(writer, f"{b}.attn_norm.weight", (e,), Q.F32, sparse=sparse)
        _weight(writer, f"{b}.attn_q.weight", (e, q_dim), weight_type, sparse=sparse)
        _weight(writer, f"{b}.attn_k.weight", (e, kv_dim), weight_type, sparse=sparse)
        _weight(writer, f"{b}.attn_v.weight", (e, kv_dim), weight_type, sparse=sparse)
        if arch.qkv_bias:
            _weight(writer, f"{b}.attn_q.bias", (q_dim,), Q.F32, sparse=sparse)
            _weight(writer, f"{b}.attn_k.bias", (kv_dim,), Q.F32, sparse=sparse)
            _weight(writer, f"{b}.attn_v.bias", (kv_dim,), Q.F32, sparse=sparse)
        if a == "gemma3":
            _weight(writer, f"{b}.attn_q_norm.weight", (head_dim,), Q.F32, sparse=sparse)
            _weight(writer, f"{b}.attn_k_norm.weight", (head_dim,), Q.F32, sparse=sparse)
            _weight(writer, f"{b}.post_attention_norm.weight", (e,), Q.F32, sparse=sparse)
            _weight(writer, f"{b}.post_ffw_norm.weight", (e,), Q.F32, sparse=sparse)
        _weight(writer, f"{b}.attn_output.weight", (q_dim, e), weight_type, sparse=sparse)
        _weight(writer, f"{b}.ffn_norm.weight", (e,), Q.F32, sparse=sparse)
        _weight(writer, f"{b}.ffn_gate.weight", (e, arch.n_ff), weight_type, sparse=sparse)
        _weight(writer, f"{b}.ffn_up.weight", (e, arch.n_ff), weight_type, sparse=sparse)
        _weight(writer, f"{b}.ffn_down.weight", (arch.n_ff, e), weight_type, sparse=sparse)
    _weight(writer, "output_norm.weight", (e,), Q.F32, sparse=sparse)
    if not arch.tied:
        _weight(writer, "output.weight", (e, arch.n_vocab), weight_type, sparse=sparse)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    if sparse:
        writer.write_ti_data_to_file()
        assert writer.fout is not None
        fout = writer.fout[0]
        start = fout.tell()
        start += (-start) % writer.data_alignment
        data = sum(gguf.GGUFWriter.ggml_pad(ti.nbytes, writer.data_alignment) for ti in writer.tensors[0].values())
        fout.truncate(start + data)
    else:
        writer.write_tensors_to_file()
    writer.close()
    return path


def expected_bytes(path: Path) -> dict[str, int]:
    """Tensor bytes by group, from the stock gguf reader (the reference)."""
    reader = gguf.GGUFReader(path)
    groups: dict[str, int] = {}
    for t in reader.tensors:
        key = t.name.split(".")[1] if t.name.startswith("blk.") else t.name
        groups[key] = groups.get(key, 0) + int(t.n_bytes)
    return groups


# -- tests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_shape_and_bytes_match_the_tensors(tmp_path: Path, name: str) -> None:
    arch = ARCHS[name]
    path = write_gguf(tmp_path / f"{name}.gguf", arch)
    spec = read_gguf(path)
    groups = expected_bytes(path)
    head_dim = arch.head_dim or arch.n_embd // arch.n_head
    assert spec.architecture == name
    assert spec.n_layer == arch.n_layer
    assert (spec.n_embd, spec.n_head, spec.n_ff, spec.n_vocab) == (arch.n_embd, arch.n_head, arch.n_ff, arch.n_vocab)
    assert spec.context_length == arch.context
    assert all(layer.n_head_kv == arch.n_head_kv for layer in spec.layers)
    assert all(layer.head_dim_k == layer.head_dim_v == head_dim for layer in spec.layers)
    assert [layer.weight_bytes for layer in spec.layers] == [groups[str(i)] for i in range(arch.n_layer)]
    assert spec.input_bytes == groups["token_embd.weight"]
    assert spec.weights_bytes == sum(groups.values())
    assert spec.quantization == "Q8_0"
    # the file is the header plus the (aligned) tensor data: nothing counted twice or missed
    assert tensor_data_bytes(path) >= spec.weights_bytes


def test_tied_output_is_duplicated_on_the_output_device(tmp_path: Path) -> None:
    spec = read_gguf(write_gguf(tmp_path / "g.gguf", ARCHS["gemma3"]))
    assert spec.output_tied
    assert spec.output_duplicate_bytes == spec.input_bytes
    assert spec.output_layer_bytes == spec.output_bytes + spec.input_bytes
    untied = read_gguf(write_gguf(tmp_path / "l.gguf", ARCHS["llama"]))
    assert not untied.output_tied
    assert untied.output_layer_bytes == untied.output_bytes


def test_gemma3_slides_five_layers_of_six(tmp_path: Path) -> None:
    spec = read_gguf(write_gguf(tmp_path / "g.gguf", ARCHS["gemma3"]))
    # llama.cpp set_swa_pattern(6): layers 5, 11, ... attend globally
    assert [layer.sliding_window for layer in spec.layers] == [512, 512, 512, 512, 512, None, 512]


def test_llama_has_no_sliding_window(tmp_path: Path) -> None:
    spec = read_gguf(write_gguf(tmp_path / "l.gguf", ARCHS["llama"]))
    assert spec.sliding_window_layers == 0


def test_a_large_vocabulary_reads_fast_and_the_same_as_the_stock_reader(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "v.gguf", ARCHS["llama"], tokens=20000)
    fast, stock = _HeaderReader(path), gguf.GGUFReader(path)
    assert list(fast.fields) == list(stock.fields)
    for key in fast.fields:
        assert fast.fields[key].contents() == stock.fields[key].contents(), key
    assert [(t.name, t.n_bytes, t.data_offset) for t in fast.tensors] == [
        (t.name, t.n_bytes, t.data_offset) for t in stock.tensors
    ]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(strings=st.lists(st.text(max_size=12), max_size=30), numbers=st.lists(st.integers(-(2**31), 2**31 - 1)))
def test_arrays_read_like_the_stock_reader(tmp_path: Path, strings: list[str], numbers: list[int]) -> None:
    path = tmp_path / "arrays.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    if strings:
        writer.add_array("test.strings", strings)
    if numbers:
        writer.add_array("test.numbers", numbers)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    fast, stock = _HeaderReader(path), gguf.GGUFReader(path)
    for key in stock.fields:
        assert fast.fields[key].contents() == stock.fields[key].contents()


def test_not_a_gguf_file(tmp_path: Path) -> None:
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"PK\x03\x04 not gguf")
    with pytest.raises(UsageError, match="not a GGUF file"):
        read_gguf(bad)
    with pytest.raises(UsageError, match="no such file"):
        read_gguf(tmp_path / "missing.gguf")
    with pytest.raises(UsageError, match="is a directory"):
        read_gguf(tmp_path)


def test_gguf_without_model_metadata(tmp_path: Path) -> None:
    path = tmp_path / "empty.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UsageError, match="block_count"):
        read_gguf(path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=4000))
def test_a_truncated_file_is_a_usage_error_never_a_traceback(tmp_path: Path, cut: int) -> None:
    whole = tmp_path / "whole.gguf"
    if not whole.exists():
        write_gguf(whole, ARCHS["qwen2"])
    data = whole.read_bytes()
    part = tmp_path / "part.gguf"
    part.write_bytes(data[: min(cut, len(data) - 1)])
    try:
        spec = read_gguf(part)
    except UsageError:
        return
    # the header survived the cut: what was read must still be the model's own shape
    assert spec.n_layer == ARCHS["qwen2"].n_layer


def test_sparse_file_of_a_real_size_reads_without_data(tmp_path: Path) -> None:
    qwen7b = Arch("qwen2", n_layer=28, n_embd=3584, n_head=28, n_head_kv=4, n_ff=18944, n_vocab=152064, context=32768)
    path = write_gguf(tmp_path / "q7b.gguf", qwen7b, weight_type=Q.Q4_K, sparse=True)
    spec = read_gguf(path)
    assert path.stat().st_size > 4 * 10**9
    # Q4_K: 144 bytes per 256 weights; 7.6e9 parameters
    assert 4.0e9 < spec.weights_bytes < 4.5e9
