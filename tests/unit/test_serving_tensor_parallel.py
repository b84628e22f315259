"""vLLM tensor parallelism is a setting: ``serving.vllm.tensor_parallel_size`` is written to the unit as
``--tensor-parallel-size`` and is the number of GPUs ``fit`` checks the model on. Without it vLLM loads
the model on one GPU, so a model that needs two does not fit (plan said it did: fit assumed every GPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provision.fit.hf_dir import read_hf_dir
from provision.plan import make_plan
from provision.plantypes import HostState, PlanError
from provision.profiles import ProfileError
from provision.profiles.loader import ProfileSet, builtin_dir
from provision.serving.commandline import server_argv
from provision.serving.facts import ServingHost
from provision.serving.planning import fit_notes
from provision.serving.section import serving_dict
from provision.serving.settings import ServingSection, VllmSettings
from tests.conftest import gathered, load_snapshot

MODEL = "/srv/models/big"
#: a Llama-shaped model of about 97 GiB in bf16: one A100 80GB cannot hold it, two can (tensor parallel 2)
BIG = {
    "model_type": "llama",
    "num_hidden_layers": 72,
    "hidden_size": 8192,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "intermediate_size": 22016,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "torch_dtype": "bfloat16",
}


def _profile(tmp_path: Path, vllm: str, gpus: str = "") -> object:
    text = f"description: tp\nmatch: {{gpu_names: ['*']}}\nserving:\n{gpus}  vllm: {{{vllm}}}\n"
    (tmp_path / "tp.yaml").write_text(text)
    return ProfileSet([builtin_dir(), tmp_path]).load("tp")


def _notes(tmp_path: Path, tp: int | None) -> list[str]:
    (tmp_path / "config.json").write_text(json.dumps(BIG))
    spec = read_hf_dir(tmp_path)
    section = ServingSection(
        engine="vllm",
        settings=VllmSettings(
            model=MODEL, venv="/opt/vllm", max_model_len=8192, gpu_memory_utilization=0.9, tensor_parallel_size=tp
        ),
    )
    return fit_notes(section, load_snapshot("a100x2"), ServingHost(present={MODEL: True}, model=spec))


def test_without_tensor_parallelism_a_model_that_needs_two_gpus_does_not_fit(tmp_path: Path) -> None:
    [warning] = _notes(tmp_path, None)
    assert warning.startswith(f"WARNING: serving model {MODEL} does not fit")


def test_tensor_parallel_size_2_fits_it_on_two_gpus(tmp_path: Path) -> None:
    assert _notes(tmp_path, 2) == []


def test_the_unit_passes_it_to_vllm_and_the_profile_keeps_it(tmp_path: Path) -> None:
    prof = _profile(tmp_path, "model: org/m, venv: /opt/vllm, tensor_parallel_size: 2", "  gpus: [0, 1]\n")
    section = prof.sections["serving"]
    argv = server_argv(section)
    assert argv[argv.index("--tensor-parallel-size") + 1] == "2"
    assert serving_dict(section)["vllm"]["tensor_parallel_size"] == 2
    no_tp = _profile(tmp_path, "model: org/m, venv: /opt/vllm")
    assert "--tensor-parallel-size" not in server_argv(no_tp.sections["serving"])


def test_more_than_serving_gpus_is_a_profile_error(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"key serving\.vllm\.tensor_parallel_size: 4 GPUs, but serving\.gpus"):
        _profile(tmp_path, "model: org/m, venv: /opt/vllm, tensor_parallel_size: 4", "  gpus: [0, 1]\n")
    with pytest.raises(ProfileError, match="tensor_parallel_size"):
        _profile(tmp_path, "model: org/m, venv: /opt/vllm, tensor_parallel_size: 0")


def test_more_than_the_host_has_is_refused_by_the_plan(tmp_path: Path) -> None:
    prof = _profile(tmp_path, "model: org/m, venv: /opt/vllm, tensor_parallel_size: 4")
    host = HostState(known=False, python="/opt/gpuprov/bin/python", root=str(tmp_path))
    with pytest.raises(PlanError, match="tensor_parallel_size is 4, but vLLM sees 2 GPU"):
        make_plan(*gathered(load_snapshot("a100x2"), prof, host), force=True)
    ok = _profile(tmp_path, "model: org/m, venv: /opt/vllm, tensor_parallel_size: 2")
    plan = make_plan(*gathered(load_snapshot("a100x2"), ok, host), force=True)
    unit = next(f.content for f in plan.desired.serving_files if f.path.endswith("gpuprov-vllm.service"))
    assert "--tensor-parallel-size 2" in unit
