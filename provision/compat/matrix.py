"""The compatibility matrix, read from ``data/compat.toml`` on first use (tomllib, stdlib).

Typed, immutable views of the rows; lookups return None for what the matrix does not cover, so the
caller can say "unknown" instead of guessing.
"""

from __future__ import annotations

import datetime
import functools
import tomllib
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from provision.gpuarch import parse_cc
from provision.versions import version_or_none

PYTORCH_INDEX = "https://download.pytorch.org/whl/{variant}"
LLAMA_CPP_INDEX = "https://abetlen.github.io/llama-cpp-python/whl/{variant}"


def variant_cuda(variant: str) -> str:
    """'cu128' → '12.8', 'cu118' → '11.8', 'cu130' → '13.0'."""
    digits = variant.removeprefix("cu")
    return f"{digits[:-1]}.{digits[-1]}"


def cuda_major(cuda: str) -> int:
    return int(cuda.split(".")[0])


def runs_on(archs: tuple[str, ...], cc: str) -> bool:
    """Do kernels compiled for ``archs`` run on compute capability ``cc``?

    SASS for X.Y runs on X.Z with Z ≥ Y (same major); "X.Y+PTX" also JIT-compiles on any newer GPU.
    """
    gpu = parse_cc(cc)
    for arch in archs:
        ptx = arch.endswith("+PTX")
        base = parse_cc(arch.removesuffix("+PTX"))
        if base[0] == gpu[0] and base[1] <= gpu[1]:
            return True
        if ptx and base <= gpu:
            return True
    return False


@dataclass(frozen=True)
class TorchBuild:
    version: str
    variant: str
    archs: tuple[str, ...]
    #: the plain PyPI wheel is this variant
    pypi: bool
    source: str

    @property
    def cuda(self) -> str:
        return variant_cuda(self.variant)

    @property
    def requirement(self) -> str:
        """What to install: 'torch==2.7.1' for the PyPI wheel, 'torch==2.7.1+cu128' otherwise."""
        return f"torch=={self.version}" if self.pypi else f"torch=={self.version}+{self.variant}"

    @property
    def index(self) -> str | None:
        return None if self.pypi else PYTORCH_INDEX.format(variant=self.variant)


@dataclass(frozen=True)
class VllmRelease:
    version: str
    torch: str
    xformers: str | None
    flashinfer: str | None
    flashinfer_extra: bool
    cuda: str
    archs: tuple[str, ...]
    source: str
    build_source: str


@dataclass(frozen=True)
class FlashinferRange:
    versions: SpecifierSet
    torch: SpecifierSet
    cudas: tuple[str, ...]
    min_cc: str
    aot: bool
    source: str


@dataclass(frozen=True)
class XformersRelease:
    version: str
    torch: SpecifierSet
    source: str


@dataclass(frozen=True)
class LlamaCppWheel:
    variant: str
    cuda: str
    archs: tuple[str, ...]
    source: str


class Matrix:
    """Lookups over the parsed compat.toml document."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.coverage: dict[str, str] = dict(data["coverage"])
        self._floors = {int(r["major"]): (str(r["driver_floor"]), str(r["source"])) for r in data["cuda"]["majors"]}
        self._toolkits = {str(r["version"]): (str(r["driver"]), str(r["source"])) for r in data["cuda"]["toolkits"]}
        archs = data["archs"]
        arch_sources = data["archs_source"]
        self.torch_builds: dict[tuple[str, str], TorchBuild] = {}
        self.torch_versions: list[str] = []
        for row in data["torch"]["releases"]:
            for version in row["versions"]:
                self.torch_versions.append(version)
                for variant, arch_key in row["variants"].items():
                    self.torch_builds[(version, variant)] = TorchBuild(
                        version=version,
                        variant=variant,
                        archs=tuple(archs[arch_key]),
                        pypi=variant == row["pypi"],
                        source=f"{row['source']}; archs: {arch_sources[arch_key]}",
                    )
        self.torch_versions.sort(key=Version)
        builds = [
            (SpecifierSet(r["versions"]), str(r["cuda"]), tuple(r["archs"]), str(r["source"]))
            for r in data["vllm_build"]["ranges"]
        ]
        self.vllm_releases: dict[str, VllmRelease] = {}
        for row in data["vllm"]["releases"]:
            version = str(row["version"])
            build = next((b for b in builds if Version(version) in b[0]), None)
            if build is None and row.get("overlay") and builds and all(Version(version) > _top(b[0]) for b in builds):
                # a release the user's overlay read, newer than the build table: the newest build's facts, said so
                newest = max(builds, key=lambda b: _top(b[0]))
                build = (*newest[:3], f"{newest[3]} — assumed for {version}, newer than the matrix's build table")
            if build is None:
                continue  # no build facts: not covered
            self.vllm_releases[version] = VllmRelease(
                version=version,
                torch=str(row["torch"]),
                xformers=row.get("xformers"),
                flashinfer=row.get("flashinfer"),
                flashinfer_extra=bool(row.get("flashinfer_extra", False)),
                cuda=build[1],
                archs=build[2],
                source=str(row["source"]),
                build_source=build[3],
            )
        self.flashinfer_ranges = [
            FlashinferRange(
                versions=SpecifierSet(r["versions"]),
                torch=SpecifierSet(r["torch"]),
                cudas=tuple(r["cudas"]),
                min_cc=str(r["min_cc"]),
                aot=bool(r["aot"]),
                source=str(r["source"]),
            )
            for r in data["flashinfer"]["ranges"]
        ]
        #: flashinfer-python releases refresh read from PyPI → their own torch requirement (None: no pin)
        self.flashinfer_pins: dict[Version, SpecifierSet | None] = {
            Version(str(r["version"])): SpecifierSet(r["torch_range"]) if r.get("torch_range") else None
            for r in data["flashinfer_pins"]["releases"]
        }
        #: flashinfer-python release → extra → the torch requirement that applies only under that extra
        self.flashinfer_pin_extras: dict[Version, dict[str, SpecifierSet]] = {
            Version(str(r["version"])): {str(k): SpecifierSet(v) for k, v in r.get("torch_extras", {}).items()}
            for r in data["flashinfer_pins"]["releases"]
        }
        self.flashinfer_pins_source = "compat.toml [flashinfer_pins] (gpuprov compat refresh: PyPI wheel METADATA)"
        #: the day refresh last read the index for the generated tables ("2026-12-04"; None: not recorded)
        self.refreshed: str | None = str(data["refreshed"]) if "refreshed" in data else None
        #: the user's overlay merged in: {"path", "refreshed", "added": {table: [versions]}} (None: none)
        self.overlay: dict[str, Any] | None = data.get("overlay")
        self._overlay_flashinfer = {
            Version(str(r["version"])) for r in data["flashinfer_pins"]["releases"] if r.get("overlay")
        }
        self.xformers_releases = {
            str(r["version"]): XformersRelease(
                version=str(r["version"]),
                torch=SpecifierSet(f"=={r['torch']}" if "torch" in r else r.get("torch_range", "")),
                source=str(r["source"]),
            )
            for r in data["xformers"]["releases"]
        }
        lc = data["llama_cpp"]
        self.llama_cpp_newest = str(lc["newest"])
        self.llama_cpp_source = str(lc["source"])
        self.llama_cpp_wheels = [
            LlamaCppWheel(str(w["variant"]), str(w["cuda"]), tuple(w["archs"]), str(w["source"])) for w in lc["wheels"]
        ]
        self.ollama: dict[str, str] = {k: str(v) for k, v in data["ollama"].items()}
        self.nvcc_archs: dict[str, tuple[Version, Version | None, str]] = {
            str(r["cc"]): (
                Version(r["min_cuda"]),
                Version(r["max_cuda"]) if "max_cuda" in r else None,
                str(r["source"]),
            )
            for r in data["nvcc"]["archs"]
        }
        self.llama_cpp_cuda_flags = [
            (SpecifierSet(r["versions"]), str(r["flag"]), str(r["source"]))
            for r in data["llama_cpp_build"]["cuda_flags"]
        ]

    # -- CUDA / driver --------------------------------------------------------------------------------
    def driver_floor(self, cuda: str) -> tuple[str, str] | None:
        """(minimum driver for any runtime of this CUDA major, source)."""
        return self._floors.get(cuda_major(cuda))

    def toolkit_driver(self, cuda: str) -> tuple[str, str] | None:
        """(the driver the CUDA toolkit ``cuda`` ships with, source)."""
        return self._toolkits.get(cuda)

    def newest_cuda_for_driver(self, driver: Version) -> str | None:
        """The newest toolkit whose own driver is ≤ ``driver`` (what the driver runs natively)."""
        ok = [c for c, (d, _) in self._toolkits.items() if Version(d) <= driver]
        return max(ok, key=Version) if ok else None

    # -- torch ------------------------------------------------------------------------------------------
    def torch_variants(self, version: str) -> list[TorchBuild]:
        return [b for (v, _), b in self.torch_builds.items() if v == version]

    def torch_build(self, version: str, variant: str | None) -> TorchBuild | None:
        """``variant`` None: the PyPI wheel of that version."""
        if variant is None:
            return next((b for b in self.torch_variants(version) if b.pypi), None)
        return self.torch_builds.get((version, variant))

    # -- vLLM / flashinfer / xformers ------------------------------------------------------------------------
    def vllm(self, version: str) -> VllmRelease | None:
        v = version_or_none(version)
        if v is None:
            return None
        return next((r for k, r in self.vllm_releases.items() if Version(k) == v), None)

    def vllm_newest_first(self) -> list[VllmRelease]:
        return sorted(self.vllm_releases.values(), key=lambda r: Version(r.version), reverse=True)

    def flashinfer(self, version: str) -> FlashinferRange | None:
        v = version_or_none(version)
        if v is None:
            return None
        public = Version(v.public)
        found = next((r for r in self.flashinfer_ranges if r.versions.contains(public, prereleases=True)), None)
        if found is None and public in self._overlay_flashinfer and self.flashinfer_ranges:
            last = self.flashinfer_ranges[-1]
            if not last.aot and all(public > _top(r.versions) for r in self.flashinfer_ranges):
                # a JIT release the overlay read, newer than the hand-written ranges: the newest range, said so
                return replace(last, source=f"{last.source} — assumed for {public}, newer than the matrix's ranges")
        return found

    def flashinfer_published(self, version: str) -> tuple[bool, SpecifierSet | None]:
        """(is this a flashinfer-python release refresh has seen — True for versions older than what it
        read —, the torch requirement in that release's own metadata)."""
        v = Version(Version(version).public)
        if not self.flashinfer_pins or v < min(self.flashinfer_pins):
            return True, None
        return v in self.flashinfer_pins, self.flashinfer_pins.get(v)

    def flashinfer_extra_torch(self, version: str, extras: frozenset[str]) -> list[tuple[str, SpecifierSet]]:
        """(extra, torch requirement) of a flashinfer-python release for the extras asked for."""
        found = self.flashinfer_pin_extras.get(Version(Version(version).public), {})
        return [(extra, found[extra]) for extra in sorted(extras) if extra in found]

    def newest(self, package: str) -> Version | None:
        """The newest version of a tracked distribution the matrix (with its overlay) has a row for."""
        versions: list[Version] = {
            "torch": [Version(v) for v in self.torch_versions],
            "vllm": [Version(v) for v in self.vllm_releases],
            "flashinfer-python": list(self.flashinfer_pins),
            "xformers": [Version(v) for v in self.xformers_releases],
            "llama-cpp-python": [Version(self.llama_cpp_newest)],
        }.get(package, [])
        return max(versions) if versions else None

    def age_days(self, today: datetime.date | None = None) -> int | None:
        """Days since the index was last read (the overlay's day when there is one)."""
        day = self.overlay["refreshed"] if self.overlay else self.refreshed
        if day is None:
            return None
        return ((today or datetime.date.today()) - datetime.date.fromisoformat(day)).days

    def xformers(self, version: str) -> XformersRelease | None:
        v = version_or_none(version)
        if v is None:
            return None
        return next((r for k, r in self.xformers_releases.items() if Version(k) == Version(v.public)), None)


def _top(spec: SpecifierSet) -> Version:
    """The highest version a range's upper bounds allow ('>=0.20.0,<=0.34.0' → 0.34.0; no bound: 0)."""
    bounds = [Version(s.version) for s in spec if s.operator in ("<", "<=", "==")]
    return min(bounds) if bounds else Version("0")


def parse_matrix(text: str) -> Matrix:
    return Matrix(tomllib.loads(text))


@functools.cache
def _shipped() -> dict[str, Any]:
    text = resources.files("provision").joinpath("data/compat.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


@functools.cache
def _load(overlay_file: str | None, mtime_ns: int) -> Matrix:
    from provision.compat.overlay import merge, read_overlay

    data = _shipped()
    overlay = read_overlay(Path(overlay_file)) if overlay_file else None
    return Matrix(merge(data, overlay) if overlay else data)


def load_matrix() -> Matrix:
    """The packaged matrix with the user's overlay on top (parsed once per process and overlay file)."""
    from provision.compat.overlay import overlay_path

    path = overlay_path()
    try:
        mtime = path.stat().st_mtime_ns if path is not None else 0
    except OSError:
        path, mtime = None, 0
    return _load(str(path) if path is not None else None, mtime)
