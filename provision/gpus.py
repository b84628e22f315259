"""The GPU catalog: model name → compute capability, VRAM and default power, from ``data/gpus.toml``.

:func:`lookup_gpu` accepts what NVML reports ("NVIDIA GeForce RTX 4090 Laptop GPU", "NVIDIA H100 80GB
HBM3", "Tesla T4") and what people type ("RTX 4090 Laptop", "rtx4090", "H100"). Matching is exact
after normalisation (case, punctuation and the brand words NVIDIA/GeForce/Tesla/GPU do not count), so
a desktop name never finds the laptop part, and "RTX 4080" never finds "RTX 4080 SUPER": those
words are part of the model. The data file is read once, on first use.
"""

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from provision.gpuarch import architecture_for_cc, parse_cc


@dataclass(frozen=True)
class GpuSpec:
    #: canonical name, as NVML reports it without the vendor prefix: "GeForce RTX 4090 Laptop GPU"
    name: str
    #: "8.9"
    compute_capability: str
    architecture: str
    #: nominal memory from the spec sheet (NVML reports a little less)
    vram_mib: int
    #: reference board power; None where each product sets its own (laptops: per-vBIOS TGP)
    power_default_w: float | None
    laptop: bool
    datacenter: bool
    #: where these numbers come from
    source: str
    aliases: tuple[str, ...] = ()


#: brand words that do not distinguish models
_NOISE = {"nvidia", "geforce", "tesla", "gpu", "graphics", "card"}
#: spellings of a laptop part: "RTX 2080 with Max-Q Design", "RTX 3060 Mobile", "... Laptop GPU"
_LAPTOP_PHRASES = (
    (re.compile(r"\bwith max q design\b"), "laptop"),
    (re.compile(r"\b(mobile|notebook)\b"), "laptop"),
)
_MEMORY = re.compile(r"^\d+gb$")


def normalise_gpu_name(text: str) -> str:
    """Lower case, punctuation to spaces, brand words dropped, "rtx4090ti" → "rtx 4090 ti"."""
    s = text.lower()
    s = re.sub(r"[^a-z0-9]+", " ", s)
    # split the product-line prefix from the number, and Ti/SUPER suffixes glued to a number
    s = re.sub(r"\b(rtx|gtx|gt|mx)(\d)", r"\1 \2", s)
    s = re.sub(r"(\d)(ti|super)\b", r"\1 \2", s)
    for pattern, repl in _LAPTOP_PHRASES:
        s = pattern.sub(repl, s)
    return " ".join(w for w in s.split() if w not in _NOISE)


@dataclass(frozen=True)
class _Catalog:
    specs: tuple[GpuSpec, ...]
    by_key: dict[str, GpuSpec]


def _spec_from_row(row: dict[str, Any], series: dict[str, Any], where: str) -> GpuSpec:
    try:
        name = str(row["name"])
        cc = str(row["cc"])
        parse_cc(cc)
        arch = architecture_for_cc(cc)
        if arch is None:
            raise ValueError(f"compute capability {cc} has no architecture in provision.gpuarch")
        power = row.get("power_default_w")
        return GpuSpec(
            name=name,
            compute_capability=cc,
            architecture=arch,
            vram_mib=int(row["vram_mib"]),
            power_default_w=None if power is None else float(power),
            laptop=bool(row.get("laptop", series["laptop"])),
            datacenter=bool(row.get("datacenter", series["datacenter"])),
            source=str(row.get("source", series["source"])),
            aliases=tuple(str(a) for a in row.get("aliases", ())),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"gpus.toml {where}: bad row {row!r}: {exc}") from None


def parse_catalog(text: str) -> tuple[GpuSpec, ...]:
    """The rows of a gpus.toml document. Raises ValueError on a malformed row or duplicate key."""
    data = tomllib.loads(text)
    specs: list[GpuSpec] = []
    for i, series in enumerate(data.get("series", [])):
        for j, row in enumerate(series.get("gpus", [])):
            specs.append(_spec_from_row(row, series, f"series[{i}].gpus[{j}]"))
    return tuple(specs)


def _index(specs: tuple[GpuSpec, ...]) -> dict[str, GpuSpec]:
    by_key: dict[str, GpuSpec] = {}
    for spec in specs:
        for spelling in (spec.name, *spec.aliases):
            key = normalise_gpu_name(spelling)
            other = by_key.get(key)
            if other is not None and other is not spec:
                raise ValueError(f"gpus.toml: {spelling!r} names both {other.name!r} and {spec.name!r}")
            by_key[key] = spec
    return by_key


@functools.cache
def _catalog() -> _Catalog:
    text = resources.files("provision").joinpath("data/gpus.toml").read_text(encoding="utf-8")
    specs = parse_catalog(text)
    return _Catalog(specs=specs, by_key=_index(specs))


def list_gpus() -> list[GpuSpec]:
    """Every GPU in the catalog, in file order (by architecture, oldest first)."""
    return list(_catalog().specs)


def lookup_gpu(name: object) -> GpuSpec | None:
    """The catalog entry for an NVML name or a typed model name, or None when there is none (or it is no string).

    Exact after :func:`normalise_gpu_name`; if that fails, a memory size that names no variant
    ("NVIDIA GeForce RTX 3060 12GB") is ignored. Never raises.
    """
    if not isinstance(name, str):
        return None
    catalog = _catalog()
    key = normalise_gpu_name(name)
    if not key:
        return None
    spec = catalog.by_key.get(key)
    if spec is not None:
        return spec
    without_memory = " ".join(w for w in key.split() if not _MEMORY.match(w))
    if without_memory and without_memory != key:
        return catalog.by_key.get(without_memory)
    return None
