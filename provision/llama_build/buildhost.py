"""What deciding a llama-cpp-python build looks at on the host, gathered in one step before deciding:
compilers on PATH and their ``--version``, traits of each nvcc (cuobjdump beside it, a wrapper script),
``--nvcc``'s toolkit, the version of ``--source``, available memory."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from provision.errors import GpuprovError, UsageError
from provision.llama_build.source import source_version
from provision.snapshot import CudaToolkit, Snapshot

#: the environment variables deciding a build reads
BUILD_ENVIRON = ("CUDAHOSTCXX", "CXX", "PATH", "NVCC_APPEND_FLAGS", "NVCC_PREPEND_FLAGS")
#: the versioned g++ names looked up on PATH (g++-N), for an older CUDA host compiler than the default one
GXX_MAJORS = range(4, 31)

#: (compiler family "gcc" or "clang", major version) of a C++ compiler, or None when it cannot be told
CompilerInfo = Callable[[str], "tuple[str, int] | None"]


@dataclass(frozen=True)
class BuildHost:
    """What deciding a build needs from the host, read by :func:`gather_build_host` (no I/O after it)."""

    #: :data:`BUILD_ENVIRON` as set (the others are absent)
    environ: dict[str, str] = field(default_factory=dict)
    #: "g++", "c++", "g++-N" → the executable PATH finds (absent: none)
    on_path: dict[str, str] = field(default_factory=dict)
    #: compiler path → (family, major) from its ``--version`` (None: it did not say)
    compilers: dict[str, tuple[str, int] | None] = field(default_factory=dict)
    #: nvcc path → (cuobjdump beside it, a wrapper script rather than the real nvcc)
    nvcc_traits: dict[str, tuple[bool, bool]] = field(default_factory=dict)
    #: ``--nvcc``'s toolkit, or why it cannot be used (raised where the decision needs it)
    nvcc_override: CudaToolkit | None = None
    nvcc_override_error: str | None = None
    #: ``--source``: its absolute path and version, or why it is not a llama-cpp-python source
    source_path: str | None = None
    source_version: str | None = None
    source_error: str | None = None
    #: ``--wheelhouse``, absolute
    wheelhouse: str | None = None

    def which(self, name: str) -> str | None:
        return self.on_path.get(name)

    def compiler_info(self, path: str) -> tuple[str, int] | None:
        return self.compilers.get(path)


def host_compiler(environ: Mapping[str, str], which: Callable[[str], str | None]) -> str | None:
    """The CUDA host compiler the build would use: CUDAHOSTCXX, else CXX, else g++ or c++ on PATH."""
    if environ.get("CUDAHOSTCXX"):
        return environ["CUDAHOSTCXX"]
    return environ.get("CXX") or which("g++") or which("c++")


def gather_build_host(
    snapshot: Snapshot,
    *,
    environ: Mapping[str, str] | None = None,
    compiler_info: CompilerInfo | None = None,
    nvcc: str | None = None,
    source: str | None = None,
    wheelhouse: str | None = None,
) -> BuildHost:
    """Read what :func:`provision.llama_build.decision.decide_build` looks at, once."""
    env = {k: v for k, v in (os.environ if environ is None else environ).items() if k in BUILD_ENVIRON}
    info = compiler_info or host_compiler_info
    path = env.get("PATH")
    on_path = {}
    for name in ("g++", "c++", *(f"g++-{n}" for n in GXX_MAJORS)):
        found = shutil.which(name, path=path)
        if found:
            on_path[name] = found
    compilers: dict[str, tuple[str, int] | None] = {}
    first = host_compiler(env, on_path.get)
    for compiler in [*([first] if first else []), *(v for k, v in on_path.items() if k.startswith("g++-"))]:
        if compiler not in compilers:
            compilers[compiler] = info(compiler)
    traits = {
        t.nvcc: (Path(t.nvcc).with_name("cuobjdump").exists(), _is_script(t.nvcc)) for t in snapshot.cuda_toolkits
    }
    override, override_error = None, None
    if nvcc:
        try:
            override = override_toolkit(snapshot.cuda_toolkits, nvcc)
            traits.setdefault(
                override.nvcc, (Path(override.nvcc).with_name("cuobjdump").exists(), _is_script(override.nvcc))
            )
        except GpuprovError as exc:
            override_error = str(exc)
    src_version, src_error = None, None
    if source:
        try:
            src_version = source_version(source)
        except GpuprovError as exc:
            src_error = str(exc)
    return BuildHost(
        environ=env,
        on_path=on_path,
        compilers=compilers,
        nvcc_traits=traits,
        nvcc_override=override,
        nvcc_override_error=override_error,
        source_path=str(Path(source).resolve()) if source else None,
        source_version=src_version,
        source_error=src_error,
        wheelhouse=str(Path(wheelhouse).resolve()) if wheelhouse else None,
    )


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


def _is_script(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(2) == b"#!"
    except OSError:
        return False


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
