#!/usr/bin/env bash
# The real CUDA side of `gpuprov build llama-cpp` (issue 8), on the device machine: no network, one GPU,
# at most 10 minutes a command, 15 for the whole session.
#
# Prepare here first (needs PyPI once):  .venv/bin/python benchmarks/llama_build_prepare.py
# then, with the device tool, from the repository root:
#   run(command="bash scripts/device/llama_cuda_build.sh .cache/device-llama all", carry=[".cache/device-llama"],
#       timeout_s=570)
# Phases (each stays inside BUDGET_S, default 540 s, counted from the script's start):
#   build  `gpuprov build llama-cpp` for the detected architecture only, from the trimmed sdist, offline
#          (--wheelhouse), into the image's python3; gpuprov's checks (CUDA linkage, cuobjdump kernels,
#          llama_supports_gpu_offload(), one completion of the tiny GGUF with every layer on the GPU);
#          prints the build time and libggml-cuda.so's size, keeps cuobjdump's real listings.
#   archs  llama.cpp's default architecture list, by the bounded proxy of benchmarks/llama_build_archs_proxy.py
#          (why not the full build: see that file); estimates that build's time and library size.
#   all    build, then archs with what is left of the budget.
# What comes back under $OUT (at most 8 files): summary.txt, host.txt, build.json, build.log(.gz),
# cuobjdump-list-elf.txt, cuobjdump-list-ptx.txt, proxy.txt, proxy.json.
set -uo pipefail

DIR=${1:?usage: llama_cuda_build.sh PREPARED_DIR [build|archs|all]}
PHASE=${2:-all}
BUDGET_S=${BUDGET_S:-540}
OUT=${OUT:-/tmp/llama-cuda-out}
cd "$(dirname "$0")/../.." || exit 2
ROOT=$PWD
DIR=$(cd "$DIR" && pwd) || { echo "no prepared folder $1 (benchmarks/llama_build_prepare.py makes it)"; exit 2; }
mkdir -p "$OUT"
START=$(date +%s)
left() { local s=$((BUDGET_S - ($(date +%s) - START))); echo $((s > 1 ? s : 1)); }  # never 0: `timeout 0` waits forever
say() { echo "[$(($(date +%s) - START)) s] $*" | tee -a "$OUT/summary.txt"; }
export PYTHONUNBUFFERED=1

SDIST=$(ls "$DIR"/llama_cpp_python-*.tar.gz 2>/dev/null | head -1)
MODEL=$DIR/tiny-llama.gguf
WHEELS=$DIR/wheelhouse
for f in "$SDIST" "$MODEL" "$WHEELS"; do
  [ -e "$f" ] || { say "missing ${f:-the trimmed sdist} in $DIR: run benchmarks/llama_build_prepare.py here first"; exit 2; }
done

# -- tools: nvcc, cmake/ninja (the image's pip ones sit beside python3), uv (from the wheelhouse) ----------
PY=$(command -v python3)
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
command -v cmake >/dev/null || export PATH=$(dirname "$PY"):$PATH
if ! command -v uv >/dev/null; then
  mkdir -p /tmp/uvbin
  "$PY" - "$WHEELS" /tmp/uvbin/uv <<'EOF' || { say "no uv wheel in the wheelhouse"; exit 2; }
import sys, zipfile, glob
wheel = sorted(glob.glob(sys.argv[1] + "/uv-*.whl"))[-1]
with zipfile.ZipFile(wheel) as zf:
    name = next(n for n in zf.namelist() if n.endswith(".data/scripts/uv"))
    open(sys.argv[2], "wb").write(zf.read(name))
EOF
  chmod +x /tmp/uvbin/uv
  export PATH=/tmp/uvbin:$PATH
fi
CUDA_ROOT=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")
{
  echo "== nvidia-smi -L"; nvidia-smi -L
  echo "== nvcc"; nvcc --version | grep -E "release|Build"
  echo "== host compiler"; g++ --version | head -1
  echo "== what this nvcc accepts (crt/host_config.h)"
  grep -Hn "unsupported GNU version" "$CUDA_ROOT"/targets/*/include/crt/host_config.h \
    "$CUDA_ROOT"/include/crt/host_config.h 2>/dev/null | head -2
  echo "== cuBLAS in $CUDA_ROOT (ggml-cuda needs cublas_v2.h and libcublas.so)"
  ls "$CUDA_ROOT"/include/cublas_v2.h "$CUDA_ROOT"/targets/*/include/cublas_v2.h "$CUDA_ROOT"/lib64/libcublas.so \
    "$CUDA_ROOT"/targets/*/lib/libcublas.so 2>&1
  echo "== cmake / ninja / uv / python"; cmake --version | head -1; ninja --version; uv --version; "$PY" -V
  echo "== cores / memory"; nproc; free -m | head -2
} >"$OUT/host.txt" 2>&1
say "host: $(nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader 2>/dev/null | head -1)," \
    "$(nvcc --version | grep -o "release [0-9.]*, V[0-9.]*"), $(g++ -dumpfullversion 2>/dev/null), $(nproc) cores"

ls "$CUDA_ROOT"/include/cublas_v2.h "$CUDA_ROOT"/targets/*/include/cublas_v2.h >/dev/null 2>&1 \
  || say "warning: no cublas_v2.h in $CUDA_ROOT: configure will fail (CUDA::cublas); see host.txt"

gpuprov() { PYTHONPATH=$ROOT timeout "$(left)" "$PY" -m provision build llama-cpp "$@"; }

# the one-architecture build's time and library size, for the archs phase's estimates (set them when the
# archs phase runs in a command of its own: $OUT does not survive from one command to the next)
BUILD_S=${BUILD_S:-}
LIB_BYTES=${LIB_BYTES:-}
phase_build() {
  say "plan (dry run):"
  gpuprov --source "$SDIST" --wheelhouse "$WHEELS" --python "$PY" --dry-run 2>&1 | tee -a "$OUT/summary.txt"
  say "building for the detected architecture (budget left: $(left) s)"
  gpuprov --source "$SDIST" --wheelhouse "$WHEELS" --python "$PY" --smoke-model "$MODEL" \
    --log "$OUT/build.log" --json >"$OUT/build.json" 2>>"$OUT/summary.txt"
  local rc=$?
  [ -f "$OUT/build.log" ] && [ "$(stat -c %s "$OUT/build.log")" -gt 15000000 ] && gzip -f "$OUT/build.log"
  "$PY" - "$OUT/build.json" <<'EOF' | tee -a "$OUT/summary.txt"
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except ValueError:
    print("build: no JSON report (killed by the budget?)"); sys.exit()
res = r.get("result", {})
print(f"build: ok={r.get('ok')} in {res.get('duration_s', 0):.0f} s, -j {r['plan']['jobs']}, "
      f"archs {r['plan']['archs']}, nvcc {r['plan']['cuda_version']}, failed step: {res.get('failed_step')}")
for line in res.get("error_lines") or []:
    print("  " + line)
for c in r.get("checks", []):
    print(f"  {({True: 'pass', False: 'FAIL', None: 'skip'})[c['ok']]:4}  {c['name']}: {c['detail']}")
print(f"BUILD_S={res.get('duration_s', '')}")
EOF
  BUILD_S=$(sed -n 's/^BUILD_S=//p' "$OUT/summary.txt" | tail -1)
  local lib
  lib=$("$PY" -c "import glob, importlib.util as u, os; s = u.find_spec('llama_cpp'); \
print(next(iter(glob.glob(os.path.join(list(s.submodule_search_locations)[0], 'lib', 'libggml-cuda.so*'))), ''))" 2>/dev/null)
  if [ -n "$lib" ]; then
    LIB_BYTES=$(stat -L -c %s "$lib")
    say "libggml-cuda.so: $((LIB_BYTES / 1048576)) MiB ($LIB_BYTES bytes) at $lib"
    cuobjdump --list-elf "$lib" >"$OUT/cuobjdump-list-elf.txt" 2>&1
    cuobjdump --list-ptx "$lib" >"$OUT/cuobjdump-list-ptx.txt" 2>&1
    say "cuobjdump: $(wc -l <"$OUT/cuobjdump-list-elf.txt") ELF, $(wc -l <"$OUT/cuobjdump-list-ptx.txt") PTX entries;" \
        "archs: $(grep -o 'sm_[0-9]*[af]\?' "$OUT/cuobjdump-list-elf.txt" "$OUT/cuobjdump-list-ptx.txt" | sort -u | tr '\n' ' ')"
  else
    say "no libggml-cuda.so installed"
  fi
  return $rc
}

phase_archs() {
  local work=/tmp/llama-archs
  rm -rf "$work" && mkdir -p "$work"
  tar -xzf "$SDIST" -C "$work" || { say "cannot unpack $SDIST"; return 2; }
  local src
  src=$(ls -d "$work"/llama_cpp_python-*/vendor/llama.cpp)
  local arch
  arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')
  say "default-architecture proxy (budget left: $(left) s), one arch: $arch"
  timeout "$(left)" "$PY" "$ROOT/benchmarks/llama_build_archs_proxy.py" --llama-cpp "$src" --work "$work/build" \
    --arch "$arch" --deadline-s "$(($(left) - 20))" ${BUILD_S:+--full-build-s "$BUILD_S"} \
    ${LIB_BYTES:+--full-lib-bytes "$LIB_BYTES"} --json "$OUT/proxy.json" 2>&1 | tee "$OUT/proxy.txt" \
    | tee -a "$OUT/summary.txt"
}

status=0
case "$PHASE" in
  build) phase_build || status=$? ;;
  archs) phase_archs || status=$? ;;
  all)
    phase_build || status=$?
    if [ "$(left)" -gt 120 ]; then phase_archs || status=$?; else say "archs: skipped, $(left) s left"; fi
    ;;
  *) echo "unknown phase $PHASE (build, archs or all)"; exit 2 ;;
esac
say "done (exit $status)"
exit $status
