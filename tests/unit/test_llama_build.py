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


def test_explicit_nvcc_must_be_one_that_was_found():
    with pytest.raises(UsageError, match="not an nvcc gpuprov found"):
        plan(load_snapshot("h100"), nvcc="/opt/cuda/bin/nvcc")


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
    [(None, "-DGGML_CUDA=on"), ("0.3.16", "-DGGML_CUDA=on"), ("0.2.82", "-DGGML_CUDA=on"),
     ("0.2.77", "-DLLAMA_CUDA=on"), ("0.2.60", "-DLLAMA_CUDA=on"), ("0.2.59", "-DLLAMA_CUBLAS=on"),
     ("0.1.85", "-DLLAMA_CUBLAS=on")],
)  # fmt: skip
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
    [(["89"], ["89"]), (["86,89"], ["86", "89"]), (["sm_90", "8.9"], ["89", "90"]), (["120"], ["120"]),
     (["89;86 90"], ["86", "89", "90"])],
)  # fmt: skip
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
        if cc.startswith(("3.", "5.3", "6.2", "10.1", "11.0")):
            continue  # Kepler, Jetson TX1/TX2 and Thor are not llama.cpp targets
        lo, _ = lb.arch_limits(cc)
        assert lo.major >= 6
