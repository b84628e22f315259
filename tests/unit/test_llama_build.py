"""Planning a llama-cpp-python build from snapshots: architectures, nvcc choice, refusals, flags."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provision import llama_build as lb
from provision.errors import GpuprovError, UsageError
from provision.snapshot import CudaToolkit, GpuInfo
from tests.conftest import load_snapshot

ENV = {"PATH": "/usr/bin:/bin", "CXX": "/usr/bin/g++-12"}


def plan(snap, **kw):
    kw.setdefault("python", "/opt/venv/bin/python")
    kw.setdefault("environ", ENV)
    return lb.plan_build(snap, **kw)


def test_laptop_builds_for_its_own_arch_only():
    p = plan(load_snapshot("rtx4090-laptop"), mem_available=30000)
    assert p.archs == ["89"]
    assert p.cmake_args == ["-DGGML_CUDA=on", "-DCMAKE_CUDA_ARCHITECTURES=89"]
    assert p.env["CMAKE_ARGS"] == "-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=89"
    assert p.env["CUDACXX"] == "/usr/local/cuda-12.6/bin/nvcc"
    assert p.env["CUDAHOSTCXX"] == "/usr/bin/g++-12"
    assert p.command[:3] == ["uv", "pip", "install"] and p.command[-1] == "llama-cpp-python"
    assert "--no-binary" in p.command and "llama-cpp-python" in p.command
    line = p.shell()
    assert line.startswith("CMAKE_ARGS='-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=89' CUDACXX=")
    assert "--python /opt/venv/bin/python" in line


def test_h100_uses_cuda13_and_sm90():
    p = plan(load_snapshot("h100"))
    assert (p.archs, p.cuda_version) == (["90"], "13.0")


def test_mixed_gpus_build_each_distinct_arch_once():
    snap = load_snapshot("rtx4080")
    snap.gpus.append(GpuInfo(index=1, name="NVIDIA GeForce RTX 3090", compute_capability="8.6"))
    snap.gpus.append(GpuInfo(index=2, name="NVIDIA GeForce RTX 4090", compute_capability="8.9"))
    p = plan(snap)
    assert p.archs == ["86", "89"]
    assert "-DCMAKE_CUDA_ARCHITECTURES=86;89" in p.cmake_args
    assert "GPU 0 NVIDIA GeForce RTX 4080, GPU 2 NVIDIA GeForce RTX 4090" in p.arch_reason


def test_blackwell_needs_cuda_12_8():
    snap = load_snapshot("rtx5090")
    snap.cuda_toolkits = [CudaToolkit("/usr/local/cuda-12.6/bin/nvcc", "12.6.77", ["PATH"])]
    with pytest.raises(lb.BuildError, match=r"cannot build for sm_120 \(needs CUDA 12.8 or newer\)"):
        plan(snap)


def test_nvcc_newer_than_the_driver_is_refused():
    snap = load_snapshot("rtx4080")  # driver supports CUDA 12.4
    snap.cuda_toolkits = [CudaToolkit("/usr/local/cuda-12.8/bin/nvcc", "12.8.93", ["PATH"])]
    with pytest.raises(lb.BuildError, match=r"newer than the CUDA 12\.4 this driver supports"):
        plan(snap)


def test_the_newest_nvcc_the_driver_can_run_is_chosen():
    snap = load_snapshot("rtx4080")
    snap.cuda_toolkits = [
        CudaToolkit("/usr/local/cuda-11.8/bin/nvcc", "11.8.89", ["/usr/local/cuda-11.8"]),
        CudaToolkit("/usr/local/cuda-13.0/bin/nvcc", "13.0.88", ["PATH"]),
        CudaToolkit("/usr/local/cuda-12.4/bin/nvcc", "12.4.131", ["CUDA_HOME"]),
    ]
    p = plan(snap)
    assert p.cuda_version == "12.4.131"
    assert any("also found" in n for n in p.notes)


def test_pascal_cannot_be_built_with_cuda13():
    snap = load_snapshot("h100")
    snap.gpus[0].compute_capability = "6.1"
    with pytest.raises(lb.BuildError, match=r"sm_61 \(needs CUDA 8.0 to 12.9\)"):
        plan(snap)


def test_explicit_nvcc_that_does_not_exist_is_a_usage_error(tmp_path):
    with pytest.raises(
        UsageError, match=r"--nvcc .*: no such executable file \(nvcc found by the scan: /usr/local/cuda"
    ):
        plan(load_snapshot("h100"), nvcc=str(tmp_path / "cuda/bin/nvcc"))


def test_no_gpu_refuses_unless_arch_or_cpu():
    snap = load_snapshot("h100")
    snap.gpus = []
    with pytest.raises(lb.BuildError, match=r"--arch .* or make a CPU build with --cpu"):
        plan(snap)
    assert plan(snap, archs=["89"]).archs == ["89"]
    cpu = plan(snap, cpu=True)
    assert cpu.archs == [] and cpu.cmake_args == ["-DGGML_CUDA=off"] and "CUDACXX" not in cpu.env


def test_no_toolkit_is_a_clear_refusal():
    snap = load_snapshot("rtx5090")  # no toolkit installed
    with pytest.raises(lb.BuildError, match=r"no CUDA toolkit .* install one"):
        plan(snap)


@pytest.mark.parametrize(
    "version, flag",
    [
        (None, "-DGGML_CUDA=on"),
        ("0.3.16", "-DGGML_CUDA=on"),
        ("0.2.82", "-DGGML_CUDA=on"),
        ("0.2.77", "-DLLAMA_CUDA=on"),
        ("0.2.60", "-DLLAMA_CUDA=on"),
        ("0.2.59", "-DLLAMA_CUBLAS=on"),
        ("0.1.85", "-DLLAMA_CUBLAS=on"),
    ],
)
def test_cmake_flag_follows_the_version(version, flag):
    p = plan(load_snapshot("h100"), version=version)
    assert p.cmake_args[0] == flag
    assert p.spec == (f"llama-cpp-python=={version}" if version else "llama-cpp-python")


def test_source_sdist_sets_the_version(tmp_path):
    sdist = tmp_path / "llama_cpp_python-0.3.36.tar.gz"
    sdist.write_bytes(b"")
    p = plan(load_snapshot("h100"), source=str(sdist), wheelhouse=str(tmp_path))
    assert p.version == "0.3.36" and p.spec == str(sdist)
    assert p.command[-4:] == ["--offline", "--find-links", str(tmp_path), str(sdist)]


def test_jobs_bounded_by_memory():
    snap = load_snapshot("rtx4090-laptop")  # 24 cores
    assert plan(snap, mem_available=8000).jobs == 3  # 8000 MiB / 2560 MiB per nvcc job
    assert plan(snap, mem_available=8000, cpu=True).jobs == 7
    assert plan(snap, mem_available=None).jobs == 24
    assert plan(snap, mem_available=100, jobs=5).jobs == 5
    assert plan(snap, mem_available=100).jobs == 1


@pytest.mark.parametrize(
    "values, expect",
    [
        (["89"], ["89"]),
        (["86,89"], ["86", "89"]),
        (["sm_90", "8.9"], ["89", "90"]),
        (["120"], ["120"]),
        (["89;86 90"], ["86", "89", "90"]),
    ],
)
def test_parse_arch_option(values, expect):
    assert lb.parse_arch_option(values) == expect


@pytest.mark.parametrize("bad", [["foo"], ["8"], ["99"], ["1234"], [""], ["8.x"]])
def test_parse_arch_option_rejects(bad):
    with pytest.raises(UsageError):
        lb.parse_arch_option(bad)


@given(st.lists(st.text(max_size=12), max_size=4))
def test_parse_arch_option_never_crashes(values):
    try:
        out = lb.parse_arch_option(values)
    except UsageError:
        return
    assert out and all(a.isdigit() for a in out)


@given(st.text(max_size=20))
def test_plan_version_input_never_crashes(version):
    with contextlib.suppress(GpuprovError):
        plan(load_snapshot("h100"), version=version)


# -- failure summaries on real logs ------------------------------------------------------------------

CMAKE_NO_ARCH = """\
*** Configuring CMake...
-- The CUDA compiler identification is unknown
CMake Error at /usr/share/cmake-3.22/Modules/CMakeDetermineCUDACompiler.cmake:633 (message):
  Failed to detect a default CUDA architecture.

   Compiler output:

-- Configuring incomplete, errors occurred!
*** CMake configuration failed
"""  # abetlen/llama-cpp-python#205, #1227

NVCC_UNSUPPORTED = """\
[31/140] Building CUDA object vendor/llama.cpp/ggml/src/ggml-cuda/CMakeFiles/ggml-cuda.dir/acc.cu.o
FAILED: vendor/llama.cpp/ggml/src/ggml-cuda/CMakeFiles/ggml-cuda.dir/acc.cu.o
nvcc fatal   : Unsupported gpu architecture 'compute_120a'
ninja: build stopped: subcommand failed.
"""


def test_failure_summary_configure():
    step, lines = lb.summarize_failure(CMAKE_NO_ARCH.splitlines())
    assert step == "configure (cmake)"
    assert any("CMake Error" in ln for ln in lines)


def test_failure_summary_compile():
    step, lines = lb.summarize_failure(NVCC_UNSUPPORTED.splitlines())
    assert step == "compile/link"
    assert "nvcc fatal   : Unsupported gpu architecture 'compute_120a'" in lines
    assert len(lines) <= 8


def test_nvcc_table_covers_every_gpu_architecture_gpuprov_knows():
    from provision.gpuarch import _CC_ARCH

    for cc in _CC_ARCH:
        if cc.startswith(("3.", "5.3", "6.2")):
            continue  # Kepler and Jetson TX1/TX2 are not llama.cpp targets
        lo, _ = lb.arch_limits(cc)
        assert lo.major >= 6


# -- --nvcc: any nvcc, through any path to it ---------------------------------------------------------


def _fake_nvcc(directory, release: str):
    """An executable that answers `--version` like nvcc does (no version.json beside it)."""
    nvcc = directory / "bin" / "nvcc"
    nvcc.parent.mkdir(parents=True)
    nvcc.write_text(
        "#!/bin/sh\necho 'nvcc: NVIDIA (R) Cuda compiler driver'\n"
        f"echo 'Cuda compilation tools, release {release[:4]}, V{release}'\n"
    )
    nvcc.chmod(0o755)
    return nvcc


def test_nvcc_override_through_a_symlink_is_the_toolkit_the_scan_found(tmp_path):
    real = _fake_nvcc(tmp_path / "cuda-12.6", "12.6.77")
    link = tmp_path / "bin" / "nvcc"
    link.parent.mkdir()
    link.symlink_to(real)
    snap = load_snapshot("rtx4090-laptop")
    snap.cuda_toolkits = [CudaToolkit(str(real), "12.6.77", ["/usr/local/cuda-12.6"])]
    p = plan(snap, nvcc=str(link))
    assert p.nvcc == str(real) and p.cuda_version == "12.6.77"


def test_nvcc_override_the_scan_did_not_find_is_used_with_the_version_it_reports(tmp_path):
    nvcc = _fake_nvcc(tmp_path / "opt/cuda-12.8", "12.8.93")
    p = plan(load_snapshot("h100"), nvcc=str(nvcc))  # the scan found only /usr/local/cuda (13.0)
    assert (p.nvcc, p.cuda_version) == (str(nvcc), "12.8.93")
    assert p.env["CUDACXX"] == str(nvcc)


def test_nvcc_override_still_has_to_build_for_the_gpu(tmp_path):
    nvcc = _fake_nvcc(tmp_path / "opt/cuda-11.7", "11.7.99")
    with pytest.raises(lb.BuildError, match=r"nvcc 11\.7\.99 .* cannot build for sm_90 \(needs CUDA 11\.8"):
        plan(load_snapshot("h100"), nvcc=str(nvcc))


def test_nvcc_override_that_is_no_nvcc_is_a_usage_error(tmp_path):
    fake = tmp_path / "nvcc"
    fake.write_text("#!/bin/sh\necho hello\n")
    fake.chmod(0o755)
    with pytest.raises(UsageError, match="cannot read its CUDA version"):
        plan(load_snapshot("h100"), nvcc=str(fake))
    fake.chmod(0o644)
    with pytest.raises(UsageError, match="no such executable file"):
        plan(load_snapshot("h100"), nvcc=str(fake))


# -- the host compiler against what nvcc accepts ------------------------------------------------------


def _compilers(versions: dict[str, int]):
    return lambda path: ("gcc", versions[path]) if path in versions else None


def test_host_gcc_nvcc_accepts_is_used():
    p = plan(load_snapshot("rtx4090-laptop"), compiler_info=_compilers({"/usr/bin/g++-12": 12}))  # CUDA 12.6
    assert p.env["CUDAHOSTCXX"] == p.host_compiler == "/usr/bin/g++-12"
    assert not any("gcc" in n for n in p.notes)


def test_host_gcc_too_new_falls_back_to_an_older_g_plus_plus_on_path(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("g++", "g++-13"):
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    env = {"PATH": str(bin_dir)}
    versions = {str(bin_dir / "g++"): 14, str(bin_dir / "g++-13"): 13}
    p = plan(load_snapshot("rtx4090-laptop"), environ=env, compiler_info=_compilers(versions))  # nvcc 12.6
    assert p.env["CUDAHOSTCXX"] == str(bin_dir / "g++-13")
    assert any("gcc 14, newer than nvcc 12.6.77 accepts (gcc <= 13" in n and "using" in n for n in p.notes)


def test_host_gcc_too_new_and_no_older_one_is_refused_with_what_to_do():
    env = {"PATH": "/nonexistent", "CXX": "/usr/bin/g++-14"}
    with pytest.raises(lb.BuildError, match=r"gcc 14, newer than nvcc 12\.4\.131 accepts .* apt install g\+\+-13"):
        plan(load_snapshot("rtx4080"), environ=env, compiler_info=_compilers({"/usr/bin/g++-14": 14}))


def test_explicit_cudahostcxx_too_new_is_refused_not_replaced(tmp_path):
    env = {"PATH": "/usr/bin", "CUDAHOSTCXX": "/usr/bin/g++-14"}
    with pytest.raises(lb.BuildError, match="set CUDAHOSTCXX to a g\\+\\+ no newer than 13"):
        plan(load_snapshot("rtx4080"), environ=env, compiler_info=_compilers({"/usr/bin/g++-14": 14}))


def test_allow_unsupported_compiler_turns_the_refusal_into_a_note():
    env = {"PATH": "/nonexistent", "CXX": "/usr/bin/g++-14", "NVCC_APPEND_FLAGS": "-allow-unsupported-compiler"}
    p = plan(load_snapshot("rtx4080"), environ=env, compiler_info=_compilers({"/usr/bin/g++-14": 14}))
    assert p.env["CUDAHOSTCXX"] == "/usr/bin/g++-14"
    assert any("building anyway" in n for n in p.notes)


def test_nvcc_without_a_known_gcc_limit_is_noted_not_refused():
    snap = load_snapshot("rtx3090ti")  # sm_86, driver CUDA 12.2
    snap.cuda_toolkits = [CudaToolkit("/usr/local/cuda-11.2/bin/nvcc", "11.2.152", ["PATH"])]  # not in the table
    p = plan(snap, compiler_info=_compilers({"/usr/bin/g++-12": 12}))
    assert p.env["CUDAHOSTCXX"] == "/usr/bin/g++-12"
    assert any("does not know the newest gcc nvcc 11.2.152 accepts" in n for n in p.notes)


def test_cuda_13_0_accepts_gcc_15_but_not_16():
    ok = plan(load_snapshot("h100"), compiler_info=_compilers({"/usr/bin/g++-12": 15}))
    assert ok.env["CUDAHOSTCXX"] == "/usr/bin/g++-12" and not any("gcc" in n for n in ok.notes)
    env = {"PATH": "/nonexistent", "CXX": "/usr/bin/g++-16"}
    with pytest.raises(lb.BuildError, match=r"gcc 16, newer than nvcc 13\.0 accepts \(gcc <= 15; crt/host_config\.h"):
        plan(load_snapshot("h100"), environ=env, compiler_info=_compilers({"/usr/bin/g++-16": 16}))


def test_cpu_build_does_not_check_against_nvcc():
    p = plan(load_snapshot("rtx4080"), cpu=True, compiler_info=_compilers({"/usr/bin/g++-12": 99}))
    assert "CUDAHOSTCXX" not in p.env and p.host_compiler == "/usr/bin/g++-12"


@pytest.mark.parametrize(
    "cuda, gcc",
    [
        ("11.8.89", 11),
        ("12.0.140", 12),
        ("12.3.107", 12),
        ("12.4.131", 13),
        ("12.8.93", 13),
        ("12.9.1", 14),
        ("13.0.88", 15),
        ("13.2.51", 15),
        ("13.1.0", None),
        ("11.2.152", None),
    ],
)
def test_max_host_gcc_table(cuda, gcc):
    got = lb.max_host_gcc(cuda)
    assert (got[0] if got else None) == gcc
    if got:
        assert got[1]  # every row says where it comes from


@pytest.mark.parametrize(
    "text, expect",
    [
        ("g++ (Debian 12.2.0-14+deb12u1) 12.2.0\nCopyright (C) 2022", ("gcc", 12)),
        ("g++ (Ubuntu 13.3.0-6ubuntu2~24.04) 13.3.0\n", ("gcc", 13)),
        ("g++-14 (GCC) 14.2.1 20250110 (Red Hat 14.2.1-7)\n", ("gcc", 14)),
        ("Ubuntu clang version 18.1.3 (1ubuntu1)\nTarget: x86_64-pc-linux-gnu\n", ("clang", 18)),
        ("", None),
        ("something else 1.2\n", None),
    ],
)
def test_parse_compiler_version(text, expect):
    assert lb.parse_compiler_version(text) == expect


@given(st.text(max_size=200))
def test_parse_compiler_version_never_crashes(text):
    got = lb.parse_compiler_version(text)
    assert got is None or (got[0] in ("gcc", "clang") and got[1] >= 0)


def test_this_machines_g_plus_plus_is_read(tmp_path):
    import shutil

    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("no g++ here")
    family, major = lb.host_compiler_info(gxx)
    assert family == "gcc" and major >= 4


# -- the source: sdist or source directory -----------------------------------------------------------


def _source_dir(root, pyproject: str, init: str | None = None, pkg_info: str | None = None):
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text(pyproject)
    if init is not None:
        (root / "llama_cpp").mkdir()
        (root / "llama_cpp/__init__.py").write_text(init)
    if pkg_info is not None:
        (root / "PKG-INFO").write_text(pkg_info)
    return root


def test_source_directory_version_comes_from_its_init_like_scikit_build_core_reads_it(tmp_path):
    src = _source_dir(
        tmp_path / "checkout",
        '[project]\nname = "llama_cpp_python"\ndynamic = ["version"]\n',
        init='from .llama_cpp import *\n\n__version__ = "0.2.77"\n',
    )
    p = plan(load_snapshot("h100"), source=str(src))
    assert p.version == "0.2.77" and p.spec == str(src)
    assert p.cmake_args[0] == "-DLLAMA_CUDA=on"  # the flag of that version, not the newest


def test_unpacked_sdist_version_comes_from_pkg_info(tmp_path):
    pkg_info = "Metadata-Version: 2.1\nName: llama_cpp_python\nVersion: 0.3.36\n\nVersion: 9\n"
    src = _source_dir(tmp_path / "llama_cpp_python-0.3.36", "[project]\nname = 'x'\n", pkg_info=pkg_info)
    assert lb.source_version(str(src)) == "0.3.36"


def test_sdist_with_another_name_is_read_from_its_pkg_info(tmp_path):
    import io
    import tarfile

    sdist = tmp_path / "renamed.tar.gz"
    with tarfile.open(sdist, "w:gz") as tf:
        data = b"Metadata-Version: 2.1\nName: llama_cpp_python\nVersion: 0.2.59\n"
        info = tarfile.TarInfo("llama_cpp_python-0.2.59/PKG-INFO")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    p = plan(load_snapshot("h100"), source=str(sdist))
    assert p.version == "0.2.59" and p.cmake_args[0] == "-DLLAMA_CUBLAS=on"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: (d / "x.whl").write_bytes(b"PK") and d / "x.whl", "neither an sdist"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "without pyproject.toml"),
        (lambda d: d / "missing.tar.gz", "no such file"),
        (lambda d: (d / "broken.tar.gz").write_bytes(b"not gzip") and d / "broken.tar.gz", "not a readable sdist"),
        (lambda d: _source_dir(d / "other", '[project]\nname = "numpy"\nversion = "2.0.0"\n'), "source of numpy"),
    ],
)
def test_source_that_is_not_llama_cpp_python_source_is_refused(tmp_path, make, message):
    with pytest.raises(UsageError, match=message):
        plan(load_snapshot("h100"), source=str(make(tmp_path)))


# -- CPU builds turn CUDA off with the option of their version ----------------------------------------


@pytest.mark.parametrize(
    "version, flag",
    [
        (None, "-DGGML_CUDA=off"),
        ("0.2.82", "-DGGML_CUDA=off"),
        ("0.2.81", "-DLLAMA_CUDA=off"),
        ("0.2.60", "-DLLAMA_CUDA=off"),
        ("0.2.59", "-DLLAMA_CUBLAS=off"),
    ],
)
def test_cpu_flag_follows_the_version(version, flag):
    assert plan(load_snapshot("h100"), cpu=True, version=version).cmake_args == [flag]


# -- -j re-bounded when the build starts -------------------------------------------------------------


def test_rebound_jobs_lowers_but_never_raises():
    p = plan(load_snapshot("rtx4090-laptop"), mem_available=None)  # 24 jobs from 24 cores
    low = lb.rebound_jobs(p, 24, 8000)
    assert low.jobs == 3 and low.env["CMAKE_BUILD_PARALLEL_LEVEL"] == "3" and "-j 3 instead of 24" in low.notes[-1]
    assert "CMAKE_BUILD_PARALLEL_LEVEL=3" in low.shell()
    assert lb.rebound_jobs(low, 64, 512000) is low
    assert lb.rebound_jobs(p, 24, None) is p


# -- Thor and unknown architectures ---------------------------------------------------------------


def test_thor_is_sm_101_before_cuda_13_and_sm_110_from_it():
    snap = load_snapshot("h100")  # nvcc 13.0
    snap.gpus[0].compute_capability = "11.0"
    assert plan(snap).archs == ["110"]
    snap.gpus[0].compute_capability = "10.1"
    with pytest.raises(lb.BuildError, match=r"sm_101 \(needs CUDA 12\.8 to 12\.9\)"):
        plan(snap)


def test_architecture_gpuprov_does_not_know_says_what_to_do():
    snap = load_snapshot("h100")
    snap.gpus[0].compute_capability = "3.5"
    with pytest.raises(lb.BuildError, match=r"3\.5 is not in gpuprov's nvcc table.*--arch .*--cpu"):
        plan(snap)


# -- failure summaries: advice is not the failure ------------------------------------------------------

CONFIGURE_FAILS_WITH_CCACHE_ADVICE = """\
DEBUG -- Warning: ccache not found - consider installing it for faster compilation or disable this warning with \
GGML_CCACHE=OFF
DEBUG -- CMAKE_SYSTEM_PROCESSOR: x86_64
DEBUG CMake Warning at vendor/llama.cpp/CMakeLists.txt:120 (message): LLAMA_CURL not found, using defaults
DEBUG CMake Error at vendor/llama.cpp/ggml/src/ggml-cuda/CMakeLists.txt:258 (message):
DEBUG   CUDA Toolkit not found
DEBUG -- Configuring incomplete, errors occurred!
"""


def test_failure_summary_drops_ccache_and_warning_noise():
    step, lines = lb.summarize_failure(CONFIGURE_FAILS_WITH_CCACHE_ADVICE.splitlines())
    assert step == "configure (cmake)"
    assert not any("ccache" in ln or "Warning" in ln for ln in lines)
    assert any(ln.startswith("CMake Error at vendor/llama.cpp/ggml/src/ggml-cuda") for ln in lines)


# recorded 2026-12-01 by `gpuprov build llama-cpp` (uv --verbose log) on a machine whose CUDA 13.0 toolkit came
# from PyPI's nvidia-cuda-nvcc/-crt/-runtime wheels without cuBLAS (lines 205-226 of that build.log)
NO_CUBLAS = """\
DEBUG   Target mtmd has PUBLIC_HEADER files but no PUBLIC_HEADER DESTINATION.
DEBUG Call Stack (most recent call first):
DEBUG   CMakeLists.txt:210 (llama_cpp_python_install_target)
DEBUG This warning is for project developers.  Use -Wno-dev to suppress it.
DEBUG
DEBUG -- Configuring done
DEBUG CMake Error at vendor/llama.cpp/ggml/src/ggml-cuda/CMakeLists.txt:178 (target_link_libraries):
DEBUG   Target "ggml-cuda" links to:
DEBUG
DEBUG     CUDA::cublas
DEBUG
DEBUG   but the target was not found.  Possible reasons include:
DEBUG
DEBUG     * There is a typo in the target name.
DEBUG     * A find_package call is missing for an IMPORTED target.
DEBUG     * An ALIAS target is missing.
DEBUG
DEBUG
DEBUG
DEBUG -- Generating done
DEBUG CMake Generate step failed.  Build files cannot be regenerated correctly.
DEBUG
DEBUG *** CMake configuration failed
error: Failed to build `llama-cpp-python @ file:///work/main/.cache/device-llama/llama_cpp_python-0.3.36.tar.gz`
"""


def test_failure_summary_carries_the_cmake_message_body():
    step, lines = lb.summarize_failure(NO_CUBLAS.splitlines())
    assert step == "configure (cmake)"
    assert lines[:4] == [
        "CMake Error at vendor/llama.cpp/ggml/src/ggml-cuda/CMakeLists.txt:178 (target_link_libraries):",
        'Target "ggml-cuda" links to:',
        "CUDA::cublas",
        "but the target was not found.  Possible reasons include:",
    ]
    assert lines[-1].startswith("error: Failed to build `llama-cpp-python")
    assert not any("PUBLIC_HEADER" in ln or "warning" in ln for ln in lines)
