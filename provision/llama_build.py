"""llama-cpp-python compiled for the GPUs that are actually here, then verified.

:func:`plan_build` is pure: from a snapshot (GPUs, driver, CUDA toolkits) and the user's overrides it
decides the CUDA architectures, the nvcc, the host compiler and the CMake options of the version being
built — or refuses with the reason. :func:`run_build` runs exactly the command the plan prints
(``--dry-run`` shows it), logging everything to a file; :func:`verify_build` checks the result: CUDA
linked, the requested kernels present (cuobjdump), ``llama_supports_gpu_offload()``, and optionally one
real completion.

Which toolkit compiles which architecture, the newest gcc each nvcc accepts as host compiler, and which
CMake flag each llama-cpp-python version wants, are facts in ``provision/data/compat.toml`` (``[nvcc]``
``archs`` and ``host_gcc``, ``[llama_cpp_build]``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from provision.compat.matrix import load_matrix
from provision.errors import GpuprovError, UsageError
from provision.gpuarch import cuda_arch, parse_cc
from provision.snapshot import CudaToolkit, Snapshot

PACKAGE = "llama-cpp-python"
#: one nvcc job compiling ggml's CUDA template instances peaks around 2.5 GiB; a C++ job around 1 GiB
#: (measured on llama.cpp's fattn-*.cu instances; the usual cause of OOM-killed parallel builds)
MIB_PER_JOB_CUDA = 2560
MIB_PER_JOB_CPU = 1024


class BuildError(GpuprovError):
    """The build cannot be planned or failed: the message says why and what to do."""


@dataclass
class BuildPlan:
    spec: str
    version: str | None
    cpu: bool
    archs: list[str]
    arch_reason: str
    nvcc: str | None
    cuda_version: str | None
    cuda_flag: str | None
    host_compiler: str | None
    cmake_args: list[str]
    env: dict[str, str]
    jobs: int
    python: str
    command: list[str]
    notes: list[str] = field(default_factory=list)

    def shell(self) -> str:
        """The plan as one copyable shell line."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        return f"{env} {shlex.join(self.command)}".strip()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shell"] = self.shell()
        return d


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
    return replace(plan, jobs=jobs, env={**plan.env, "CMAKE_BUILD_PARALLEL_LEVEL": str(jobs)},
                   notes=[*plan.notes, note])  # fmt: skip


def mem_available_mib(root: Path = Path("/")) -> int | None:
    try:
        for line in (root / "proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _same_file(a: str | Path, b: str | Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def override_toolkit(toolkits: list[CudaToolkit], nvcc: str) -> CudaToolkit:
    """The toolkit of ``--nvcc PATH``: one the scan found (through any symlink to it), else any executable
    nvcc whose version can be read (version.json beside it, or ``nvcc --version``)."""
    from provision.toolkits import nvcc_version

    path = Path(nvcc).expanduser()
    found = next((t for t in toolkits if t.nvcc == nvcc or _same_file(t.nvcc, path)), None)
    if found is not None and found.version:
        return found
    if not path.is_file() or not os.access(path, os.X_OK):
        known = ", ".join(t.nvcc for t in toolkits) or "none"
        raise UsageError(f"--nvcc {nvcc}: no such executable file (nvcc found by the scan: {known})")
    version = nvcc_version(path)
    if version is None:
        raise UsageError(
            f"--nvcc {nvcc}: cannot read its CUDA version (no version.json beside it, and `{path} --version` "
            "printed no 'release X.Y'): is it an nvcc?"
        )
    return CudaToolkit(nvcc=str(path.absolute()), version=version, found_via=["--nvcc"])


def _choose_nvcc(
    toolkits: list[CudaToolkit], archs: list[str], driver_cuda: str | None, nvcc_override: str | None
) -> CudaToolkit:
    candidates = [override_toolkit(toolkits, nvcc_override)] if nvcc_override else [t for t in toolkits if t.version]
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
        key=lambda t: (_v(t.version or "0"), Path(t.nvcc).with_name("cuobjdump").exists(), not _is_script(t.nvcc)),
    )


def _is_script(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(2) == b"#!"
    except OSError:
        return False


NO_COMPILER = "no C++ compiler found (CUDAHOSTCXX, CXX, g++ or c++ on PATH): install one (apt install g++)"


def _host_compiler(environ: dict[str, str]) -> str | None:
    if environ.get("CUDAHOSTCXX"):
        return environ["CUDAHOSTCXX"]
    path = environ.get("PATH")
    return environ.get("CXX") or shutil.which("g++", path=path) or shutil.which("c++", path=path)


#: (compiler family "gcc" or "clang", major version) of a C++ compiler, or None when it cannot be told
CompilerInfo = Callable[[str], "tuple[str, int] | None"]


def host_compiler_info(compiler: str) -> tuple[str, int] | None:
    """``g++ --version``'s first line → ("gcc", 12); clang → ("clang", 18); None when it does not answer."""
    try:
        out = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_compiler_version(out.stdout)


def parse_compiler_version(text: str) -> tuple[str, int] | None:
    first = text.strip().splitlines()[0] if text.strip() else ""
    if "clang" in first:
        m = re.search(r"clang version (\d+)\.", first)
        return ("clang", int(m.group(1))) if m else None
    versions = re.findall(r"(?<![\d.])(\d+)\.(\d+)(?:\.\d+)?(?![\d.])", first)
    return ("gcc", int(versions[-1][0])) if versions and ("g++" in first or "gcc" in first or "GCC" in first) else None


@cache
def _host_gcc_rows() -> tuple[tuple[SpecifierSet, int, str], ...]:
    rows = load_matrix().data["nvcc"].get("host_gcc", [])
    return tuple((SpecifierSet(r["cuda"]), int(r["max_gcc"]), str(r["source"])) for r in rows)


def max_host_gcc(cuda_version: str) -> tuple[int, str] | None:
    """(newest gcc major this nvcc accepts, source), or None when compat.toml [nvcc] host_gcc does not say."""
    v = _v(cuda_version)
    return next(((gcc, source) for spec, gcc, source in _host_gcc_rows() if v in spec), None)


def _check_host_compiler(
    host: str | None, cuda_version: str, environ: dict[str, str], compiler_info: CompilerInfo, notes: list[str]
) -> str | None:
    """The CUDA host compiler to use: ``host`` when nvcc accepts it, else an older g++-N found on PATH;
    a BuildError when nvcc would refuse it and no other is there. Notes what could not be checked."""
    if host is None:
        notes.append(NO_COMPILER)
        return None
    info = compiler_info(host)
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
            alt = shutil.which(f"g++-{n}", path=environ.get("PATH"))
            alt_info = compiler_info(alt) if alt else None
            if alt and alt_info is not None and alt_info[0] == "gcc" and alt_info[1] <= newest:
                notes.append(f"{why}: using {alt} (gcc {alt_info[1]}) as the CUDA host compiler")
                return alt
    raise BuildError(
        f"the CUDA host compiler {why}: install g++-{newest} (Debian/Ubuntu: apt install g++-{newest}; gpuprov "
        f"then uses it) or set CUDAHOSTCXX to a g++ no newer than {newest}, or use a newer CUDA toolkit"
    )


# -- the source being built --------------------------------------------------------------------------

_SDIST_NAME = re.compile(r"llama[_-]cpp[_-]python-(\d+\.\d+\.\d+)")
_SDIST_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")


def _pkg_info_fields(text: str) -> tuple[str | None, str | None]:
    """(Name, Version) from PKG-INFO / METADATA headers."""
    name = version = None
    for line in text.splitlines():
        if not line.strip():
            break  # the headers end at the first blank line
        key, _, value = line.partition(":")
        if key == "Name":
            name = value.strip()
        elif key == "Version":
            version = value.strip()
    return name, version


def _sdist_pkg_info(path: Path) -> str | None:
    """The top-level PKG-INFO of an sdist archive (None: none there); UsageError when it is no archive."""
    try:
        if path.name.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                member = next((n for n in zf.namelist() if re.fullmatch(r"[^/]+/PKG-INFO", n)), None)
                return zf.read(member).decode("utf-8", "replace") if member else None
        with tarfile.open(path, "r:*") as tf:
            for member in tf:
                if member.isfile() and re.fullmatch(r"[^/]+/PKG-INFO", member.name):
                    fh = tf.extractfile(member)
                    return fh.read().decode("utf-8", "replace") if fh else None
    except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise UsageError(f"--source {path}: not a readable sdist archive ({exc})") from None
    return None


def _dir_name_version(path: Path) -> tuple[str | None, str | None]:
    """(name, version) of a source directory: its PKG-INFO (an unpacked sdist), else pyproject.toml's
    [project] and, for a dynamic version, llama_cpp/__init__.py's ``__version__`` (what scikit-build-core reads)."""
    import tomllib

    pkg_info = path / "PKG-INFO"
    if pkg_info.is_file():
        return _pkg_info_fields(pkg_info.read_text(encoding="utf-8", errors="replace"))
    try:
        project = tomllib.loads((path / "pyproject.toml").read_text(encoding="utf-8")).get("project", {})
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        project = {}
    name = project.get("name") if isinstance(project.get("name"), str) else None
    version = project.get("version") if isinstance(project.get("version"), str) else None
    if version is None:
        try:
            init = (path / "llama_cpp" / "__init__.py").read_text(encoding="utf-8", errors="replace")
        except OSError:
            init = ""
        m = re.search(r"^__version__\s*=\s*[\"']([^\"']+)[\"']", init, re.M)
        version = m.group(1) if m else None
    return name, version


def source_version(source: str) -> str | None:
    """The llama-cpp-python version of ``--source`` (an sdist or a source directory); None when it does not
    say. A UsageError for anything else, or for another package's source."""
    path = Path(source)
    if path.is_dir():
        if not (path / "pyproject.toml").is_file() and not (path / "setup.py").is_file():
            raise UsageError(f"--source {source}: a directory without pyproject.toml or setup.py is no source tree")
        name, version = _dir_name_version(path)
    elif path.is_file():
        if not path.name.endswith(_SDIST_SUFFIXES):
            raise UsageError(
                f"--source {source}: neither an sdist ({', '.join(_SDIST_SUFFIXES)}) nor a source directory"
            )
        m = _SDIST_NAME.search(path.name)
        if m:
            return m.group(1)
        text = _sdist_pkg_info(path)
        name, version = _pkg_info_fields(text) if text else (None, None)
    else:
        raise UsageError(f"--source {source}: no such file or directory")
    if name and canonicalize_name(name) != PACKAGE:
        raise UsageError(f"--source {source}: that is the source of {name}, not {PACKAGE}")
    try:
        return str(Version(version)) if version else None
    except InvalidVersion:
        return None


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
    compiler_info: CompilerInfo = host_compiler_info,
) -> BuildPlan:
    """Decide the build. Pure apart from looking at the host compiler (``environ``'s CUDAHOSTCXX, CXX, PATH;
    its ``--version``) and, for ``source``, reading which version that source is."""
    environ = dict(os.environ if environ is None else environ)
    if version is not None:
        try:
            Version(version)
        except InvalidVersion:
            raise UsageError(f"--version {version!r} is not a version (e.g. 0.3.16)") from None
    if source and version:
        raise UsageError("--source and --version do not go together: the source decides the version")
    if source:
        version = source_version(source)
        spec = str(Path(source).resolve())
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
            ccs = {}
            for g in snapshot.gpus:
                if g.compute_capability is None:
                    raise BuildError(f"GPU {g.index} ({g.name}) did not report its compute capability: pass --arch")
                ccs.setdefault(cuda_arch(g.compute_capability), []).append(f"GPU {g.index} {g.name}")
            arch_list = sorted(ccs, key=int)
            arch_reason = "detected: " + "; ".join(f"sm_{a} for {', '.join(n)}" for a, n in sorted(ccs.items()))
        chosen = _choose_nvcc(snapshot.cuda_toolkits, arch_list, snapshot.driver.cuda_driver_version, nvcc)
        cuda_flag = cuda_flag_for(version)
        cmake_args += [cuda_flag, f"-DCMAKE_CUDA_ARCHITECTURES={';'.join(arch_list)}"]
        env["CUDACXX"] = chosen.nvcc
        if len(snapshot.cuda_toolkits) > 1:
            others = ", ".join(f"{t.version} ({t.nvcc})" for t in snapshot.cuda_toolkits if t is not chosen)
            notes.append(f"using nvcc {chosen.version} ({chosen.nvcc}); also found {others}")
    if extra_cmake_args:
        cmake_args += extra_cmake_args
    host = _host_compiler(environ)
    if chosen is not None:
        assert chosen.version is not None
        host = _check_host_compiler(host, chosen.version, environ, compiler_info, notes)
        if host:
            env["CUDAHOSTCXX"] = host
    elif host is None:
        notes.append(NO_COMPILER)
    n_jobs = jobs or default_jobs(snapshot.host.cpu_cores, mem_available, cpu=cpu)
    if jobs is None and snapshot.host.cpu_cores and n_jobs < snapshot.host.cpu_cores:
        notes.append(f"-j {n_jobs} of {snapshot.host.cpu_cores} cores: bounded by available memory")
    env = {"CMAKE_ARGS": " ".join(cmake_args), **env, "CMAKE_BUILD_PARALLEL_LEVEL": str(n_jobs)}
    command = [
        "uv", "pip", "install", "--python", python, "--no-binary", PACKAGE, "--reinstall-package", PACKAGE,
        "--no-cache", "--verbose",
    ]  # fmt: skip
    if wheelhouse:  # hosts without an index: build dependencies and numpy come from a folder
        command += ["--offline", "--find-links", str(Path(wheelhouse).resolve())]
    command.append(spec)
    return BuildPlan(
        spec=spec, version=version, cpu=cpu, archs=arch_list, arch_reason=arch_reason,
        nvcc=chosen.nvcc if chosen else None, cuda_version=chosen.version if chosen else None,
        cuda_flag=cuda_flag, host_compiler=host, cmake_args=cmake_args, env=env, jobs=n_jobs, python=python,
        command=command, notes=notes,
    )  # fmt: skip


# -- running ---------------------------------------------------------------------------------------

_PROGRESS = re.compile(r"\[(\d+)/(\d+)\]")
_ERROR_LINE = re.compile(
    r"(CMake Error|error:|Error:|fatal error|nvcc fatal|FAILED:|ninja: build stopped|No such file|not found|"
    r"unsupported gpu architecture|killed|Killed)",
)
#: lines that match the above but are advice, not the failure (llama.cpp prints the ccache one on every build)
_NOISE_LINE = re.compile(r"ccache not found|Git repository not found|(?i:\bwarning\b)(?!.*\berror\b)")


@dataclass
class BuildResult:
    ok: bool
    returncode: int
    duration_s: float
    log_path: str
    #: the step that failed (configure, compile, link, install) and its most telling lines
    failed_step: str | None = None
    error_lines: list[str] = field(default_factory=list)


def uv_command() -> list[str]:
    """uv from the environment gpuprov runs in (the `uv` package), else from PATH."""
    try:
        from uv import find_uv_bin

        return [find_uv_bin()]
    except (ImportError, FileNotFoundError):
        exe = shutil.which("uv")
        if exe:
            return [exe]
    raise BuildError("uv not found: install it (pip install uv)")


def summarize_failure(lines: list[str]) -> tuple[str, list[str]]:
    """From a build log: which step failed and its last meaningful error lines (not the whole log).

    A CMake error's message body (its next indented lines, e.g. the missing target) comes with it."""
    step = "install"
    text = "\n".join(lines)
    if "CMake Error" in text or "Configuring incomplete" in text:
        step = "configure (cmake)"
    elif "FAILED:" in text or "ninja: build stopped" in text:
        step = "compile/link"
    elif "No solution found" in text or "Failed to fetch" in text or "error: Failed to download" in text:
        step = "download"
    cleaned = [re.sub(r"^DEBUG ?", "", ln.rstrip()) for ln in lines]
    picked: list[str] = []
    for i, ln in enumerate(cleaned):
        if not _ERROR_LINE.search(ln) or _NOISE_LINE.search(ln):
            continue
        picked.append(ln.strip())
        if "CMake Error" in ln:
            body: list[str] = []
            for nxt in cleaned[i + 1 : i + 12]:
                if nxt.strip() and not nxt[:1].isspace():
                    break
                if nxt.strip():
                    body.append(nxt.strip())
                if len(body) == 3:
                    break
            picked += body
    seen: list[str] = []
    for ln in picked:
        short = ln[:300]
        if short not in seen:
            seen.append(short)
    return step, seen[-8:]


def check_log_path(log_path: Path) -> None:
    """UsageError (exit 2) when the build log cannot be written there; looks, creates nothing."""
    if log_path.is_dir():
        raise UsageError(f"cannot write the build log {log_path}: it is a directory (give a file name)")
    parent = log_path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"cannot write the build log {log_path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write the build log {log_path}: {parent} is not writable")


def run_build(
    plan: BuildPlan, log_path: Path, *, on_progress: Callable[[int, int, str], None] | None = None
) -> BuildResult:
    cmd = uv_command() + plan.command[1:]
    env = {**os.environ, **plan.env}
    check_log_path(log_path)
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise UsageError(f"cannot write the build log {log_path}: {exc.strerror or exc}") from None
    start = time.monotonic()
    tail: list[str] = []
    with log:
        log.write(f"# {plan.shell()}\n")
        log.flush()
        try:
            proc = subprocess.Popen(
                cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
            )
        except OSError as exc:
            raise BuildError(f"cannot start {cmd[0]}: {exc}") from None
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            tail.append(line.rstrip("\n"))
            if len(tail) > 4000:
                del tail[:2000]
            m = _PROGRESS.search(line)
            if m and on_progress:
                on_progress(int(m.group(1)), int(m.group(2)), line)
        rc = proc.wait()
    duration = time.monotonic() - start
    if rc == 0:
        return BuildResult(True, 0, duration, str(log_path))
    step, lines = summarize_failure(tail)
    return BuildResult(False, rc, duration, str(log_path), step, lines)


# -- verification ----------------------------------------------------------------------------------

_INSPECT = r"""
import importlib.util, json, sys
spec = importlib.util.find_spec("llama_cpp")
out = {"package_dir": None, "libs": []}
if spec and spec.submodule_search_locations:
    import os
    pkg = list(spec.submodule_search_locations)[0]
    out["package_dir"] = pkg
    lib = os.path.join(pkg, "lib")
    if os.path.isdir(lib):
        out["libs"] = sorted(os.path.join(lib, n) for n in os.listdir(lib) if ".so" in n)
print(json.dumps(out))
"""

_OFFLOAD = "import llama_cpp, json; print(json.dumps(bool(llama_cpp.llama_supports_gpu_offload())))"

_COMPLETE = r"""
import json, sys, time
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], n_ctx=256, n_gpu_layers=int(sys.argv[2]), verbose=False, seed=1)
t = time.monotonic()
out = llm("The capital of France is", max_tokens=8, temperature=0.0)
print(json.dumps({"text": out["choices"][0]["text"], "tokens": out["usage"]["completion_tokens"],
                  "seconds": time.monotonic() - t}))
"""


@dataclass
class Check:
    name: str
    ok: bool | None  # None: could not be checked here
    detail: str


def _run_json(python: str, code: str, *args: str, timeout: int = 300) -> tuple[Any, str]:
    try:
        proc = subprocess.run([python, "-c", code, *args], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, str(exc)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        if proc.returncode < 0:  # killed by a signal: llama.cpp's last log line would hide the crash
            name = _signal_name(-proc.returncode)
            hint = (
                " (an instruction this CPU or VM does not allow: rebuild with --portable)"
                if name in ("SIGILL", "SIGSEGV")
                else ""
            )
            return None, f"crashed with {name}{hint}" + (f"; last output: {lines[-1]}" if lines else "")
        return None, lines[-1] if lines else f"exit code {proc.returncode}"
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1]), ""
    except (ValueError, IndexError):
        return None, "no JSON answer"


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


#: a CPU build for any x86-64 instead of the build machine's instruction set (ggml's GGML_NATIVE)
PORTABLE_CMAKE_ARGS = ("-DGGML_NATIVE=off",)

_CUDA_LIBS = ("libcudart", "libcublas", "libcuda.so")


#: one embedded file in `cuobjdump --list-elf` / `--list-ptx` output, e.g.
#: "ELF file    1: tmpxft_000515aa_00000000-0.sm_86.cubin" or "PTX file    2: ggml-cuda.sm_120a.ptx";
#: the arch-specific (a) and family (f) variants of sm_90/sm_100/sm_120 count as that architecture
_EMBEDDED = re.compile(r"^(?:ELF|PTX) file\s+\d+:\s*\S*?\.sm_(\d+)[af]?\.(?:cubin|ptx)\s*$", re.M)


def parse_cuobjdump_list(text: str) -> set[str]:
    """The architectures ("86", "120") of the files a `cuobjdump --list-elf` or `--list-ptx` listing names."""
    return set(_EMBEDDED.findall(text))


def list_cubin_archs(cuobjdump: str, lib: str) -> tuple[set[str], set[str]]:
    """(SASS archs, PTX archs) in a library, e.g. ({"89"}, set()), from `cuobjdump --list-elf/--list-ptx`.
    A BuildError when cuobjdump cannot be run or fails (its last line says why)."""
    found: list[set[str]] = []
    for flag in ("--list-elf", "--list-ptx"):
        try:
            proc = subprocess.run([cuobjdump, flag, lib], capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.SubprocessError) as exc:
            raise BuildError(f"{cuobjdump} {flag}: {exc}") from None
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
            raise BuildError(f"{cuobjdump} {flag} {lib}: " + (lines[-1] if lines else f"exit code {proc.returncode}"))
        found.append(parse_cuobjdump_list(proc.stdout))
    return found[0], found[1]


def _cuobjdump_for(nvcc: str | None) -> str | None:
    """The cuobjdump of that nvcc's toolkit: beside it, beside the file it links to, else on PATH."""
    if not nvcc:
        return None
    for candidate in (Path(nvcc).with_name("cuobjdump"), Path(os.path.realpath(nvcc)).with_name("cuobjdump")):
        if candidate.is_file():
            return str(candidate)
    return shutil.which("cuobjdump")


def verify_build(plan: BuildPlan, *, smoke_model: str | None = None) -> list[Check]:
    from provision.elf import ElfError, needed_libraries_of

    checks: list[Check] = []
    info, err = _run_json(plan.python, _INSPECT)
    if not info or not info.get("package_dir"):
        return [Check("installed", False, f"llama_cpp is not importable from {plan.python}: {err or 'not found'}")]
    libs = info["libs"]
    checks.append(Check("installed", True, f"{info['package_dir']} ({len(libs)} shared libraries)"))
    linked: dict[str, list[str]] = {}
    for lib in libs:
        try:
            linked[lib] = needed_libraries_of(lib)
        except ElfError as exc:
            linked[lib] = []
            checks.append(Check("linkage", False, str(exc)))
    cuda_libs = sorted({n for names in linked.values() for n in names if n.startswith(_CUDA_LIBS)})
    if plan.cpu:
        checks.append(Check("no CUDA linkage (CPU build)", not cuda_libs, ", ".join(cuda_libs) or "none linked"))
    else:
        checks.append(Check("linked against CUDA", bool(cuda_libs), ", ".join(cuda_libs) or "no CUDA library linked"))
        cuda_lib = next((lib for lib in libs if Path(lib).name.startswith("libggml-cuda")), None)
        cuobjdump = _cuobjdump_for(plan.nvcc)
        name = "kernels for " + ",".join(f"sm_{a}" for a in plan.archs)
        if cuda_lib is None:
            checks.append(Check(name, False, "no libggml-cuda library installed"))
        elif cuobjdump is None:
            checks.append(Check(name, None, "cuobjdump not available: not checked"))
        else:
            try:
                sass, ptx = list_cubin_archs(cuobjdump, cuda_lib)
            except BuildError as exc:
                checks.append(Check(name, None, f"not checked: {exc}"))
            else:
                missing = [a for a in plan.archs if a not in sass and a not in ptx]
                extra = sorted((sass | ptx) - set(plan.archs), key=int)
                detail = f"SASS {sorted(sass, key=int)}, PTX {sorted(ptx, key=int)}"
                if missing:
                    detail += f"; missing {', '.join('sm_' + a for a in missing)}"
                if extra:
                    detail += f"; also {extra}"
                checks.append(Check(name, not missing, detail))
    offload, err = _run_json(plan.python, _OFFLOAD)
    if offload is None:
        checks.append(Check("llama_supports_gpu_offload()", False, f"import failed: {err}"))
    else:
        expect = not plan.cpu
        checks.append(Check("llama_supports_gpu_offload()", offload == expect, f"{offload} (expected {expect})"))
    if smoke_model:
        layers = "0" if plan.cpu else "-1"
        done, err = _run_json(plan.python, _COMPLETE, smoke_model, layers, timeout=600)
        if done is None:
            checks.append(Check("one completion", False, err))
        else:
            checks.append(
                Check(
                    "one completion",
                    done["tokens"] > 0,
                    f"{done['tokens']} tokens in {done['seconds']:.2f} s: {done['text'].strip()[:60]!r}",
                )
            )
    return checks


def default_log_path() -> Path:
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local/state") / "gpuprov" / "builds"
    return base / f"llama-cpp-{time.strftime('%Y%m%d-%H%M%S')}.log"


def current_python() -> str:
    return sys.executable


# -- what is installed, and the profile section -----------------------------------------------------

#: written next to the libraries after a verified build: what gpuprov built there, so a second apply
#: knows the build is already as asked (kernels cannot be listed without cuobjdump)
MARKER = "gpuprov-build.json"


def installed_build(python: str) -> dict[str, Any] | None:
    """What gpuprov recorded about the llama-cpp-python in ``python``'s environment (None: nothing)."""
    info, _ = _run_json(python, _INSPECT)
    if not info or not info.get("package_dir"):
        return None
    marker = Path(info["package_dir"]) / "lib" / MARKER
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"recorded": False}
    return {"recorded": True, **data} if isinstance(data, dict) else {"recorded": False}


def record_build(plan: BuildPlan, result: BuildResult) -> None:
    info, _ = _run_json(plan.python, _INSPECT)
    if not info or not info.get("package_dir"):
        return
    lib = Path(info["package_dir"]) / "lib"
    lib.mkdir(exist_ok=True)
    record = {
        "version": plan.version,
        "cpu": plan.cpu,
        "archs": plan.archs,
        "cuda_version": plan.cuda_version,
        "cmake_args": plan.cmake_args,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "duration_s": round(result.duration_s, 1),
    }
    (lib / MARKER).write_text(json.dumps(record, indent=2), encoding="utf-8")


def build_matches(installed: dict[str, Any] | None, plan: BuildPlan) -> tuple[bool, str]:
    """Is what is installed what ``plan`` would build? (answer, reason shown in plan/apply)."""
    if installed is None:
        return False, "llama-cpp-python is not installed there"
    if not installed.get("recorded"):
        return False, "installed, but not built by gpuprov (unknown architectures)"
    if plan.version and installed.get("version") != plan.version:
        return False, f"version {installed.get('version') or '?'} installed, {plan.version} asked"
    if bool(installed.get("cpu")) != plan.cpu:
        return False, "a " + ("CUDA" if plan.cpu else "CPU") + " build is installed"
    if sorted(installed.get("archs") or []) != sorted(plan.archs):
        have = ", ".join("sm_" + a for a in installed.get("archs") or []) or "none"
        return False, f"built for {have}, needed {', '.join('sm_' + a for a in plan.archs) or 'CPU'}"
    return True, "already built as asked"


@dataclass(frozen=True)
class LlamaCppSection:
    """Profile section ``llama_cpp:``: build llama-cpp-python for this host's GPUs during apply."""

    build: bool
    #: None: the interpreter gpuprov runs with (:func:`current_python`, the ``host.python`` of a plan)
    python: str | None
    version: str | None
    archs: tuple[str, ...] | None  # None: auto (the detected GPUs)
    cpu: bool
    source: str | None
    wheelhouse: str | None


_SECTION_KEYS = ("build", "python", "version", "arch", "cpu", "source", "wheelhouse")


def _parse_section(value: Any, where: Any) -> LlamaCppSection:
    from provision.profiles.schema import _bool, _mapping, _text

    data = _mapping(value, where, _SECTION_KEYS)
    build = _bool(data["build"], where["build"]) if data.get("build") is not None else False
    python = (
        _text(data["python"], where["python"], "the path of the Python interpreter to build into")
        if data.get("python")
        else None
    )
    if python is not None and not python.startswith("/"):
        raise where["python"].error(f"expected an absolute path, got {python!r}")
    version = None
    if data.get("version") is not None:
        version = _text(str(data["version"]), where["version"], "a version")
        try:
            Version(version)
        except InvalidVersion:
            raise where["version"].error(f"expected a version like 0.3.16, got {version!r}") from None
    archs = None
    arch = data.get("arch", "auto")
    if arch not in (None, "auto"):
        values = [str(a) for a in arch] if isinstance(arch, list) else [str(arch)]
        try:
            archs = tuple(parse_arch_option(values))
        except UsageError:
            raise where["arch"].error(f"expected auto or CUDA architectures like [89, 86], got {arch!r}") from None
    cpu = _bool(data["cpu"], where["cpu"]) if data.get("cpu") is not None else False
    if cpu and archs:
        raise where["cpu"].error("cpu: true and arch do not go together")
    source = _text(data["source"], where["source"], "a path") if data.get("source") else None
    wheelhouse = _text(data["wheelhouse"], where["wheelhouse"], "a directory") if data.get("wheelhouse") else None
    return LlamaCppSection(build, python, version, archs, cpu, source, wheelhouse)


def _section_dict(s: LlamaCppSection) -> dict[str, Any]:
    out: dict[str, Any] = {"build": s.build}
    if s.python:
        out["python"] = s.python
    if s.version:
        out["version"] = s.version
    out["arch"] = list(s.archs) if s.archs else "auto"
    if s.cpu:
        out["cpu"] = True
    if s.source:
        out["source"] = s.source
    if s.wheelhouse:
        out["wheelhouse"] = s.wheelhouse
    return out


def plan_from_section(snapshot: Snapshot, section: LlamaCppSection, *, mem_available: int | None) -> BuildPlan:
    """The build a profile asks for on this host: the same planner as `gpuprov build llama-cpp`.

    ``mem_available`` bounds -j as planned; the build itself re-bounds it by the memory available when it
    starts (:func:`rebound_jobs`, in the gpuprov_llama_build module)."""
    return plan_build(
        snapshot, python=section.python or current_python(), cpu=section.cpu,
        archs=list(section.archs) if section.archs else None,
        version=section.version, source=section.source, wheelhouse=section.wheelhouse, mem_available=mem_available,
    )  # fmt: skip


def _register_section() -> None:
    from provision.profiles.schema import SECTIONS, SectionType, register_section

    if "llama_cpp" not in SECTIONS:
        register_section("llama_cpp", SectionType(_parse_section, _section_dict))


_register_section()


def profile_build_python(profile: Any) -> str | None:
    """The interpreter a profile's ``llama_cpp`` section builds into (None: the profile builds nothing)."""
    section = profile.sections.get("llama_cpp")
    if section is None or not section.build:
        return None
    return section.python or current_python()
