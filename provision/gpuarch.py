"""GPU architecture names and their compute capabilities: one table, used by the probe, compat and build."""

from __future__ import annotations

#: NVML's nvmlDeviceArchitecture_t values (nvml.h) → name
NVML_ARCHITECTURES = {
    2: "Kepler",
    3: "Maxwell",
    4: "Pascal",
    5: "Volta",
    6: "Turing",
    7: "Ampere",
    8: "Ada",
    9: "Hopper",
    10: "Blackwell",
    13: "Rubin",
}

#: compute capability → architecture (CUDA C Programming Guide, "Compute Capabilities")
_CC_ARCH = {
    "3.0": "Kepler",
    "3.2": "Kepler",
    "3.5": "Kepler",
    "3.7": "Kepler",
    "5.0": "Maxwell",
    "5.2": "Maxwell",
    "5.3": "Maxwell",
    "6.0": "Pascal",
    "6.1": "Pascal",
    "6.2": "Pascal",
    "7.0": "Volta",
    "7.2": "Volta",
    "7.5": "Turing",
    "8.0": "Ampere",
    "8.6": "Ampere",
    "8.7": "Ampere",
    "8.9": "Ada",
    "9.0": "Hopper",
    "10.0": "Blackwell",
    "10.1": "Blackwell",
    "10.3": "Blackwell",
    "11.0": "Blackwell",
    "12.0": "Blackwell",
    "12.1": "Blackwell",
}


def architecture_for_cc(cc: str | None) -> str | None:
    if cc is None:
        return None
    return _CC_ARCH.get(cc)


def parse_cc(cc: str) -> tuple[int, int]:
    """'8.9' → (8, 9). Raises ValueError for anything else."""
    major, _, minor = cc.strip().partition(".")
    if not major.isdigit() or not minor.isdigit():
        raise ValueError(f"not a compute capability: {cc!r} (expected MAJOR.MINOR, e.g. 8.9)")
    return int(major), int(minor)


def cuda_arch(cc: str) -> str:
    """'8.9' → '89', the form CMAKE_CUDA_ARCHITECTURES and TORCH_CUDA_ARCH_LIST's sm_ names use."""
    major, minor = parse_cc(cc)
    return f"{major}{minor}"
