"""Prepare, here, what ``scripts/device/llama_cuda_build.sh`` needs on the GPU machine, which has no network.

    .venv/bin/python benchmarks/llama_build_prepare.py [--sdist PATH] [--out DIR] [--python-version 3.12]

Writes into DIR (default ``.cache/device-llama``, ignored by git, so it travels only when a device run
names it in ``carry``; everything that travels must stay under 64 MiB):

* ``llama_cpp_python-<version>.tar.gz``: the sdist without what a build never reads: ``.git/`` (a 38 MiB
  submodule pack), ``vendor/llama.cpp/models/*.gguf`` (vocab test files, 74 MiB), ``vendor/llama.cpp/docs/``
  and the test folders (not configured when llama.cpp is a subproject: ``LLAMA_BUILD_TESTS`` defaults to
  ``LLAMA_STANDALONE``). The 77 MiB sdist becomes about 12 MiB.
* ``wheelhouse/``: what the build needs and the device image lacks, as wheels for that Python: the isolated
  build environment's ``scikit-build-core`` and its ``pathspec``/``packaging``; ``ninja`` (scikit-build-core
  asks for it when no ninja is on PATH; cmake it asks for too, but that wheel is 30 MiB and the image has
  CMake 4); ``diskcache`` (a llama-cpp-python dependency the image lacks; numpy, jinja2 and
  typing-extensions are installed there); and ``uv``, which ``gpuprov build`` runs.
* ``tiny-llama.gguf``: a 2-layer llama with random weights (about 0.3 MiB) for the one completion on the
  GPU: the real load / offload / generate path of llama.cpp, not a meaningful text. The real small model
  the CPU tests use (Gemma 3 270M, 240 MiB) cannot travel.

The sdist comes from the test cache (``tests/integration/llama_cpp_env.py`` downloads it there), the
wheels from PyPI with ``pip download --only-binary=:all: --no-deps`` for the device's Python and platform.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

#: the wheels the offline device build needs (see the module docstring); versions are those the CPU build
#: here resolved (scikit-build-core and its dependencies) or the newest (the rest)
WHEELS = ("scikit-build-core==1.1.2", "pathspec==1.1.1", "packaging==26.4", "ninja", "diskcache")
#: the device image's Python (KINDS.md: python3 is 3.12.3 there)
DEVICE_PYTHON = "3.12"
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
    "manylinux_2_5_x86_64",
)
TRAVEL_LIMIT_MIB = 64


def _dropped(relative: str) -> bool:
    """Is this member (path below the sdist's top folder) one a build never reads?"""
    parts = relative.split("/")
    if ".git" in parts:  # the top-level .git/ and the submodule's gitdir pointer vendor/llama.cpp/.git
        return True
    if relative.startswith("vendor/llama.cpp/models/") and relative.endswith(".gguf"):
        return True
    if relative.startswith("vendor/llama.cpp/docs/") or relative == "vendor/llama.cpp/docs":
        return True
    return (
        parts[0] == "tests"
        or relative.startswith(("vendor/llama.cpp/tests/", "vendor/llama.cpp/ggml/tests/"))
        or (relative in ("vendor/llama.cpp/tests", "vendor/llama.cpp/ggml/tests"))
    )


def trim_sdist(src: Path, out_dir: Path) -> Path:
    """``src`` (an llama-cpp-python sdist .tar.gz) without what :func:`_dropped` names, as out_dir/<same name>."""
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / src.name
    tmp = dest.with_suffix(".partial")
    with tarfile.open(src, "r:gz") as tin, tarfile.open(tmp, "w:gz", compresslevel=9) as tout:
        for member in tin:
            relative = member.name.partition("/")[2]
            if relative and _dropped(relative):
                continue
            if member.isfile():
                tout.addfile(member, tin.extractfile(member))
            else:
                tout.addfile(member)
    tmp.replace(dest)
    return dest


def download_wheels(out_dir: Path, python_version: str = DEVICE_PYTHON) -> list[Path]:
    """The wheels of :data:`WHEELS` and this environment's uv, for ``python_version`` on x86-64 Linux."""
    from importlib.metadata import version

    from uv import find_uv_bin

    out_dir.mkdir(parents=True, exist_ok=True)
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run(
        [
            find_uv_bin(),
            "tool",
            "run",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            python_version,
            "--implementation",
            "cp",
            *platforms,
            "-d",
            str(out_dir),
            *WHEELS,
            f"uv=={version('uv')}",
        ],
        check=True,
    )
    return sorted(out_dir.glob("*.whl"))


def write_tiny_gguf(path: Path, *, seed: int = 1) -> Path:
    """A 2-layer llama (n_embd 64) with random weights and a byte-fallback SentencePiece vocabulary.

    The end-of-text token's output row is zero while every other row is random, so greedy sampling never
    picks it: a completion always yields the tokens asked for."""
    import numpy as np
    from gguf import GGUFWriter, TokenType

    rng = np.random.default_rng(seed)
    n_embd, n_layer, n_head, n_ff, n_ctx = 64, 2, 4, 128, 256
    words = ["the", "capital", "of", "france", "is", "paris", "a", "city", "and", "river", "on", "in", "it"]
    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256)), "▁", *("▁" + w for w in words)]
    types = [
        TokenType.UNKNOWN,
        TokenType.CONTROL,
        TokenType.CONTROL,
        *[TokenType.BYTE] * 256,
        *[TokenType.NORMAL] * (1 + len(words)),
    ]
    scores = [0.0] * 259 + [-float(i) for i in range(1, 2 + len(words))]
    n_vocab = len(tokens)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    writer = GGUFWriter(str(path), "llama")
    writer.add_name("gpuprov tiny random llama (build check only)")
    writer.add_context_length(n_ctx)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head)
    writer.add_rope_dimension_count(n_embd // n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(0)  # all F32
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_tensor("token_embd.weight", w(n_vocab, n_embd))
    for i in range(n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"blk.{i}.{name}.weight", w(n_embd, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", w(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", w(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", w(n_embd, n_ff))
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    output = w(n_vocab, n_embd)
    output[:3] = 0.0  # <unk>, <s>, </s>: logit 0 where some random row is always higher
    writer.add_tensor("output.weight", output)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _mib(paths: list[Path]) -> float:
    return sum(p.stat().st_size for p in paths) / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sdist", type=Path, help="llama-cpp-python sdist (default: the test cache's)")
    parser.add_argument("--out", type=Path, default=PROJECT / ".cache/device-llama")
    parser.add_argument("--python-version", default=DEVICE_PYTHON)
    parser.add_argument("--no-wheels", action="store_true", help="skip the PyPI download (trim and model only)")
    args = parser.parse_args(argv)
    if args.sdist is None:
        sys.path.insert(0, str(PROJECT / "tests/integration"))
        from tests.integration.llama_cpp_env import sdist

        args.sdist = sdist()
    if not args.sdist.is_file():
        print(f"no such sdist: {args.sdist}", file=sys.stderr)
        return 2
    out: Path = args.out
    trimmed = trim_sdist(args.sdist, out)
    print(f"sdist: {trimmed.name}: {args.sdist.stat().st_size / 2**20:.1f} MiB -> {_mib([trimmed]):.1f} MiB")
    model = write_tiny_gguf(out / "tiny-llama.gguf")
    print(f"model: {model.name}: {_mib([model]):.2f} MiB")
    if not args.no_wheels:
        wheels = download_wheels(out / "wheelhouse", args.python_version)
        print(f"wheelhouse: {len(wheels)} wheels, {_mib(wheels):.1f} MiB: " + ", ".join(w.name for w in wheels))
    total = _mib([p for p in out.rglob("*") if p.is_file()])
    print(f"total: {total:.1f} MiB of the {TRAVEL_LIMIT_MIB} MiB that travel (with the working tree)")
    rel = out.relative_to(PROJECT) if out.is_relative_to(PROJECT) else out
    print(f'device: run(command="bash scripts/device/llama_cuda_build.sh {rel} all", carry=["{rel}"], timeout_s=570)')
    return 0 if total < TRAVEL_LIMIT_MIB - 4 else 1


if __name__ == "__main__":
    raise SystemExit(main())
