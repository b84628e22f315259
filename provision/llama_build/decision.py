"""Deciding a llama-cpp-python build (pure): from a snapshot (GPUs, driver, CUDA toolkits), what was
gathered on the host (:class:`provision.llama_build.buildhost.BuildHost`) and the user's overrides: the
CUDA architectures, the nvcc, the host compiler and the CMake options of the version being built, or a
refusal with the reason.

Which toolkit compiles which architecture, the newest gcc each nvcc accepts as host compiler, and which
CMake flag each llama-cpp-python version wants, are facts in ``provision/data/compat.toml`` (``[nvcc]``
``archs`` and ``host_gcc``, ``[llama_cpp_build]``).
"""

from __future__ import annotations

import re
import sys
from dataclasses import replace
from functools import cache

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from provision.compat.matrix import load_matrix
from provision.errors import UsageError
from provision.gpuarch import cuda_arch, parse_cc
from provision.llama_build.buildhost import BuildHost, CompilerInfo, gather_build_host, host_compiler
from provision.llama_build.buildplan import PACKAGE, BuildError, BuildPlan
from provision.snapshot import CudaToolkit, Snapshot

#: a CPU build for any x86-64 instead of the build machine's instruction set (ggml's GGML_NATIVE)
PORTABLE_CMAKE_ARGS = ("-DGGML_NATIVE=off",)

#: one nvcc job compiling ggml's CUDA template instances peaks around 2.5 GiB; a C++ job around 1 GiB
#: (measured on llama.cpp's fattn-*.cu instances; the usual cause of OOM-killed parallel builds)
MIB_PER_JOB_CUDA = 2560
MIB_PER_JOB_CPU = 1024


def _v(text: str) -> Version:
    return Version(text)


def cuda_flag_for(version: str | None) -> str:
    """The CMake option that enables CUDA for this llama-cpp-python version (None: the newest)."""
    rows = load_matrix().llama_cpp_cuda_flags
    if version is None:
        return rows[0][1]
    v = _v(version)
    for versions, flag, _source in rows:
        if v in versions:
            return flag
    raise BuildError(f"no CUDA build flag known for {PACKAGE} {version}")  # pragma: no cover - ranges are total


def arch_limits(cc: str) -> tuple[Version, Version | None]:
    """(first, last) CUDA toolkit version that compiles for this compute capability."""
    limits = load_matrix().nvcc_archs.get(cc)
    if limits is not None:
        return limits[0], limits[1]
    raise BuildError(
        f"compute capability {cc} is not in gpuprov's nvcc table (provision/data/compat.toml [nvcc]): gpuprov does "
        "not know which CUDA toolkit compiles for it; build for a known architecture with --arch (e.g. --arch 89), "
        "or make a CPU build with --cpu"
    )


def nvcc_supports(cuda_version: str, cc: str) -> bool:
    lo, hi = arch_limits(cc)
    mine = _major_minor(cuda_version)
    return mine >= lo and (hi is None or mine <= hi)


def _major_minor(version: str) -> Version:
    v = _v(version)
    return Version(f"{v.major}.{v.minor}")


def parse_arch_option(values: list[str]) -> list[str]:
    """--arch 89 --arch 86,90 / 8.9 / sm_89 → ["86", "89", "90"]; bad values are a UsageError."""
    out: set[str] = set()
    for value in values:
        for item in re.split(r"[,;\s]+", value.strip()):
            if not item:
                continue
            raw = item.lower().removeprefix("sm_").removeprefix("compute_")
            try:
                if "." in raw:
                    cc = raw
                    parse_cc(cc)
                elif raw.isdigit() and len(raw) in (2, 3):
                    cc = f"{raw[:-1]}.{raw[-1]}"
                else:
                    raise ValueError
                arch_limits(cc)
            except (ValueError, BuildError):
                raise UsageError(
                    f"--arch {item!r}: not a CUDA architecture gpuprov knows (examples: 86, 89, 90, 120, or 8.9)"
                ) from None
            out.add(cuda_arch(cc))
    if not out:
        raise UsageError("--arch needs at least one architecture (e.g. --arch 89)")
    return sorted(out, key=int)


def _cc_of(arch: str) -> str:
    return f"{arch[:-1]}.{arch[-1]}"


def default_jobs(cores: int | None, mem_available_mib: int | None, *, cpu: bool) -> int:
    cores = max(1, cores or 1)
    if mem_available_mib is None:
        return cores
    per_job = MIB_PER_JOB_CPU if cpu else MIB_PER_JOB_CUDA
    return max(1, min(cores, mem_available_mib // per_job))


def rebound_jobs(plan: BuildPlan, cores: int | None, mem_available: int | None) -> BuildPlan:
    """``plan`` with -j lowered to what the cores and the memory available now allow (never raised): a plan
    made earlier, or from total memory, must not start more nvcc jobs than fit."""
    jobs = min(plan.jobs, default_jobs(cores, mem_available, cpu=plan.cpu))
    if jobs == plan.jobs:
        return plan
    note = f"-j {jobs} instead of {plan.jobs}: bounded by the {mem_available} MiB available now"
    return replace(
        plan, jobs=jobs, env={**plan.env, "CMAKE_BUILD_PARALLEL_LEVEL": str(jobs)}, notes=[*plan.notes, note]
    )


def _choose_nvcc(
    toolkits: list[CudaToolkit], archs: list[str], driver_cuda: str | None, host: BuildHost
) -> CudaToolkit:
    if host.nvcc_override_error:
        raise UsageError(host.nvcc_override_error)
    override = host.nvcc_override
    candidates = [override] if override is not None else [t for t in toolkits if t.version]
    if not candidates:
        raise BuildError(
            "no CUDA toolkit (nvcc) found on PATH, CUDA_HOME or /usr/local/cuda*: install one from your distribution "
            "(Debian/Ubuntu: apt install nvidia-cuda-toolkit, or NVIDIA's cuda-toolkit-12-x package) or set CUDA_HOME; "
            "or build without a GPU: --cpu"
        )
    reasons = []
    usable = []
    same_version: dict[str, list[str]] = {}
    for tk in candidates:
        if tk.version:
            same_version.setdefault(tk.version, []).append(tk.nvcc)
    for tk in candidates:
        assert tk.version is not None
        unsupported = [a for a in archs if not nvcc_supports(tk.version, _cc_of(a))]
        if unsupported:
            needs = []
            for a in unsupported:
                lo, hi = arch_limits(_cc_of(a))
                needs.append(f"sm_{a} (needs CUDA {lo}" + (f" to {hi})" if hi else " or newer)"))
            where = ", ".join(same_version[tk.version])
            reasons.append(f"nvcc {tk.version} ({where}) cannot build for {', '.join(needs)}")
            continue
        if driver_cuda and _major_minor(tk.version) > _major_minor(driver_cuda):
            where = ", ".join(same_version[tk.version])
            reasons.append(
                f"nvcc {tk.version} ({where}) is newer than the CUDA {driver_cuda} this driver supports: what it "
                f"builds would not run here (upgrade the driver, or install a toolkit no newer than {driver_cuda})"
            )
            continue
        usable.append(tk)
    if not usable:
        raise BuildError("; ".join(dict.fromkeys(reasons)))
    # newest first; among equals prefer a real toolkit directory (cuobjdump beside nvcc) over a wrapper script
    return max(
        usable,
        key=lambda t: (_v(t.version or "0"), *_traits(host, t.nvcc)),
    )


NO_COMPILER = "no C++ compiler found (CUDAHOSTCXX, CXX, g++ or c++ on PATH): install one (apt install g++)"


def _traits(host: BuildHost, nvcc: str) -> tuple[bool, bool]:
    """(cuobjdump beside it, not a wrapper script): a real toolkit directory sorts first."""
    beside, script = host.nvcc_traits.get(nvcc, (False, False))
    return beside, not script


@cache
def _host_gcc_rows() -> tuple[tuple[SpecifierSet, int, str], ...]:
    rows = load_matrix().data["nvcc"].get("host_gcc", [])
    return tuple((SpecifierSet(r["cuda"]), int(r["max_gcc"]), str(r["source"])) for r in rows)


def max_host_gcc(cuda_version: str) -> tuple[int, str] | None:
    """(newest gcc major this nvcc accepts, source), or None when compat.toml [nvcc] host_gcc does not say."""
    v = _v(cuda_version)
    return next(((gcc, source) for spec, gcc, source in _host_gcc_rows() if v in spec), None)


def _check_host_compiler(host: str | None, cuda_version: str, facts: BuildHost, notes: list[str]) -> str | None:
    """The CUDA host compiler to use: ``host`` when nvcc accepts it, else an older g++-N found on PATH;
    a BuildError when nvcc would refuse it and no other is there. Notes what could not be checked."""
    if host is None:
        notes.append(NO_COMPILER)
        return None
    environ = facts.environ
    info = facts.compiler_info(host)
    if info is None:
        notes.append(f"could not read the version of {host}: not checked against what nvcc {cuda_version} accepts")
        return host
    family, major = info
    if family != "gcc":
        notes.append(f"host compiler {host} is {family} {major}: only gcc is checked against what nvcc accepts")
        return host
    limit = max_host_gcc(cuda_version)
    if limit is None:
        notes.append(
            f"gpuprov does not know the newest gcc nvcc {cuda_version} accepts (compat.toml [nvcc] host_gcc): "
            f"if configure fails with 'unsupported GNU version', set CUDAHOSTCXX to an older g++"
        )
        return host
    newest, source = limit
    if major <= newest:
        return host
    why = f"{host} is gcc {major}, newer than nvcc {cuda_version} accepts (gcc <= {newest}; {source})"
    flags = environ.get("NVCC_APPEND_FLAGS", "") + " " + environ.get("NVCC_PREPEND_FLAGS", "")
    if "allow-unsupported-compiler" in flags:
        notes.append(f"{why}: building anyway, NVCC_APPEND_FLAGS/NVCC_PREPEND_FLAGS has -allow-unsupported-compiler")
        return host
    if not environ.get("CUDAHOSTCXX"):
        for n in range(newest, newest - 6, -1):
            alt = facts.which(f"g++-{n}")
            alt_info = facts.compiler_info(alt) if alt else None
            if alt and alt_info is not None and alt_info[0] == "gcc" and alt_info[1] <= newest:
                notes.append(f"{why}: using {alt} (gcc {alt_info[1]}) as the CUDA host compiler")
                return alt
    raise BuildError(
        f"the CUDA host compiler {why}: install g++-{newest} (Debian/Ubuntu: apt install g++-{newest}; gpuprov "
        f"then uses it) or set CUDAHOSTCXX to a g++ no newer than {newest}, or use a newer CUDA toolkit"
    )


def plan_build(
    snapshot: Snapshot,
    *,
    python: str,
    cpu: bool = False,
    archs: list[str] | None = None,
    nvcc: str | None = None,
    version: str | None = None,
    source: str | None = None,
    jobs: int | None = None,
    mem_available: int | None = None,
    environ: dict[str, str] | None = None,
    extra_cmake_args: list[str] | None = None,
    wheelhouse: str | None = None,
    compiler_info: CompilerInfo | None = None,
) -> BuildPlan:
    """Decide the build on this host: gather what it has (:func:`gather_build_host`: the host compiler from
    ``environ``'s CUDAHOSTCXX, CXX, PATH and its ``--version``; which version ``source`` is), then decide."""
    _check_versions(version, source)
    host = gather_build_host(
        snapshot,
        environ=environ,
        compiler_info=compiler_info,
        nvcc=None if cpu else nvcc,
        source=source,
        wheelhouse=wheelhouse,
    )
    return decide_build(
        snapshot,
        host,
        python=python,
        cpu=cpu,
        archs=archs,
        version=version,
        jobs=jobs,
        mem_available=mem_available,
        extra_cmake_args=extra_cmake_args,
    )


def _check_versions(version: str | None, source: str | None) -> None:
    if version is not None:
        try:
            Version(version)
        except InvalidVersion:
            raise UsageError(f"--version {version!r} is not a version (e.g. 0.3.16)") from None
    if source and version:
        raise UsageError("--source and --version do not go together: the source decides the version")


def decide_build(
    snapshot: Snapshot,
    host_facts: BuildHost,
    *,
    python: str,
    cpu: bool = False,
    archs: list[str] | None = None,
    version: str | None = None,
    jobs: int | None = None,
    mem_available: int | None = None,
    extra_cmake_args: list[str] | None = None,
) -> BuildPlan:
    """Decide the build from the snapshot and what was gathered on the host (no I/O)."""
    _check_versions(version, host_facts.source_path)
    if host_facts.source_path:
        if host_facts.source_error:
            raise UsageError(host_facts.source_error)
        version = host_facts.source_version
        spec = host_facts.source_path
    else:
        spec = f"{PACKAGE}=={version}" if version else PACKAGE
    notes: list[str] = []
    cmake_args: list[str] = []
    env: dict[str, str] = {}
    chosen: CudaToolkit | None = None
    cuda_flag = None

    if cpu:
        if archs:
            raise UsageError("--cpu and --arch do not go together")
        arch_list: list[str] = []
        arch_reason = "CPU build (--cpu)"
        # the same option, off: where LLAMA_CUDA is the switch, LLAMA_CUBLAS=off would leave it at its default
        cmake_args.append(cuda_flag_for(version).replace("=on", "=off"))
    else:
        if archs:
            arch_list = archs
            arch_reason = "--arch"
        else:
            if not snapshot.gpus:
                why = snapshot.driver.nvml.message or "no GPU"
                raise BuildError(
                    f"no NVIDIA GPU detected ({why}): build for a GPU that is not here with --arch (e.g. --arch 89), "
                    "or make a CPU build with --cpu"
                )
            ccs: dict[str, list[str]] = {}  # sm arch -> the GPUs that have it
            for g in snapshot.gpus:
                if g.compute_capability is None:
                    raise BuildError(f"GPU {g.index} ({g.name}) did not report its compute capability: pass --arch")
                ccs.setdefault(cuda_arch(g.compute_capability), []).append(f"GPU {g.index} {g.name}")
            arch_list = sorted(ccs, key=int)
            arch_reason = "detected: " + "; ".join(f"sm_{a} for {', '.join(n)}" for a, n in sorted(ccs.items()))
        chosen = _choose_nvcc(snapshot.cuda_toolkits, arch_list, snapshot.driver.cuda_driver_version, host_facts)
        cuda_flag = cuda_flag_for(version)
        cmake_args += [cuda_flag, f"-DCMAKE_CUDA_ARCHITECTURES={';'.join(arch_list)}"]
        env["CUDACXX"] = chosen.nvcc
        if len(snapshot.cuda_toolkits) > 1:
            others = ", ".join(f"{t.version} ({t.nvcc})" for t in snapshot.cuda_toolkits if t is not chosen)
            notes.append(f"using nvcc {chosen.version} ({chosen.nvcc}); also found {others}")
    if extra_cmake_args:
        cmake_args += extra_cmake_args
    host = host_compiler(host_facts.environ, host_facts.which)
    if chosen is not None:
        assert chosen.version is not None
        host = _check_host_compiler(host, chosen.version, host_facts, notes)
        if host:
            env["CUDAHOSTCXX"] = host
    elif host is None:
        notes.append(NO_COMPILER)
    n_jobs = jobs or default_jobs(snapshot.host.cpu_cores, mem_available, cpu=cpu)
    if jobs is None and snapshot.host.cpu_cores and n_jobs < snapshot.host.cpu_cores:
        notes.append(f"-j {n_jobs} of {snapshot.host.cpu_cores} cores: bounded by available memory")
    env = {"CMAKE_ARGS": " ".join(cmake_args), **env, "CMAKE_BUILD_PARALLEL_LEVEL": str(n_jobs)}
    command = [
        "uv",
        "pip",
        "install",
        "--python",
        python,
        "--no-binary",
        PACKAGE,
        "--reinstall-package",
        PACKAGE,
        "--no-cache",
        "--verbose",
    ]
    if host_facts.wheelhouse:  # hosts without an index: build dependencies and numpy come from a folder
        command += ["--offline", "--find-links", str(host_facts.wheelhouse)]
    command.append(spec)
    return BuildPlan(
        spec=spec,
        version=version,
        cpu=cpu,
        archs=arch_list,
        arch_reason=arch_reason,
        nvcc=chosen.nvcc if chosen else None,
        cuda_version=chosen.version if chosen else None,
        cuda_flag=cuda_flag,
        host_compiler=host,
        cmake_args=cmake_args,
        env=env,
        jobs=n_jobs,
        python=python,
        command=command,
        notes=notes,
    )


def current_python() -> str:
    return sys.executable
