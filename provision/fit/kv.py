"""KV cache bytes of a model: what one token takes in each layer, for a cache type (the formulas
per element are :mod:`provision.fit.memory_model`'s)."""

from __future__ import annotations

from provision.fit import memory_model as mm
from provision.fit.model import ModelSpec


def layer_kv_row_bytes(model: ModelSpec, kv_type: str) -> list[int]:
    """Bytes one token takes in each layer's K plus V cache."""
    rows = []
    for layer in model.layers:
        k = mm.kv_row_bytes(layer.n_head_kv * layer.head_dim_k, kv_type, model_dtype_bytes=model.activation_bytes)
        v = mm.kv_row_bytes(layer.n_head_kv * layer.head_dim_v, kv_type, model_dtype_bytes=model.activation_bytes)
        rows.append(k + v)
    return rows


def kv_bytes_per_token(model: ModelSpec, kv_type: str) -> int:
    """K plus V bytes of one token over all layers (2 × layers × KV heads × head dim × bytes)."""
    return sum(layer_kv_row_bytes(model, kv_type))
