"""What a compatibility check is about: a driver, GPUs, and package versions.

Built from a :class:`~provision.snapshot.Snapshot` and what-if overrides (``--driver``, ``--gpu``/
``--cc``, ``--with name==version``): an override replaces what the snapshot says.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from provision.errors import UsageError
from provision.gpuarch import parse_cc
from provision.snapshot import Snapshot
from provision.versions import is_driver_version, version_or_none

#: the distributions the matrix knows; "flashinfer" (0.1.x) is the old name of flashinfer-python
TRACKED = ("torch", "vllm", "flashinfer-python", "xformers", "llama-cpp-python")
_ALIASES = {"flashinfer": "flashinfer-python"}


@dataclass(frozen=True)
class GpuTarget:
    label: str
    compute_capability: str


@dataclass
class Target:
    driver: str | None = None
    gpus: list[GpuTarget] = field(default_factory=list)
    #: canonical distribution name → version text ("2.7.1+cu128")
    packages: dict[str, str] = field(default_factory=dict)
    #: canonical distribution name → the extras asked for (``--with "vllm[flashinfer]==0.10.2"``): a
    #: requirement under an extra applies only when it is asked for; a snapshot records none
    extras: dict[str, frozenset[str]] = field(default_factory=dict)
    #: torch/version.py's cuda from a snapshot ("12.8"): tells which build a plain "2.7.1" is
    torch_cuda: str | None = None
    #: a snapshot's torch has neither CUDA nor HIP in torch/version.py: a CPU-only build
    torch_cpu: bool = False
    #: llama-cpp-python's libraries link CUDA (from a snapshot; None: unknown, e.g. a --with version)
    llama_cpp_cuda: bool | None = None

    def cc_list(self) -> list[str]:
        return sorted({g.compute_capability for g in self.gpus}, key=parse_cc)


def parse_driver(text: str) -> str:
    value = text.strip()
    if not is_driver_version(value):
        raise UsageError(f"--driver {text!r} is not a driver version (e.g. 560.35.03 or 570)")
    return value


def parse_cc_option(text: str) -> str:
    try:
        major, minor = parse_cc(text)
    except ValueError:
        raise UsageError(f"--cc {text!r} is not a compute capability (MAJOR.MINOR, e.g. 8.9)") from None
    return f"{major}.{minor}"


def parse_package_spec(text: str) -> tuple[str, str, frozenset[str]]:
    """'vllm[flashinfer]==0.10.2' → ('vllm', '0.10.2', {'flashinfer'}). One exact version, or UsageError."""
    try:
        req = Requirement(text)
    except InvalidRequirement:
        raise UsageError(
            f"--with {text!r}: not a package spec (write NAME==VERSION, e.g. torch==2.7.1+cu128)"
        ) from None
    specs = list(req.specifier)
    if len(specs) != 1 or specs[0].operator not in ("==", "===") or "*" in specs[0].version:
        raise UsageError(f"--with {text!r}: give one exact version (NAME==VERSION), not a range")
    try:
        Version(specs[0].version)
    except InvalidVersion:
        raise UsageError(f"--with {text!r}: {specs[0].version!r} is not a version") from None
    if req.marker is not None or req.url:
        raise UsageError(f"--with {text!r}: give NAME[EXTRAS]==VERSION, without a marker or URL")
    name = canonicalize_name(req.name)
    extras = frozenset(str(canonicalize_name(e)) for e in req.extras)
    return _ALIASES.get(name, name), specs[0].version, extras


def target_from_snapshot(snap: Snapshot) -> Target:
    target = Target(driver=snap.driver.driver_version or snap.driver.kernel_module_version)
    for gpu in snap.gpus:
        if gpu.compute_capability:
            target.gpus.append(GpuTarget(f"gpu{gpu.index} {gpu.name}", gpu.compute_capability))
    for key, pkg in snap.python.packages.items():
        name = _ALIASES.get(key, key)
        if name in TRACKED:
            if version_or_none(pkg.version) is None:  # what --with refuses, a snapshot cannot bring in
                shown = pkg.version if len(pkg.version) <= 60 else pkg.version[:60] + "…"
                raise UsageError(f"the snapshot's {key} version {shown!r} is not a version (PEP 440): cannot check it")
            target.packages[name] = pkg.version
    target.torch_cuda = snap.python.torch_cuda
    target.llama_cpp_cuda = snap.python.llama_cpp_cuda
    torch = snap.python.packages.get("torch")
    target.torch_cpu = (
        torch is not None
        and torch.cuda_variant is None
        and snap.python.torch_cuda is None
        and snap.python.torch_hip is None
    )
    return target


def apply_overrides(
    target: Target,
    *,
    driver: str | None = None,
    gpu: str | None = None,
    cc: str | None = None,
    packages: list[str] | None = None,
) -> Target:
    """A copy of ``target`` with the what-if flags applied (flags win)."""
    from provision.gpus import lookup_gpu

    if gpu is not None and cc is not None:
        raise UsageError("--gpu and --cc both name the GPU: give one")
    out = Target(
        driver=target.driver,
        gpus=list(target.gpus),
        packages=dict(target.packages),
        extras=dict(target.extras),
        torch_cuda=target.torch_cuda,
        torch_cpu=target.torch_cpu,
        llama_cpp_cuda=target.llama_cpp_cuda,
    )
    if driver is not None:
        out.driver = parse_driver(driver)
    if gpu is not None:
        spec = lookup_gpu(gpu)
        if spec is None:
            raise UsageError(f"--gpu {gpu!r}: not a GPU gpuprov knows; give its compute capability with --cc")
        out.gpus = [GpuTarget(spec.name, spec.compute_capability)]
    if cc is not None:
        out.gpus = [GpuTarget("GPU", parse_cc_option(cc))]  # labels read "GPU (cc 8.9)"
    given: set[str] = set()
    for text in packages or []:
        name, version, extras = parse_package_spec(text)
        if name not in TRACKED:
            raise UsageError(f"--with {text!r}: the matrix does not track {name} (it knows {', '.join(TRACKED)})")
        if name in given:
            raise UsageError(f"--with names {name} twice: give one version")
        given.add(name)
        out.packages[name] = version
        out.extras[name] = extras
        if name == "torch":
            out.torch_cuda = None
            out.torch_cpu = False  # the snapshot's torch build no longer applies
        if name == "llama-cpp-python":
            out.llama_cpp_cuda = None  # nor its llama-cpp-python build
    return out
