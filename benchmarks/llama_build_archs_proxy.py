"""What a build for llama.cpp's default CUDA architecture list costs, measured on a bounded sample.

    python3 benchmarks/llama_build_archs_proxy.py --llama-cpp DIR --work DIR --arch 90 [--sample 12]
        [--deadline-s 300] [--full-build-s S --full-lib-bytes B] [--json OUT]

Why a proxy: without CMAKE_CUDA_ARCHITECTURES (and with GGML_NATIVE off) ggml-cuda compiles every one of
its ~190 CUDA files for 7 targets with CUDA 13 (75-virtual 80-virtual 86-real 89-real 90-virtual
120a-real 121a-real; 10 with CUDA 12), several times the device code of a build for the one GPU that is
here. The one-architecture build already takes minutes on 16 cores, and one device command may run 10
minutes at most, 15 for the whole session: the full default build does not fit next to it.

What it measures instead: llama.cpp (``--llama-cpp``, the vendor/llama.cpp of the sdist) configured twice
in the same way but for the architectures, once ``--arch`` alone and once llama.cpp's default list; then
the same stratified sample of ggml-cuda's object files (every k-th of the sorted list: plain kernels,
flash-attention, mmq and mmf template instances in their proportions) built in each, with ninja, all in
parallel. Each object's compile time comes from ninja's own log (.ninja_log), its size from the file.
Over the objects both builds finished, the ratios default/one-arch of the summed compile times and of
the summed object sizes, applied to the real one-architecture build (``--full-build-s``,
``--full-lib-bytes``), estimate the full default build's time and libggml-cuda.so size.

Limits: host code compiles once per object whichever the targets, so light objects scale less than heavy
template instances — the stratified sample keeps their mix; objects the deadline cut are left out of both
sums (the count is printed); the link step is not sampled.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

CUDA_OBJECT = re.compile(r"^(ggml/src/ggml-cuda/CMakeFiles/ggml-cuda\.dir/\S+\.cu\.o):", re.M)
USING_ARCHS = re.compile(r"Using CMAKE_CUDA_ARCHITECTURES=(\S*)")
COMMON_OPTIONS = [
    "-G",
    "Ninja",
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_CUDA=ON",
    "-DGGML_NATIVE=OFF",
    "-DGGML_CCACHE=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_TOOLS=OFF",
    "-DLLAMA_BUILD_SERVER=OFF",
    "-DLLAMA_BUILD_APP=OFF",
]


def cuda_objects(targets_listing: str) -> list[str]:
    """ggml-cuda's object files in `ninja -t targets all` output, sorted."""
    return sorted(set(CUDA_OBJECT.findall(targets_listing)))


def stratified_sample(objects: list[str], n: int) -> list[str]:
    """Every k-th of the sorted objects, k chosen for about ``n`` of them: the kinds keep their proportions."""
    if n <= 0 or not objects:
        return []
    step = max(1, math.ceil(len(objects) / n))
    return objects[::step][:n]


def ninja_log_durations(text: str) -> dict[str, int]:
    """{output path: milliseconds} from a .ninja_log (v5 and later: start, end, mtime, path, hash)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) < 4 or not parts[0].isdigit() or not parts[1].isdigit():
            continue
        out[parts[3]] = int(parts[1]) - int(parts[0])  # a rebuilt output: its last entry wins
    return out


def compare(
    single_ms: dict[str, int], default_ms: dict[str, int], single_bytes: dict[str, int], default_bytes: dict[str, int]
) -> dict[str, float | int]:
    """Ratios default/one-arch over the objects both builds finished."""
    common = sorted(set(single_ms) & set(default_ms) & set(single_bytes) & set(default_bytes))
    if not common:
        return {"objects_compared": 0}
    t1, t2 = sum(single_ms[o] for o in common), sum(default_ms[o] for o in common)
    b1, b2 = sum(single_bytes[o] for o in common), sum(default_bytes[o] for o in common)
    return {
        "objects_compared": len(common),
        "compile_s_one_arch": t1 / 1000,
        "compile_s_default": t2 / 1000,
        "time_ratio": t2 / t1 if t1 else float("nan"),
        "object_mib_one_arch": b1 / 2**20,
        "object_mib_default": b2 / 2**20,
        "size_ratio": b2 / b1 if b1 else float("nan"),
    }


def _configure(llama_cpp: Path, build: Path, archs: str | None, timeout_s: float, extra: list[str]) -> str | None:
    options = [*COMMON_OPTIONS, *extra] + ([f"-DCMAKE_CUDA_ARCHITECTURES={archs}"] if archs else [])
    try:
        proc = subprocess.run(
            ["cmake", "-S", str(llama_cpp), "-B", str(build), *options],
            capture_output=True,
            text=True,
            timeout=max(1.0, timeout_s),
        )
    except subprocess.TimeoutExpired:
        raise SystemExit(f"cmake configure of {build} did not finish in {timeout_s:.0f} s") from None
    (build / "configure.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"cmake configure failed in {build} (see {build}/configure.log): {proc.stderr[-600:]}")
    m = USING_ARCHS.search(proc.stdout)
    return m.group(1) if m else None


def _build(build: Path, objects: list[str], timeout_s: float) -> tuple[float, bool]:
    jobs = str(min(os.cpu_count() or 1, max(1, len(objects))))
    start = time.monotonic()
    try:
        subprocess.run(
            ["ninja", "-C", str(build), "-k", "0", "-j", jobs, *objects],
            capture_output=True,
            timeout=max(1.0, timeout_s),
            check=False,
        )
        finished = True
    except subprocess.TimeoutExpired:
        finished = False
    return time.monotonic() - start, finished


def _measure(build: Path, objects: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    log = build / ".ninja_log"
    durations = ninja_log_durations(log.read_text()) if log.exists() else {}
    sizes = {o: (build / o).stat().st_size for o in objects if (build / o).exists()}
    return {o: ms for o, ms in durations.items() if o in sizes}, sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llama-cpp", type=Path, required=True, help="llama.cpp source (vendor/llama.cpp)")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--arch", required=True, help="the one architecture, e.g. 90")
    parser.add_argument("--sample", type=int, default=12)
    parser.add_argument("--deadline-s", type=float, default=300.0, help="stop the sample builds by then")
    parser.add_argument("--full-build-s", type=float, help="the real one-architecture build's time")
    parser.add_argument("--full-lib-bytes", type=int, help="the real one-architecture libggml-cuda.so size")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--cmake-arg", action="append", default=[], help="one more option for both configures")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.deadline_s

    def left() -> float:
        return deadline - time.monotonic()

    one, default = args.work / "one-arch", args.work / "default-archs"
    for d in (one, default):
        d.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    one_archs = _configure(args.llama_cpp, one, args.arch, left(), args.cmake_arg)
    default_archs = _configure(args.llama_cpp, default, None, left(), args.cmake_arg)
    print(f"configured both in {time.monotonic() - t0:.0f} s: one arch {one_archs}, default {default_archs}")
    listing = subprocess.run(
        ["ninja", "-C", str(one), "-t", "targets", "all"], capture_output=True, text=True, check=True
    ).stdout
    objects = cuda_objects(listing)
    sample = stratified_sample(objects, args.sample)
    print(f"ggml-cuda objects: {len(objects)}; sample: {len(sample)}")
    results: dict[str, object] = {
        "one_arch": one_archs,
        "default_archs": default_archs,
        "cuda_objects": len(objects),
        "sample": sample,
    }
    wall_one, done_one = _build(one, sample, left() * 0.3)  # the default build gets the larger share
    wall_default, done_default = _build(default, sample, left() - 10)
    results.update(
        wall_s_one_arch=wall_one, wall_s_default=wall_default, finished_one_arch=done_one, finished_default=done_default
    )
    ms1, b1 = _measure(one, sample)
    ms2, b2 = _measure(default, sample)
    ratios = compare(ms1, ms2, b1, b2)
    results.update(ratios)
    cut_one, cut_default = ("" if done else " (cut)" for done in (done_one, done_default))
    compared = ratios.get("objects_compared", 0)
    print(
        f"sample wall: one arch {wall_one:.0f} s{cut_one}, default {wall_default:.0f} s{cut_default}; "
        f"compared {compared} of {len(sample)}"
    )
    if ratios.get("objects_compared"):
        print(f"compile time default/one-arch: {ratios['time_ratio']:.2f}x; object size: {ratios['size_ratio']:.2f}x")
        if args.full_build_s:
            results["estimated_full_default_build_s"] = args.full_build_s * float(ratios["time_ratio"])
            print(
                f"estimated default-list build: {results['estimated_full_default_build_s']:.0f} s "
                f"(one-arch build: {args.full_build_s:.0f} s)"
            )
        if args.full_lib_bytes:
            results["estimated_default_lib_mib"] = args.full_lib_bytes * float(ratios["size_ratio"]) / 2**20
            print(
                f"estimated default-list libggml-cuda.so: {results['estimated_default_lib_mib']:.0f} MiB "
                f"(one-arch: {args.full_lib_bytes / 2**20:.0f} MiB)"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if ratios.get("objects_compared") else 1


if __name__ == "__main__":
    sys.exit(main())
