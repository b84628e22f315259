"""The GPU catalog: NVML names and typed names find the right row; lookup never raises."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provision.gpuarch import architecture_for_cc
from provision.gpus import GpuSpec, list_gpus, lookup_gpu, normalise_gpu_name, parse_catalog


@pytest.mark.parametrize(
    ("query", "name", "cc"),
    [
        # what NVML reports (nvmlDeviceGetName)
        ("NVIDIA GeForce RTX 4090 Laptop GPU", "GeForce RTX 4090 Laptop GPU", "8.9"),
        ("NVIDIA GeForce RTX 4090", "GeForce RTX 4090", "8.9"),
        ("NVIDIA H100 80GB HBM3", "H100 80GB HBM3", "9.0"),
        ("NVIDIA H100 PCIe", "H100 PCIe", "9.0"),
        ("NVIDIA H100 NVL", "H100 NVL", "9.0"),
        ("NVIDIA H200", "H200", "9.0"),
        ("NVIDIA A100-SXM4-80GB", "A100-SXM4-80GB", "8.0"),
        ("NVIDIA A100-PCIE-40GB", "A100-PCIE-40GB", "8.0"),
        ("NVIDIA A100 80GB PCIe", "A100 80GB PCIe", "8.0"),
        ("Tesla V100-SXM2-16GB", "Tesla V100-SXM2-16GB", "7.0"),
        ("Tesla T4", "Tesla T4", "7.5"),
        ("Tesla P100-PCIE-16GB", "Tesla P100-PCIE-16GB", "6.0"),
        ("NVIDIA GeForce GTX 1080 Ti", "GeForce GTX 1080 Ti", "6.1"),
        ("GeForce RTX 2080 with Max-Q Design", "GeForce RTX 2080 Laptop GPU", "7.5"),
        ("NVIDIA RTX 6000 Ada Generation", "RTX 6000 Ada Generation", "8.9"),
        ("NVIDIA RTX A6000", "RTX A6000", "8.6"),
        ("NVIDIA L40S", "L40S", "8.9"),
        ("NVIDIA L4", "L4", "8.9"),
        ("NVIDIA A10", "A10", "8.6"),
        ("NVIDIA B200", "B200", "10.0"),
        ("NVIDIA GB200", "GB200", "10.0"),
        ("NVIDIA GeForce RTX 5090", "GeForce RTX 5090", "12.0"),
        ("NVIDIA GeForce RTX 5090 Laptop GPU", "GeForce RTX 5090 Laptop GPU", "12.0"),
        (
            "NVIDIA RTX PRO 6000 Blackwell Workstation Edition",
            "RTX PRO 6000 Blackwell Workstation Edition",
            "12.0",
        ),
        (
            "NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition",
            "RTX PRO 6000 Blackwell Max-Q Workstation Edition",
            "12.0",
        ),
        # what people type
        ("RTX 4090 Laptop", "GeForce RTX 4090 Laptop GPU", "8.9"),
        ("rtx 4090 laptop gpu", "GeForce RTX 4090 Laptop GPU", "8.9"),
        ("RTX 4090 Mobile", "GeForce RTX 4090 Laptop GPU", "8.9"),
        ("rtx 4090", "GeForce RTX 4090", "8.9"),
        ("rtx4090", "GeForce RTX 4090", "8.9"),
        ("RTX 4070Ti", "GeForce RTX 4070 Ti", "8.9"),
        ("RTX 4080 Super", "GeForce RTX 4080 SUPER", "8.9"),
        ("H100", "H100 80GB HBM3", "9.0"),
        ("h100 sxm", "H100 80GB HBM3", "9.0"),
        ("A100", "A100-SXM4-80GB", "8.0"),
        ("A100 40GB", "A100-SXM4-40GB", "8.0"),
        ("V100", "Tesla V100-SXM2-16GB", "7.0"),
        ("T4", "Tesla T4", "7.5"),
        ("P100", "Tesla P100-PCIE-16GB", "6.0"),
        ("rtx 6000 ada", "RTX 6000 Ada Generation", "8.9"),
        ("RTX PRO 6000", "RTX PRO 6000 Blackwell Workstation Edition", "12.0"),
        # a memory size that names no variant is ignored
        ("NVIDIA GeForce RTX 3060 12GB", "GeForce RTX 3060", "8.6"),
    ],
)
def test_lookup_finds_the_model(query: str, name: str, cc: str) -> None:
    spec = lookup_gpu(query)
    assert spec is not None, query
    assert spec.name == name
    assert spec.compute_capability == cc


@pytest.mark.parametrize(
    ("query", "not_name"),
    [
        ("RTX 4090", "GeForce RTX 4090 Laptop GPU"),
        ("RTX 4090 Laptop", "GeForce RTX 4090"),
        ("RTX 4080", "GeForce RTX 4080 SUPER"),
        ("RTX 4080 SUPER", "GeForce RTX 4080"),
        ("RTX 4070 Ti", "GeForce RTX 4070 Ti SUPER"),
        ("RTX 3060 Laptop", "GeForce RTX 3060"),
        ("H100 PCIe", "H100 80GB HBM3"),
    ],
)
def test_variants_never_stand_in_for_each_other(query: str, not_name: str) -> None:
    spec = lookup_gpu(query)
    assert spec is not None
    assert spec.name != not_name


@pytest.mark.parametrize("query", ["", "   ", "RTX", "RTX 9999", "GeForce", "Radeon RX 7900 XTX", "RTX 6000"])
def test_unknown_names_give_none(query: str) -> None:
    assert lookup_gpu(query) is None


def test_laptop_and_datacenter_flags() -> None:
    laptop = lookup_gpu("RTX 4090 Laptop")
    assert laptop is not None and laptop.laptop and not laptop.datacenter
    assert laptop.power_default_w is None  # each laptop's vBIOS sets its TGP
    assert laptop.vram_mib == 16384
    h100 = lookup_gpu("H100")
    assert h100 is not None and h100.datacenter and not h100.laptop
    assert h100.power_default_w == 700.0


def test_catalog_covers_pascal_to_blackwell() -> None:
    archs = {g.architecture for g in list_gpus()}
    assert {"Pascal", "Volta", "Turing", "Ampere", "Ada", "Hopper", "Blackwell"} <= archs


@pytest.mark.parametrize("spec", list_gpus(), ids=lambda g: g.name)
def test_every_row_is_consistent_and_found_by_its_nvml_name(spec: GpuSpec) -> None:
    assert spec.architecture == architecture_for_cc(spec.compute_capability)
    assert spec.vram_mib > 0
    assert spec.source
    assert not (spec.laptop and spec.datacenter)
    prefix = "" if spec.name.startswith("Tesla") else "NVIDIA "
    assert lookup_gpu(prefix + spec.name) is spec
    assert lookup_gpu(spec.name.upper()) is spec
    for alias in spec.aliases:
        assert lookup_gpu(alias) is spec


def test_parse_catalog_rejects_a_row_without_cc() -> None:
    text = '[[series]]\nlaptop = false\ndatacenter = false\nsource = "x"\ngpus = [{ name = "X", vram_mib = 1 }]\n'
    with pytest.raises(ValueError, match="bad row"):
        parse_catalog(text)


def test_normalise() -> None:
    assert normalise_gpu_name("NVIDIA GeForce RTX 4090 Laptop GPU") == "rtx 4090 laptop"
    assert normalise_gpu_name("GeForce RTX 2080 Super with Max-Q Design") == "rtx 2080 super laptop"
    assert normalise_gpu_name("rtx4060ti") == "rtx 4060 ti"


@given(st.one_of(st.text(), st.integers(), st.floats(), st.none(), st.lists(st.text())))
def test_lookup_never_raises(text: object) -> None:  # a profile's YAML may hold any of these
    result = lookup_gpu(text)
    assert result is None or isinstance(result, GpuSpec)


@given(st.sampled_from(list_gpus()), st.sampled_from(["upper", "lower", "dashes", "spaces"]))
def test_spelling_does_not_matter(spec: GpuSpec, style: str) -> None:
    name = {
        "upper": spec.name.upper(),
        "lower": spec.name.lower(),
        "dashes": spec.name.replace(" ", "-"),
        "spaces": "  " + spec.name.replace("-", " ") + " ",
    }[style]
    assert lookup_gpu(name) is spec
