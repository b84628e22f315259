"""Verifying a CUDA build: which kernels cuobjdump lists, and the CUDA branch of verify_build.

The seams stubbed are the narrowest ones: the subprocess of the target interpreter (``_run_json``), the
ELF read of each library (``provision.elf.needed_libraries_of``) and, for cuobjdump, a real executable
beside a fake nvcc that prints listings in cuobjdump's format.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provision import elf
from provision import llama_build as lb
from provision.llama_build import verify as lb_verify
from tests.conftest import load_snapshot

# `cuobjdump --list-elf libstable-diffusion_cuda.so` of a native sm_86 build, as recorded in
# leejet/stable-diffusion.cpp#604 (first lines)
RECORDED_SM86 = """\
ELF file    1: tmpxft_000515aa_00000000-0.sm_86.cubin
ELF file    2: tmpxft_000515aa_00000000-1.sm_86.cubin
ELF file    3: tmpxft_000515aa_00000000-2.sm_86.cubin
ELF file   10: tmpxft_000515aa_00000000-9.sm_86.cubin
ELF file   22: tmpxft_000515aa_00000000-21.sm_86.cubin
"""

# the same format for what llama.cpp's ggml-cuda/CMakeLists.txt builds for "86;89;90;120": 120 is
# rewritten to the architecture-specific 120a, 90 may be 90a; PTX listings name .ptx files the same way
CONSTRUCTED_ELF = """\
ELF file    1: tmpxft_00003f1c_00000000-0.sm_86.cubin
ELF file    2: tmpxft_00003f1c_00000000-1.sm_89.cubin
ELF file    3: tmpxft_00003f1c_00000000-2.sm_90a.cubin
ELF file    4: tmpxft_00003f1c_00000000-3.sm_120a.cubin
ELF file  117: tmpxft_00004a2e_00000000-6.sm_120a.cubin
"""
CONSTRUCTED_PTX = """\
PTX file    1: tmpxft_00003f1c_00000000-0.sm_120a.ptx
PTX file    2: tmpxft_00003f1c_00000000-1.sm_90.ptx
"""


def test_recorded_native_listing():
    assert lb.parse_cuobjdump_list(RECORDED_SM86) == {"86"}


def test_arch_specific_names_count_as_their_architecture():
    assert lb.parse_cuobjdump_list(CONSTRUCTED_ELF) == {"86", "89", "90", "120"}
    assert lb.parse_cuobjdump_list(CONSTRUCTED_PTX) == {"90", "120"}


def test_listing_without_device_code_is_empty():
    assert lb.parse_cuobjdump_list("cuobjdump info    : File '/x/libllama.so' does not contain device code\n") == set()
    assert lb.parse_cuobjdump_list("") == set()


@given(st.text(max_size=300))
def test_parse_never_crashes_and_returns_digits(text):
    assert all(a.isdigit() for a in lb.parse_cuobjdump_list(text))


# -- verify_build's CUDA branch -----------------------------------------------------------------------


def _toolkit(tmp_path, elf_listing: str, ptx_listing: str, rc: int = 0):
    """A fake nvcc with a cuobjdump beside it that prints the given listings."""
    bin_dir = tmp_path / "cuda/bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "nvcc").write_text("#!/bin/sh\necho 'Cuda compilation tools, release 13.0, V13.0.88'\n")
    (bin_dir / "elf.txt").write_text(elf_listing)
    (bin_dir / "ptx.txt").write_text(ptx_listing)
    (bin_dir / "cuobjdump").write_text(
        "#!/bin/sh\n"
        f'here=$(dirname "$0")\n'
        f"if [ {rc} -ne 0 ]; then echo 'cuobjdump fatal   : Could not open input file' >&2; exit {rc}; fi\n"
        'case "$1" in --list-elf) cat "$here/elf.txt";; --list-ptx) cat "$here/ptx.txt";; esac\n'
    )
    for name in ("nvcc", "cuobjdump"):
        (bin_dir / name).chmod(0o755)
    return bin_dir / "nvcc"


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """llama_cpp as the target interpreter reports it, with its libraries' DT_NEEDED as given."""
    lib = tmp_path / "site/llama_cpp/lib"
    libs = {
        "libllama.so": ["libggml.so", "libc.so.6"],
        "libggml.so": ["libggml-base.so", "libggml-cuda.so", "libggml-cpu.so"],
        "libggml-cuda.so": ["libggml-base.so", "libcudart.so.13", "libcublas.so.13", "libcuda.so.1"],
    }
    state = {"offload": True, "libs": libs}

    def run_json(python, code, *args, timeout=300):
        if code == lb_verify._INSPECT:
            return {"package_dir": str(lib.parent), "libs": [str(lib / n) for n in state["libs"]]}, ""
        if code == lb_verify._OFFLOAD:
            return state["offload"], ""
        if code == lb_verify._COMPLETE:
            assert args[1] == "-1"  # a CUDA build offloads every layer
            return {"text": " Paris.", "tokens": 3, "seconds": 0.05}, ""
        raise AssertionError(code)

    monkeypatch.setattr(lb_verify, "_run_json", run_json)
    monkeypatch.setattr(elf, "needed_libraries_of", lambda path: state["libs"][path.rsplit("/", 1)[-1]])
    return state


def _plan(nvcc, archs):
    snap = load_snapshot("h100")
    return lb.plan_build(
        snap,
        python="/opt/v/bin/python",
        archs=archs,
        nvcc=str(nvcc),
        environ={"PATH": "/usr/bin"},
        compiler_info=lambda c: ("gcc", 12),
    )


def _by_name(checks):
    return {c.name: c for c in checks}


def test_cuda_build_with_every_asked_kernel_passes(tmp_path, installed):
    nvcc = _toolkit(tmp_path, CONSTRUCTED_ELF, CONSTRUCTED_PTX)
    plan = _plan(nvcc, ["90", "120"])
    checks = _by_name(lb.verify_build(plan, smoke_model="/m.gguf"))
    assert checks["linked against CUDA"].ok is True
    assert checks["linked against CUDA"].detail == "libcublas.so.13, libcuda.so.1, libcudart.so.13"
    kernels = checks["kernels for sm_90,sm_120"]
    assert (
        kernels.ok is True
        and "SASS ['86', '89', '90', '120']" in kernels.detail
        and "also ['86', '89']" in kernels.detail
    )
    assert checks["llama_supports_gpu_offload()"].ok is True
    assert checks["one completion"].ok is True and "3 tokens" in checks["one completion"].detail


def test_missing_kernel_fails_and_names_it(tmp_path, installed):
    nvcc = _toolkit(tmp_path, RECORDED_SM86, "")
    checks = _by_name(lb.verify_build(_plan(nvcc, ["90"])))
    kernels = checks["kernels for sm_90"]
    assert kernels.ok is False and "missing sm_90" in kernels.detail and "SASS ['86']" in kernels.detail


def test_cuobjdump_failing_is_not_checked_rather_than_a_crash(tmp_path, installed):
    nvcc = _toolkit(tmp_path, "", "", rc=1)
    kernels = _by_name(lb.verify_build(_plan(nvcc, ["90"])))["kernels for sm_90"]
    assert kernels.ok is None and "Could not open input file" in kernels.detail


def test_cuobjdump_is_found_beside_the_file_a_symlinked_nvcc_points_to(tmp_path, installed):
    nvcc = _toolkit(tmp_path, CONSTRUCTED_ELF, "")
    link = tmp_path / "usr/bin/nvcc"
    link.parent.mkdir(parents=True)
    link.symlink_to(nvcc)
    kernels = _by_name(lb.verify_build(_plan(link, ["90"])))["kernels for sm_90"]
    assert kernels.ok is True and "SASS ['86', '89', '90', '120']" in kernels.detail


def test_no_cuobjdump_beside_nvcc_is_skipped(tmp_path, installed, monkeypatch):
    nvcc = _toolkit(tmp_path, "", "")
    (nvcc.parent / "cuobjdump").unlink()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # none on PATH either
    kernels = _by_name(lb.verify_build(_plan(nvcc, ["90"])))["kernels for sm_90"]
    assert kernels.ok is None and "cuobjdump not available" in kernels.detail


def test_cuda_plan_but_cpu_only_libraries_fails_linkage_and_offload(tmp_path, installed):
    """What a wrong CMake flag produces (e.g. LLAMA_CUDA=on for a version that wants GGML_CUDA): a CPU build."""
    installed["libs"] = {"libllama.so": ["libggml.so"], "libggml.so": ["libggml-base.so", "libggml-cpu.so"]}
    installed["offload"] = False
    nvcc = _toolkit(tmp_path, "", "")
    checks = _by_name(lb.verify_build(_plan(nvcc, ["90"])))
    assert (
        checks["linked against CUDA"].ok is False and checks["linked against CUDA"].detail == "no CUDA library linked"
    )
    assert checks["kernels for sm_90"].ok is False and "no libggml-cuda library" in checks["kernels for sm_90"].detail
    assert checks["llama_supports_gpu_offload()"].ok is False


def test_unreadable_library_is_a_failed_linkage_check(tmp_path, installed, monkeypatch):
    def broken(path):
        raise elf.ElfError(f"{path}: truncated or corrupt ELF file")

    monkeypatch.setattr(elf, "needed_libraries_of", broken)
    nvcc = _toolkit(tmp_path, CONSTRUCTED_ELF, "")
    checks = lb.verify_build(_plan(nvcc, ["90"]))
    assert any(c.name == "linkage" and c.ok is False and "corrupt" in c.detail for c in checks)
