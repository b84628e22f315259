"""Hugging Face directories: config.json shapes and safetensors headers (written here, real format)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provision.errors import UsageError
from provision.fit import read_model
from provision.fit.hf_dir import read_safetensors_header

CONFIG = {
    "model_type": "llama",
    "num_hidden_layers": 2,
    "hidden_size": 64,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 128,
    "vocab_size": 100,
    "max_position_embeddings": 2048,
    "torch_dtype": "bfloat16",
    "tie_word_embeddings": False,
}


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]]) -> int:
    """A safetensors file: u64 header length, JSON header, zeroed data. Returns the data bytes."""
    sizes = {"BF16": 2, "F32": 4, "I32": 4, "F16": 2}
    header, offset = {}, 0
    for name, (dtype, shape) in tensors.items():
        n = sizes[dtype]
        for dim in shape:
            n *= dim
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offset))
    return offset


def llama_dir(directory: Path, config: dict[str, object] = CONFIG) -> tuple[Path, int]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    h, i, v = 64, 128, 100
    kv = 2 * 16
    tensors: dict[str, tuple[str, list[int]]] = {"model.embed_tokens.weight": ("BF16", [v, h])}
    for il in range(2):
        p = f"model.layers.{il}."
        tensors |= {
            p + "self_attn.q_proj.weight": ("BF16", [h, h]),
            p + "self_attn.k_proj.weight": ("BF16", [kv, h]),
            p + "self_attn.v_proj.weight": ("BF16", [kv, h]),
            p + "self_attn.o_proj.weight": ("BF16", [h, h]),
            p + "mlp.gate_proj.weight": ("BF16", [i, h]),
            p + "mlp.up_proj.weight": ("BF16", [i, h]),
            p + "mlp.down_proj.weight": ("BF16", [h, i]),
            p + "input_layernorm.weight": ("BF16", [h]),
            p + "post_attention_layernorm.weight": ("BF16", [h]),
        }
    first = dict(list(tensors.items())[:10])
    second = dict(list(tensors.items())[10:])
    second |= {"model.norm.weight": ("BF16", [h]), "lm_head.weight": ("BF16", [v, h])}
    total = write_safetensors(directory / "model-00001-of-00002.safetensors", first)
    total += write_safetensors(directory / "model-00002-of-00002.safetensors", second)
    return directory, total


def test_exact_bytes_from_the_headers(tmp_path: Path) -> None:
    directory, total = llama_dir(tmp_path / "m")
    spec = read_model(directory)
    assert spec.format == "hf" and spec.weights_exact
    assert spec.weights_bytes == total
    assert spec.input_bytes == 100 * 64 * 2
    assert spec.output_bytes == (100 * 64 + 64) * 2
    assert spec.n_layer == 2 and spec.layers[0].n_head_kv == 2 and spec.layers[0].head_dim_k == 16


def test_the_parameter_count_of_the_config_matches_the_tensors(tmp_path: Path) -> None:
    directory, total = llama_dir(tmp_path / "m")
    estimate = read_model(directory, quantization="BF16")
    assert not estimate.weights_exact
    assert estimate.weights_bytes == total
    q4 = read_model(directory, quantization="q4_k_m")
    assert q4.weights_bytes < total / 3


def test_sliding_window_from_layer_types(tmp_path: Path) -> None:
    config = dict(CONFIG, sliding_window=32, layer_types=["sliding_attention", "full_attention"])
    directory, _ = llama_dir(tmp_path / "m", config)
    spec = read_model(directory)
    assert [layer.sliding_window for layer in spec.layers] == [32, None]


def test_text_config_of_a_multimodal_wrapper(tmp_path: Path) -> None:
    config = {"model_type": "gemma3", "text_config": dict(CONFIG), "vision_config": {"hidden_size": 8}}
    directory, _ = llama_dir(tmp_path / "m", config)
    assert read_model(directory).n_layer == 2


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps([1, 2]), "not a JSON object"),
        (json.dumps({k: v for k, v in CONFIG.items() if k != "hidden_size"}), "hidden_size"),
        (json.dumps(dict(CONFIG, num_hidden_layers=-1)), "positive integer"),
    ],
)
def test_bad_configs_are_usage_errors(tmp_path: Path, config: str, message: str) -> None:
    (tmp_path / "config.json").write_text(config)
    with pytest.raises(UsageError, match=message):
        read_model(tmp_path, quantization="BF16")


def test_unknown_quantization(tmp_path: Path) -> None:
    directory, _ = llama_dir(tmp_path / "m")
    with pytest.raises(UsageError, match="unknown quantization"):
        read_model(directory, quantization="Q9_X")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=64), length=st.integers(0, 2**64 - 1))
def test_damaged_safetensors_headers_are_usage_errors(tmp_path: Path, data: bytes, length: int) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", length) + data)
    try:
        tensors = read_safetensors_header(path)
    except UsageError:
        return
    assert isinstance(tensors, dict)


def test_offsets_past_the_end_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "short.safetensors"
    raw = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(8))
    with pytest.raises(UsageError, match="data_offsets"):
        read_safetensors_header(path)


@pytest.mark.parametrize(
    "entry, message",
    [
        # a forged header: a trillion-by-trillion BF16 matrix in two bytes gave "0.00 GiB (exact), fits"
        (
            {"dtype": "BF16", "shape": [10**12, 10**12], "data_offsets": [0, 2]},
            r"BF16 .* but its data_offsets span 2 bytes",
        ),
        ({"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}, r"16 bytes\) but its data_offsets span 8 bytes"),
        ({"dtype": "F16", "shape": "big", "data_offsets": [0, 8]}, r"bad shape"),
        ({"dtype": "F16", "shape": [-4, -1], "data_offsets": [0, 8]}, r"bad shape"),
    ],
)
def test_offsets_must_match_shape_times_dtype(tmp_path: Path, entry: dict[str, object], message: str) -> None:
    path = tmp_path / "forged.safetensors"
    raw = json.dumps({"w": entry}).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(16))
    with pytest.raises(UsageError, match=message):
        read_safetensors_header(path)


def test_a_dtype_newer_than_the_table_is_taken_by_its_offsets(tmp_path: Path) -> None:
    path = tmp_path / "fp4.safetensors"
    raw = json.dumps({"w": {"dtype": "F4", "shape": [8], "data_offsets": [0, 4]}}).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(4))
    assert read_safetensors_header(path)["w"]["data_offsets"] == [0, 4]
