"""``compat plan``: the newest consistent set of packages for a host (or what-if target) and an engine.

For vLLM: walk releases newest first; keep the first whose kernels cover every GPU, whose CUDA the
driver can run, and for whose pinned torch a build exists that covers the GPUs and the driver —
preferring the plain PyPI torch wheel (what vLLM's PyPI wheel is built and tested against, and
installable without an extra index). The proposed set is then run through :func:`check`: a plan
never proposes what check rejects. When no release fits the driver, the plan is made as if the
driver were new enough and says which driver it needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from packaging.version import Version

from provision.compat.matrix import Matrix, TorchBuild, cuda_major, load_matrix, runs_on
from provision.compat.target import Target
from provision.compat.verdict import Report, check
from provision.engineflags import ENGINE_WORDS, LLAMA_CPP_ENGINE, OLLAMA_ENGINE, VLLM_ENGINE, engine_id
from provision.errors import GpuprovError
from provision.versions import version_or_none

#: the engines a plan is made for, in the order --engine lists them (it takes their command words: llama-cpp)
ENGINES = (VLLM_ENGINE, LLAMA_CPP_ENGINE, OLLAMA_ENGINE)


class NoPlanError(GpuprovError):
    """No release in the matrix fits this GPU (exit 1)."""


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    #: a package index other than PyPI this must come from
    index: str | None = None
    why: str = ""

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass
class Plan:
    #: an engine id (:mod:`provision.engineflags`); shown as its command word (llama-cpp)
    engine: str
    pins: list[Pin] = field(default_factory=list)
    #: driver needed when the host's is too old for every candidate (None: the driver is fine or unknown)
    driver_needed: str | None = None
    #: the CUDA runtime the set brings (torch's, for vLLM)
    cuda: str | None = None
    #: the wheel variant of that runtime ("cu128"; None for a plain PyPI wheel)
    variant: str | None = None
    #: every CUDA runtime in the set (vLLM's own wheel can be newer than torch's): the driver must run all
    cudas: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: the check of the proposed set against the target
    report: Report | None = None
    #: environment for building from source (llama-cpp)
    build_env: dict[str, str] = field(default_factory=dict)
    #: the extras the set assumes are asked for ("vllm" → ["flashinfer"]): pins under an extra hold only with it
    extras: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "engine": ENGINE_WORDS[self.engine],
            "pins": [asdict(p) | {"requirement": p.requirement} for p in self.pins],
            "cuda": self.cuda,
            "variant": self.variant,
            "cudas": self.cudas,
            "driver_needed": self.driver_needed,
            "build_env": self.build_env,
            "extras": self.extras,
            "install": self.install_requirements(),
            "notes": self.notes,
            "check": self.report.to_dict() if self.report else None,
        }

    def warnings(self, *, driver: bool = True) -> list[str]:
        """What a person must know before installing the set: the driver it needs, the check's problems."""
        out = []
        if driver and self.driver_needed:
            out.append(f"driver needed first: ≥ {self.driver_needed} (gpuprov never installs drivers)")
        if self.report:
            out += [f"{p.severity}: {p.pair}: {p.reason}" for p in self.report.problems]
        return out

    def install_requirements(self) -> list[str]:
        """What to ask the installer for, extras included ("vllm[flashinfer]"): constraints cannot carry extras."""
        return [f"{p.name}[{','.join(self.extras[p.name])}]" if p.name in self.extras else p.name for p in self.pins]

    def _comment_lines(self) -> list[str]:
        lines = [f"# {line}" for line in self.warnings()]
        lines += [
            f"# assumes the extra {name}[{','.join(extras)}]: install it so (the pins under the extra hold only then)"
            for name, extras in self.extras.items()
        ]
        lines += [f"# note: {note}" for note in self.notes]
        return [line.replace("\n", " ") for line in lines]

    def constraints(self) -> str:
        """A pip/uv constraints file (``uv pip install -c FILE``), its caveats as comments."""
        lines = [f"# gpuprov compat plan --engine {ENGINE_WORDS[self.engine]}", *self._comment_lines()]
        indexes = sorted({p.index for p in self.pins if p.index})
        for url in indexes:
            lines.append(
                f"# needs the index {url}: uv pip install --extra-index-url {url} "
                "--index-strategy unsafe-best-match -c FILE ..."
            )
        lines.extend(p.requirement for p in self.pins)
        return "\n".join(lines) + "\n"

    def uv_sources(self) -> str:
        """A ``[tool.uv]`` snippet for pyproject.toml: the constraints, and the index for torch/wheels."""
        word = ENGINE_WORDS[self.engine]
        lines = [f"# gpuprov compat plan --engine {word} --format uv-sources", *self._comment_lines()]
        lines += ["[tool.uv]", "constraint-dependencies = ["]
        lines += [f'  "{p.requirement}",' for p in self.pins]
        lines.append("]")
        indexed = [p for p in self.pins if p.index]
        if indexed:
            lines.append("")
            lines.append("# [tool.uv.sources] applies to the project's direct dependencies: list these there too")
            lines.append("[tool.uv.sources]")
            for p in indexed:
                lines.append(f'{p.name} = [{{ index = "{_index_name(p.index or "")}" }}]')
            for url in sorted({p.index for p in indexed if p.index}):
                lines += ["", "[[tool.uv.index]]", f'name = "{_index_name(url)}"', f'url = "{url}"', "explicit = true"]
        else:
            lines.append("# every pin is on PyPI: no extra index needed")
        return "\n".join(lines) + "\n"


def _index_name(url: str) -> str:
    variant = url.rstrip("/").rsplit("/", 1)[-1]
    return ("pytorch-" if "pytorch" in url else "llama-cpp-") + variant


def _driver_ok(matrix: Matrix, driver: Version | None, cuda: str) -> bool:
    if driver is None:
        return True
    floor = matrix.driver_floor(cuda)
    return floor is not None and driver >= Version(floor[0])


def _pick_torch(matrix: Matrix, version: str, ccs: list[str], driver: Version | None, major: int) -> TorchBuild | None:
    builds = [
        b
        for b in matrix.torch_variants(version)
        if cuda_major(b.cuda) == major
        and all(runs_on(b.archs, cc) for cc in ccs)
        and _driver_ok(matrix, driver, b.cuda)
    ]
    if not builds:
        return None
    return max(builds, key=lambda b: (b.pypi, Version(b.cuda)))


def _plan_vllm(target: Target, matrix: Matrix, driver: Version | None, flashinfer: bool) -> Plan | None:
    ccs = target.cc_list()
    unresolvable: list[str] = []
    for rel in matrix.vllm_newest_first():
        if not all(runs_on(rel.archs, cc) for cc in ccs) or not _driver_ok(matrix, driver, rel.cuda):
            continue
        if rel.flashinfer and not rel.flashinfer_extra and not matrix.flashinfer_published(rel.flashinfer)[0]:
            unresolvable.append(
                f"vLLM {rel.version} requires flashinfer-python=={rel.flashinfer}, which is not on the index: "
                "it cannot be installed (skipped)"
            )
            continue
        torch = _pick_torch(matrix, rel.torch, ccs, driver, cuda_major(rel.cuda))
        if torch is None:
            continue
        plan = Plan(VLLM_ENGINE, cuda=torch.cuda, variant=None if torch.pypi else torch.variant)
        plan.notes.extend(unresolvable)
        plan.cudas = sorted({torch.cuda, rel.cuda}, key=Version)
        plan.pins.append(Pin("vllm", rel.version, None, rel.source))
        plan.pins.append(
            Pin("torch", torch.version if torch.pypi else f"{torch.version}+{torch.variant}", torch.index, torch.source)
        )
        if rel.xformers:
            plan.pins.append(Pin("xformers", rel.xformers, None, rel.source))
        if rel.flashinfer and not flashinfer and not rel.flashinfer_extra:
            plan.notes.append(
                f"--no-flashinfer: vLLM {rel.version} requires flashinfer-python {rel.flashinfer} (not an extra): "
                "it is pinned anyway"
            )
        if rel.flashinfer and (flashinfer or not rel.flashinfer_extra):
            fi = matrix.flashinfer(rel.flashinfer)
            if fi is not None and all(Version(cc) >= Version(fi.min_cc) for cc in ccs):
                plan.pins.append(Pin("flashinfer-python", rel.flashinfer, None, rel.source))
                if rel.flashinfer_extra:
                    plan.extras["vllm"] = ["flashinfer"]
            elif not rel.flashinfer_extra:
                plan.pins.append(Pin("flashinfer-python", rel.flashinfer, None, rel.source))
                plan.notes.append(
                    "flashinfer is installed with vLLM but needs cc ≥ 7.5: vLLM uses another attention backend"
                )
        if not rel.flashinfer and flashinfer:
            plan.notes.append(
                f"vLLM {rel.version} does not pin flashinfer: add a flashinfer build for torch {rel.torch}"
            )
        return plan
    return None


def _plan_llama_cpp(target: Target, matrix: Matrix, driver: Version | None) -> Plan | None:
    ccs = target.cc_list()
    fits = [
        w
        for w in matrix.llama_cpp_wheels
        if all(runs_on(w.archs, cc) for cc in ccs) and _driver_ok(matrix, driver, w.cuda)
    ]
    archs = ";".join(sorted({cc.replace(".", "") for cc in ccs})) or "native"
    plan = Plan(LLAMA_CPP_ENGINE)
    plan.build_env = {"CMAKE_ARGS": f"-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES={archs}"}
    if fits:
        # prefer a wheel the driver runs natively, then the newest CUDA
        def native(w: object) -> bool:
            tk = matrix.toolkit_driver(w.cuda)  # type: ignore[attr-defined]
            return driver is None or (tk is not None and driver >= Version(tk[0]))

        wheel = max(fits, key=lambda w: (native(w), Version(w.cuda)))
        from provision.compat.matrix import LLAMA_CPP_INDEX

        plan.cuda = wheel.cuda
        plan.variant = wheel.variant
        plan.cudas = [wheel.cuda]
        plan.pins.append(
            Pin(
                "llama-cpp-python", matrix.llama_cpp_newest, LLAMA_CPP_INDEX.format(variant=wheel.variant), wheel.source
            )
        )
        if any(not runs_on(tuple(a for a in wheel.archs if "+PTX" not in a), cc) for cc in ccs):
            plan.notes.append(
                "this GPU runs the prebuilt wheel only through PTX JIT: building from source "
                "(gpuprov build llama-cpp) gives native kernels"
            )
    elif driver is not None:
        return None  # plan() tries again without the driver, and says which driver is needed
    else:
        plan.notes.append("no prebuilt CUDA wheel fits: build from source (gpuprov build llama-cpp) with build_env")
    plan.notes.append(matrix.llama_cpp_source)
    return plan


def _plan_ollama(target: Target, matrix: Matrix, driver: Version | None) -> Plan:
    o = matrix.ollama
    ccs = target.cc_list()
    if any(Version(cc) < Version(o["min_cc"]) for cc in ccs):
        raise NoPlanError(f"Ollama needs compute capability ≥ {o['min_cc']} ({o['source']})")
    need = o["old_cc_driver_min"] if any(Version(cc) < Version(o["old_cc_below"]) for cc in ccs) else o["driver_min"]
    plan = Plan(OLLAMA_ENGINE)
    plan.notes.append(f"Ollama bundles its CUDA runtime: it needs driver ≥ {need} for this GPU ({o['source']})")
    if driver is not None and driver < Version(need):
        plan.driver_needed = need
    return plan


def _driver_for(matrix: Matrix, cudas: list[str]) -> str | None:
    """The driver that runs every CUDA runtime of a set natively: the highest of their toolkits' drivers."""
    drivers = []
    for cuda in cudas:
        toolkit = matrix.toolkit_driver(cuda)
        floor = matrix.driver_floor(cuda)
        if toolkit or floor:
            drivers.append(toolkit[0] if toolkit else floor[0])  # type: ignore[index]
    return max(drivers, key=Version) if drivers else None


def plan(target: Target, engine: str = "vllm", *, flashinfer: bool = True, matrix: Matrix | None = None) -> Plan:
    """The newest consistent set for ``target`` and ``engine`` (an engine id, or its command word:
    llama-cpp); raises NoPlanError when none exists."""
    m = matrix or load_matrix()
    given, engine = engine, engine_id(engine) or ""
    if engine not in ENGINES:
        from provision.errors import UsageError

        raise UsageError(f"--engine {given!r}: choose one of {', '.join(ENGINE_WORDS[e] for e in ENGINES)}")
    driver = version_or_none(target.driver)
    if engine == OLLAMA_ENGINE:
        return _plan_ollama(target, m, driver)
    make: Callable[[Version | None], Plan | None] = (
        (lambda d: _plan_vllm(target, m, d, flashinfer))
        if engine == VLLM_ENGINE
        else (lambda d: _plan_llama_cpp(target, m, d))
    )
    result = make(driver)
    if result is None and driver is not None:
        result = make(None)
        if result is not None and result.cudas:
            result.driver_needed = _driver_for(m, result.cudas)
            result.notes.append(
                f"no release fits driver {target.driver}: upgrade the driver to ≥ {result.driver_needed}"
            )
    if result is None:
        ccs = ", ".join(target.cc_list()) or "?"
        raise NoPlanError(f"no {ENGINE_WORDS[engine]} release in the matrix supports compute capability {ccs}")
    if not target.gpus:
        result.notes.append(
            "no GPU known: the set is not checked against a compute capability (give --gpu or --cc, or run on the host)"
        )
    if driver is None and engine != OLLAMA_ENGINE and result.cudas:
        result.notes.append(
            f"no driver known: this set needs driver ≥ {_driver_for(m, result.cudas)} (give --driver to check)"
        )
    if result.pins:
        what_if = Target(
            driver=result.driver_needed or target.driver,
            gpus=list(target.gpus),
            packages={p.name: p.version for p in result.pins},
            extras={name: frozenset(extras) for name, extras in result.extras.items()},
        )
        result.report = check(what_if, m)
    return result
