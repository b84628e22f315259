"""What ``gpuprov fit`` knows about a model: its shape and where its weight bytes are.

A :class:`ModelSpec` is built by one of the readers (:mod:`provision.fit.gguf_file` for GGUF,
:mod:`provision.fit.hf_dir` for a Hugging Face directory: exact from its safetensors headers, or from
the parameter count its ``config.json`` shapes give, at a quantization) and is all the memory model
looks at. Weights are kept in the groups an engine places separately: the input embedding, each
repeating layer, and the output head.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LayerSpec:
    """One repeating block (``blk.N`` in GGUF, ``model.layers.N`` in Hugging Face)."""

    index: int
    weight_bytes: int
    n_head_kv: int
    head_dim_k: int
    head_dim_v: int
    #: tokens this layer attends to when it uses sliding-window attention; None: all of them
    sliding_window: int | None = None


@dataclass(frozen=True)
class ModelSpec:
    name: str
    #: the file or directory it was read from, or "parameters" for an estimate
    source: str
    #: gguf, hf, parameters
    format: str
    architecture: str
    n_embd: int
    n_head: int
    n_ff: int
    n_vocab: int
    #: the context length the model was trained for (its largest useful context)
    context_length: int
    layers: tuple[LayerSpec, ...]
    #: the token-embedding table (llama.cpp keeps it on the CPU)
    input_bytes: int
    #: the output head and final norm, as far as the file has them
    output_bytes: int
    #: with tied embeddings (no output head in the file) the token-embedding table, which llama.cpp
    #: loads a second time as the head on the output device (``TENSOR_DUPLICATED``); else 0
    output_duplicate_bytes: int = 0
    #: tensors in no layer and not input/output (rope frequency tables...), placed with the output
    other_bytes: int = 0
    #: True when weight bytes come from the file's tensors, False for a parameter-count estimate
    weights_exact: bool = True
    #: the file's quantization (Q4_K_M, BF16...) when it says, else None
    quantization: str | None = None
    #: the dtype of unquantized weights (what vLLM's ``--kv-cache-dtype auto`` uses): 2 for f16/bf16
    activation_bytes: int = 2
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def n_layer(self) -> int:
        return len(self.layers)

    @property
    def layer_bytes(self) -> int:
        return sum(layer.weight_bytes for layer in self.layers)

    @property
    def output_tied(self) -> bool:
        return self.output_duplicate_bytes > 0

    @property
    def weights_bytes(self) -> int:
        """Bytes of weights the model has (what the file holds), each tensor counted once."""
        return self.input_bytes + self.layer_bytes + self.output_bytes + self.other_bytes

    @property
    def output_layer_bytes(self) -> int:
        """What llama.cpp puts on the device of its "output layer": the head (a duplicate of the
        embedding table when tied), the final norm and the tensors of no layer."""
        return self.output_bytes + self.output_duplicate_bytes + self.other_bytes

    @property
    def sliding_window_layers(self) -> int:
        return sum(1 for layer in self.layers if layer.sliding_window is not None)
