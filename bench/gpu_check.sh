#!/usr/bin/env bash
# The GPU script: on a machine with CUDA, build with CUDA, run the whole test suite (CUDA-only tests
# included), run every benchmark and the profiles, and leave logs and CSV rows in OUTDIR.
#   usage: bash bench/gpu_check.sh OUTDIR [STAGES] [pytest args...]
#   STAGES: a comma-separated subset of test,bench,profile (default test,bench,profile); the build
#   always runs first (seconds when nothing changed).
# With the device tool, whose commands stop after 10 minutes: run(command="bash bench/gpu_check.sh
# $OUT test"), then "... $OUT bench,profile" in a second call if one call cannot hold everything.
# Exit status: non-zero if the build or any test failed (benchmarks run regardless).
set -uo pipefail
out=${1:?usage: bash bench/gpu_check.sh OUTDIR [STAGES] [pytest args...]}
shift
stages=test,bench,profile
if [ $# -gt 0 ] && [[ $1 =~ ^(test|bench|profile)(,(test|bench|profile))*$ ]]; then stages=$1; shift; fi
wants() { [[ ,$stages, == *,$1,* ]]; }
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 SWINIR_KERNELS_CUDA=1 MAX_JOBS=${MAX_JOBS:-$(nproc)}
status=0

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, torch.cuda.get_device_name())"
  git rev-parse HEAD 2>/dev/null || echo "commit: unknown (not a git checkout)"
} 2>&1 | tee "$out/env.txt"

echo "== build (CUDA, TORCH_CUDA_ARCH_LIST defaults to this GPU's arch)"
if ! python3 setup.py build_ext --inplace >"$out/build.log" 2>&1; then
  tail -40 "$out/build.log"; echo "BUILD FAILED"; exit 1
fi
tail -3 "$out/build.log"

if wants test; then
  echo "== selftest (first-use checks of every op x backend x dtype, SwinIR-M timings)"
  python3 -m swinir_kernels.selftest --device cuda 2>&1 | tee "$out/selftest.md" | tail -45
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  echo "== tests (all, CUDA included)"
  python3 -m pytest -q -rs -p no:cacheprovider --junitxml="$out/tests.xml" "$@" 2>&1 | tee "$out/tests.log" | tail -30
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi

run_bench() {
  echo "-- $*" | tee -a "$out/bench.log"
  python3 "$@" >>"$out/bench.log" 2>&1 || { echo "FAILED: $* (see bench.log)"; status=1; }
}
if wants bench; then
  echo "== benchmarks (rows are appended to bench/results/<device>.csv and copied to OUTDIR)"
  for dtype in bfloat16 float16 float32; do
    run_bench bench/bench_window_attention.py --device cuda --dtype $dtype
    run_bench bench/bench_swinir.py --device cuda --dtype $dtype
  done
  run_bench bench/bench_window_partition.py --device cuda
  run_bench bench/bench_pixel_shuffle.py --device cuda
fi
if wants profile; then
  for dtype in bf16 fp32; do
    run_bench bench/profile_swinir.py --device cuda --dtype $dtype
  done
fi
# Only this run's GPU rows: the CPU files in bench/results are not news, and the tool returns 8 files.
for csv in bench/results/*.csv; do
  case "$csv" in *cpu-*) ;; *) cp "$csv" "$out/" ;; esac
done
[ -f "$out/bench.log" ] && tail -80 "$out/bench.log"
ls -la "$out"
exit $status
