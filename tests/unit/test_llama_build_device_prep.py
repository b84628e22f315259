"""What the device check of `gpuprov build llama-cpp` is prepared with: the trimmed sdist, the tiny GGUF,
and the pure parts of the default-architecture proxy (benchmarks/llama_build_*.py)."""

from __future__ import annotations

import importlib.util
import io
import tarfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provision import llama_build as lb

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


prepare = _load("llama_build_prepare")
proxy = _load("llama_build_archs_proxy")

TOP = "llama_cpp_python-0.3.36"
KEPT = [
    "PKG-INFO",
    "pyproject.toml",
    "CMakeLists.txt",
    "llama_cpp/__init__.py",
    "vendor/llama.cpp/CMakeLists.txt",
    "vendor/llama.cpp/ggml/src/ggml-cuda/mmq.cu",
    "vendor/llama.cpp/models/templates/llama-cpp-deepseek.jinja",
    "vendor/llama.cpp/tools/mtmd/mtmd.cpp",
    "vendor/llama.cpp/src/llama-tests-are-not-a-folder.cpp",
]
DROPPED = [
    ".git/HEAD",
    ".git/modules/vendor/llama.cpp/objects/pack/pack-1.pack",
    "vendor/llama.cpp/.git",
    "vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf",
    "vendor/llama.cpp/docs/build.md",
    "tests/test_llama.py",
    "vendor/llama.cpp/tests/test-backend-ops.cpp",
    "vendor/llama.cpp/ggml/tests/x.c",
]


def _sdist(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for rel in KEPT + DROPPED:
            data = b"Metadata-Version: 2.1\nName: llama_cpp_python\nVersion: 0.3.36\n" if rel == "PKG-INFO" else b"x"
            info = tarfile.TarInfo(f"{TOP}/{rel}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_trim_keeps_what_the_build_reads_and_drops_the_rest(tmp_path):
    src = _sdist(tmp_path / f"{TOP}.tar.gz")
    out = prepare.trim_sdist(src, tmp_path / "out")
    assert out.name == src.name
    with tarfile.open(out) as tf:
        names = sorted(m.name.removeprefix(f"{TOP}/") for m in tf.getmembers())
    assert names == sorted(KEPT)
    assert lb.source_version(str(out)) == "0.3.36"  # gpuprov still reads the version of the trimmed sdist


@given(
    st.lists(
        st.sampled_from(
            [
                "vendor",
                "llama.cpp",
                "ggml",
                "src",
                "ggml-cuda",
                "template-instances",
                "tools",
                "mtmd",
                "common",
                "testsuite",
                "models_util",
                "include",
            ]
        ),
        max_size=5,
    ),
    st.sampled_from(["x.cu", "y.cpp", "z.h", "CMakeLists.txt", "w.cmake"]),
)
def test_sources_are_never_dropped(folders, name):
    assert not prepare._dropped("/".join([*folders, name]))


def test_tiny_gguf_is_a_llama_whose_end_token_is_never_the_greedy_choice(tmp_path):
    from gguf import GGUFReader

    path = prepare.write_tiny_gguf(tmp_path / "tiny.gguf")
    assert path.stat().st_size < 2**20  # travels in the 64 MiB with room to spare
    reader = GGUFReader(str(path))
    arch = reader.fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "llama"
    tensors = {t.name: t for t in reader.tensors}
    assert len(tensors) == 1 + 2 * 9 + 2
    output = tensors["output.weight"].data
    assert (output[2] == 0).all() and (output[3:] != 0).any()  # </s> (id 2) scores 0, others random
    eos = reader.fields["tokenizer.ggml.eos_token_id"]
    assert int(eos.parts[eos.data[0]][0]) == 2


# -- the proxy's pure parts --------------------------------------------------------------------------

CUDA_DIR = "ggml/src/ggml-cuda/CMakeFiles/ggml-cuda.dir"
# the shape of `ninja -t targets all` for a llama.cpp CUDA build folder
TARGETS = f"""\
{CUDA_DIR}/acc.cu.o: CUDA_COMPILER__ggml-cuda_unscanned_Release
{CUDA_DIR}/template-instances/mmq-instance-q4_0.cu.o: CUDA_COMPILER__ggml-cuda_unscanned_Release
{CUDA_DIR}/template-instances/fattn-mma-f16-instance-ncols1_1-ncols2_8.cu.o: CUDA_COMPILER__ggml-cuda_unscanned_Release
{CUDA_DIR}/acc.cu.o: CUDA_COMPILER__ggml-cuda_unscanned_Release
ggml/src/CMakeFiles/ggml-base.dir/ggml.c.o: C_COMPILER__ggml-base_unscanned_Release
bin/libggml-cuda.so: CUDA_SHARED_LIBRARY_LINKER__ggml-cuda_Release
"""


def test_cuda_objects_are_the_ggml_cuda_cu_objects_only():
    assert proxy.cuda_objects(TARGETS) == [
        f"{CUDA_DIR}/acc.cu.o",
        f"{CUDA_DIR}/template-instances/fattn-mma-f16-instance-ncols1_1-ncols2_8.cu.o",
        f"{CUDA_DIR}/template-instances/mmq-instance-q4_0.cu.o",
    ]


@given(st.lists(st.text(min_size=1, max_size=5), max_size=300, unique=True), st.integers(min_value=0, max_value=50))
def test_stratified_sample_is_spread_and_bounded(objects, n):
    objects = sorted(objects)
    sample = proxy.stratified_sample(objects, n)
    assert len(sample) <= n and sample == sorted(sample) and set(sample) <= set(objects)
    if objects and n:
        assert sample[0] == objects[0]
        assert len(sample) >= min(n, len(objects)) // 2


NINJA_LOG = (
    "# ninja log v6\n0\t1500\t0\ta.cu.o\tdeadbeef\n10\t4000\t0\tb.cu.o\tfeed\nbad line\n5\t2505\t0\ta.cu.o\tbeef\n"
)


def test_ninja_log_durations_last_entry_wins():
    assert proxy.ninja_log_durations(NINJA_LOG) == {"a.cu.o": 2500, "b.cu.o": 3990}


@given(st.text(max_size=400))
def test_ninja_log_parser_never_crashes(text):
    assert all(isinstance(v, int) for v in proxy.ninja_log_durations(text).values())


def test_compare_uses_only_objects_both_builds_finished():
    got = proxy.compare({"a": 1000, "b": 2000}, {"a": 5000}, {"a": 100, "b": 200}, {"a": 700})
    assert got["objects_compared"] == 1
    assert got["time_ratio"] == pytest.approx(5.0) and got["size_ratio"] == pytest.approx(7.0)
    assert proxy.compare({}, {}, {}, {}) == {"objects_compared": 0}
