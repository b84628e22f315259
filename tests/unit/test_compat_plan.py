"""compat plan: the newest consistent set; every set it proposes passes check."""

from __future__ import annotations

import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.requirements import Requirement
from packaging.version import Version

from provision.compat.plan import NoPlanError, plan
from provision.compat.target import GpuTarget, Target, apply_overrides
from provision.compat.verdict import check
from provision.errors import UsageError
from provision.gpus import list_gpus

DRIVERS = [
    "470.256.02",
    "525.60.13",
    "535.54.03",
    "550.54.14",
    "560.35.03",
    "570.172.08",
    "575.51.03",
    "580.159.04",
    "590.44.01",
]


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(list_gpus()),
    st.one_of(st.none(), st.sampled_from(DRIVERS)),
    st.sampled_from(["vllm", "llama-cpp"]),
    st.booleans(),
)
def test_every_plan_passes_check(gpu, driver: str | None, engine: str, flashinfer: bool) -> None:  # type: ignore[no-untyped-def]
    target = Target(driver=driver, gpus=[GpuTarget(gpu.name, gpu.compute_capability)])
    try:
        result = plan(target, engine, flashinfer=flashinfer)
    except NoPlanError:
        assert engine == "vllm" and Version(gpu.compute_capability) < Version("7.0")
        return
    if not result.pins:  # a build from source: nothing to check
        assert result.build_env
        return
    assert result.report is not None
    assert result.report.verdict == "ok", [p.reason for p in result.report.problems]
    # and the same set checked independently, with the driver it says it needs
    again = Target(
        driver=result.driver_needed or driver,
        gpus=target.gpus,
        packages={p.name: p.version for p in result.pins},
    )
    assert check(again).verdict == "ok"


@pytest.mark.parametrize(
    ("kw", "vllm", "torch"),
    [
        (dict(gpu="RTX 4090 Laptop", driver="560.35.03"), "0.19.1", "2.10.0"),  # CUDA 13 needs 580
        (dict(gpu="RTX 4090 Laptop", driver="580.159.04"), "0.33.0", "2.14.0"),
        (dict(gpu="H100"), "0.33.0", "2.14.0"),  # no driver known: newest
        (dict(gpu="V100", driver="580.159.04"), "0.19.1", "2.10.0"),  # vLLM 0.20 dropped Volta
        (dict(gpu="RTX 5090", driver="570.172.08"), "0.19.1", "2.10.0"),
    ],
)
def test_vllm_plan_is_the_newest_that_fits(kw: dict[str, str], vllm: str, torch: str) -> None:
    result = plan(apply_overrides(Target(), **kw), "vllm")
    pins = {p.name: p for p in result.pins}
    assert pins["vllm"].version == vllm
    assert pins["torch"].version == torch and pins["torch"].index is None  # the PyPI wheel
    assert result.driver_needed is None


def test_old_driver_gives_the_driver_needed() -> None:
    result = plan(apply_overrides(Target(), gpu="RTX 5090", driver="470.256.02"), "vllm")
    assert result.driver_needed == "580.65.06"
    assert any("upgrade the driver" in n for n in result.notes)


def test_pascal_has_no_vllm_plan_but_a_llama_cpp_one() -> None:
    target = apply_overrides(Target(), gpu="GTX 1080 Ti", driver="550.54.14")
    with pytest.raises(NoPlanError, match=r"6\.1"):
        plan(target, "vllm")
    result = plan(target, "llama-cpp")
    assert result.build_env["CMAKE_ARGS"] == "-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=61"
    [pin] = result.pins
    assert pin.index is not None and pin.index.endswith("/cu124")  # the newest CUDA 550 runs natively


def test_ollama_plan_states_the_driver() -> None:
    result = plan(apply_overrides(Target(), gpu="GTX 1080", driver="550.54.14"), "ollama")
    assert result.driver_needed == "570"  # cc 5.0–6.2 need 570
    assert plan(apply_overrides(Target(), gpu="RTX 4090", driver="550.54.14"), "ollama").driver_needed is None


def test_unknown_engine_is_usage_error() -> None:
    with pytest.raises(UsageError):
        plan(Target(), "tgi")


def test_constraints_format_is_accepted_by_packaging() -> None:
    result = plan(apply_overrides(Target(), gpu="RTX 4090 Laptop", driver="560.35.03"), "vllm")
    lines = [ln for ln in result.constraints().splitlines() if ln and not ln.startswith("#")]
    assert [str(Requirement(ln)) for ln in lines] == ["vllm==0.19.1", "torch==2.10.0", "flashinfer-python==0.6.6"]


def test_uv_sources_format_names_the_pytorch_index_when_needed() -> None:
    # A Pascal card on llama-cpp has no torch; use a what-if where torch must come from the PyTorch index:
    # RTX 5090 on torch 2.7 needs cu128 (the PyPI wheel is cu126)
    from provision.compat.plan import Pin, Plan

    p = Plan("vllm", pins=[Pin("torch", "2.7.1+cu128", "https://download.pytorch.org/whl/cu128")])
    doc = tomllib.loads(p.uv_sources())
    assert doc["tool"]["uv"]["constraint-dependencies"] == ["torch==2.7.1+cu128"]
    assert doc["tool"]["uv"]["sources"]["torch"] == [{"index": "pytorch-cu128"}]
    assert doc["tool"]["uv"]["index"] == [
        {"name": "pytorch-cu128", "url": "https://download.pytorch.org/whl/cu128", "explicit": True}
    ]
    plain = plan(apply_overrides(Target(), gpu="H100"), "vllm").uv_sources()
    assert "sources" not in tomllib.loads(plain)["tool"]["uv"]


def test_constraints_carry_the_driver_needed_and_the_warnings_as_comments() -> None:
    """A constraints file on its own must not look like a clean bill of health."""
    result = plan(apply_overrides(Target(), cc="7.0", driver="450.80.02"), "vllm")
    # Volta: vLLM ≤ 0.19 (0.20 dropped it); its CUDA 12.9 wheel needs more than torch's cu128
    assert result.driver_needed == "575.51.03", result.cudas
    text = result.constraints()
    comments = [ln for ln in text.splitlines() if ln.startswith("#")]
    assert any("driver needed first: ≥ 575.51.03" in ln for ln in comments)
    assert any("FlashInfer requires compute capability" in ln for ln in comments)
    pins = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert all(Requirement(ln) for ln in pins)
    doc = tomllib.loads(result.uv_sources())  # comments keep it valid TOML
    assert doc["tool"]["uv"]["constraint-dependencies"] == pins
    assert "driver needed first" in result.uv_sources()


def test_a_plan_without_gpu_or_driver_says_so() -> None:
    result = plan(Target(), "vllm")
    assert any(n.startswith("no GPU known") for n in result.notes)
    assert any(n.startswith("no driver known: this set needs driver ≥ ") for n in result.notes)


def test_no_flashinfer_says_when_vllm_requires_it_anyway() -> None:
    result = plan(apply_overrides(Target(), gpu="RTX 4090 Laptop", driver="560.35.03"), "vllm", flashinfer=False)
    assert "flashinfer-python" in {p.name for p in result.pins}
    assert any(n.startswith("--no-flashinfer: vLLM 0.19.1 requires flashinfer-python") for n in result.notes)


def test_table_shows_the_variant_and_escapes_brackets() -> None:
    from tests.unit.test_cli_doctor import gpuprov

    proc = gpuprov(
        "compat", "plan", "--gpu", "GTX 1080 Ti", "--driver", "550.54.14", "--engine", "llama-cpp", check_rc=0
    )
    assert "CUDA runtime: 12.4 (cu124)" in proc.stdout
    proc = gpuprov(
        "compat",
        "check",
        "--gpu",
        "RTX 4090",
        "--driver",
        "570.172.08",
        "--with",
        "torch==2.7.1",
        "--with",
        "vllm[flashinfer]==0.10.1",
        "--with",
        "flashinfer-python==0.2.8",
        check_rc=1,
    )
    assert "[flashinfer]" in proc.stdout.replace("\n", " ")


def test_plan_says_which_extras_it_assumes() -> None:
    """vLLM 0.11.0 pins flashinfer-python only under its [flashinfer] extra: a plan that pins it assumes the extra,
    says so in every format, and its own check judges the pin by it."""
    from pathlib import Path

    from provision.compat.matrix import Matrix

    data = tomllib.loads((Path(__file__).parents[2] / "provision" / "data" / "compat.toml").read_text())
    data["vllm"]["releases"] = [r for r in data["vllm"]["releases"] if Version(r["version"]) <= Version("0.11.0")]
    m = Matrix(data)
    result = plan(apply_overrides(Target(), gpu="RTX 4090", driver="580.65.06"), "vllm", matrix=m)
    assert {p.name: p.version for p in result.pins}["flashinfer-python"] == "0.3.1"
    assert result.extras == {"vllm": ["flashinfer"]}
    assert result.install_requirements()[0] == "vllm[flashinfer]"
    assert "# assumes the extra vllm[flashinfer]" in result.constraints()
    assert result.to_dict()["extras"] == {"vllm": ["flashinfer"]}
    assert result.report is not None and "vllm 0.11.0 ↔ flashinfer-python 0.3.1" in result.report.checked
    without = plan(apply_overrides(Target(), gpu="RTX 4090", driver="580.65.06"), "vllm", flashinfer=False, matrix=m)
    assert without.extras == {} and "flashinfer-python" not in {p.name for p in without.pins}


def test_a_release_whose_required_pin_is_not_on_the_index_is_skipped() -> None:
    """vLLM 0.34.0 requires flashinfer-python==0.7.3, never published: no installer can resolve it."""
    result = plan(apply_overrides(Target(), gpu="RTX 4090", driver="580.65.06"), "vllm")
    assert {p.name: p.version for p in result.pins}["vllm"] == "0.33.0"
    assert any("vLLM 0.34.0 requires flashinfer-python==0.7.3, which is not on the index" in n for n in result.notes)
