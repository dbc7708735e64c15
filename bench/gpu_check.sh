#!/usr/bin/env bash
# The GPU script: on a machine with CUDA, build with CUDA, then run the chosen stages and leave logs,
# pytest-benchmark JSON and CSV rows in OUTDIR (made absolute before anything changes directory).
#   usage: bash bench/gpu_check.sh OUTDIR [STAGES] [pytest args...]
#   STAGES: comma-separated, from test, test-attention, test-others, attn-fwd, attn-bwd-bf16,
#   attn-bwd-fp32, copies, model, model-compiled, profile (default: test and every stage after
#   test-others, in that order); the build always runs first (seconds when nothing changed).
#   The pytest args go to the test stage and to the pytest-benchmark stages (e.g. -k bfloat16).
# Every benchmark and profile row names an explicit backend: cuda, triton, reference, or
# reference-compiled (torch.compile of the reference); never `auto`, whose choice depends on the
# first-use checks of this device.
#
# With the device tool, whose commands stop after 10 minutes, run ONE stage per call, e.g.
#   run(command="bash bench/gpu_check.sh $OUT test")  then  "... $OUT attn-fwd", "... $OUT attn-bwd-bf16", ...
# The commit is the checkout's (git), else the one setup.py recorded at build time in the git-ignored
# swinir_kernels/_build_info.py: carry that file (run `python3 setup.py --name` here to write it), or
# set SWINIR_KERNELS_COMMIT=<commit> in the command.
# Regression guard: SWINIR_BENCH_BASELINE=<a --benchmark-json file of an earlier run on the same GPU>
# makes the benchmark stages fail on a median slowdown beyond SWINIR_BENCH_FAIL (default 10%).
#
# Time per stage on an H100/H200 with cold Triton and Inductor caches (an estimate, not measured: no
# GPU has run this yet). Method: compiles x seconds each + benchmarks x seconds each + ~60 s for the
# build check and imports. Triton: the specializations each stage launches (one configuration per
# kernel x dtype x head_dim/layout constexprs, chosen by shape: no autotuning) x 0.6-0.9 s per sm_90
# compile; bench/static_report.py compiles every specialization the ops launch for the tests' and the
# model's shapes: 68, 49 s of sm_90 compile time on one CPU core (bench/results/static-report.md);
# Inductor: ~10-25 s per forward graph, ~20-40 s per forward+backward graph (assumed; FlexAttention's
# are the slow end); pytest-benchmark: ~0.7 s per benchmark (--benchmark-max-time 0.5 s plus calibration
# and the untimed calls). Counts from `python -m pytest bench/ --bench-device cuda --collect-only -q`.
#   test            the selftest (first-use checks, SwinIR-M timings: ~1 min) and the whole suite with
#                   CUDA: the suite's Triton launches compile once each, ~70-100 specializations x 0.6-0.9 s
#                   = 1-1.5 min, plus ~3 min of tests: ~5-6 min. test-attention and test-others split it
#                   if it runs long.
#   attn-fwd        36 benchmarks (3 shapes x bf16/fp32 x 6 providers): 12 Inductor graphs (reference-
#                   compiled + flex) 2-5 min, Triton 4 specializations 3-4 s, timing ~25 s:
#                   ~4-7 min.
#   attn-bwd-bf16   18 benchmarks each (3 shapes x 6 providers): 6 forward+backward graphs 2-4 min,
#   attn-bwd-fp32   Triton 4 specializations (forward and backward kernels, 2 head dims) 3-4 s,
#                   timing ~20 s: ~3-6 min.
#   copies          120 benchmarks (partition/reverse 40, pixel shuffle 80): 24 small Inductor graphs
#                   2-4 min, Triton ~20 specializations (untuned) ~15 s, timing ~85 s: ~4-6 min.
#   model           bench_swinir.py, 3 presets x bf16/fp32 x cuda/triton/reference: Triton ~4
#                   specializations ~3 s, 18 model runs x 23 forwards: ~2-3 min.
#   model-compiled  reference-compiled for the 3 presets in bf16: 3 whole-model Inductor compiles,
#                   1-2 min each: ~4-7 min.
#   profile         profile_swinir.py classical_sr_x4 256x256 bf16, 4 providers: one whole-model
#                   compile 1-2 min plus 4 profiled forwards: ~2-4 min.
# Each stage is also cut by `timeout -s INT` at SWINIR_STAGE_LIMIT seconds (default 540), so pytest
# still writes its JSON and the logs reach OUTDIR before the tool's 10-minute limit.
# Exit status: non-zero if the build, a test, a benchmark stage or the regression guard failed.
set -uo pipefail
usage="usage: bash bench/gpu_check.sh OUTDIR [STAGES] [pytest args...]"
all_stages=test,attn-fwd,attn-bwd-bf16,attn-bwd-fp32,copies,model,model-compiled,profile
[ $# -ge 1 ] || { echo "$usage" >&2; exit 2; }
mkdir -p "$1" && out=$(cd "$1" && pwd) || { echo "OUTDIR: cannot create $1" >&2; exit 2; }
shift
stages=$all_stages
stage_names='test|test-attention|test-others|attn-fwd|attn-bwd-bf16|attn-bwd-fp32|copies|model|model-compiled|profile'
if [ $# -gt 0 ] && [[ $1 =~ ^($stage_names)(,($stage_names))*$ ]]; then stages=$1; shift; fi
wants() { [[ ,$stages, == *,$1,* ]]; }
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 SWINIR_KERNELS_CUDA=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} PYTHONPATH=$PWD
export SWINIR_BENCH_RESULTS_DIR=$out  # CSV rows of this run go to OUTDIR, not into the tree
limit=${SWINIR_STAGE_LIMIT:-540}
status=0

echo "== build (CUDA, TORCH_CUDA_ARCH_LIST defaults to this GPU's arch)"
if ! python3 setup.py build_ext --inplace >"$out/build.log" 2>&1; then
  tail -40 "$out/build.log"; echo "BUILD FAILED"; exit 1
fi
tail -3 "$out/build.log"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, torch.cuda.get_device_name())"
  python3 -c "from bench import utils; print('commit', utils.git_commit())"
  echo "stages: $stages"
} 2>&1 | tee "$out/env.txt"

run_tests() {  # name, pytest args...: a test stage, its log and junit XML in OUTDIR
  local name=$1; shift
  echo "== $name: python -m pytest $*"
  timeout -s INT "$limit" python3 -m pytest -q -rs -p no:cacheprovider --junitxml="$out/$name.xml" "$@" 2>&1 \
    | tee "$out/$name.log" | tail -30
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
}
if wants test; then
  echo "== selftest (first-use checks of every op x backend x dtype, SwinIR-M timings)"
  timeout -s INT "$limit" python3 -m swinir_kernels.selftest --device cuda 2>&1 | tee "$out/selftest.md" | tail -45
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  run_tests test "$@"
fi
wants test-attention && run_tests test-attention tests/kernels/test_window_attention.py "$@"
wants test-others && run_tests test-others --ignore=tests/kernels/test_window_attention.py "$@"

compare=()
if [ -n "${SWINIR_BENCH_BASELINE:-}" ]; then
  compare=(--benchmark-compare="$SWINIR_BENCH_BASELINE" --benchmark-compare-fail="median:${SWINIR_BENCH_FAIL:-10%}")
fi
# One pytest-benchmark stage: its JSON, log and CSV rows (and the docs/benchmarks.md tables, printed) in OUTDIR.
bench_stage() {
  local name=$1; shift
  echo "== $name: python -m pytest $*"
  timeout -s INT "$limit" python3 -m pytest -q -rs -p no:cacheprovider --benchmark-only --benchmark-max-time=0.5 \
    --benchmark-json="$out/$name.json" "${compare[@]}" "$@" >"$out/$name.log" 2>&1 || { echo "FAILED: $name (see $name.log)"; status=1; }
  tail -5 "$out/$name.log"
  [ -s "$out/$name.json" ] && python3 -m bench.results_from_json "$out/$name.json" >"$out/$name-tables.md" 2>&1
}
wants attn-fwd && bench_stage attn-fwd bench/bench_window_attention.py -k "test_forward and not test_forward_backward" "$@"
wants attn-bwd-bf16 && bench_stage attn-bwd-bf16 bench/bench_window_attention.py -k test_forward_backward \
  --bench-dtypes bfloat16 "$@"
wants attn-bwd-fp32 && bench_stage attn-bwd-fp32 bench/bench_window_attention.py -k test_forward_backward \
  --bench-dtypes float32 "$@"
# The attention rows so far next to bench/predict_attention.py's predictions (bf16, SwinIR-M and -S shapes).
attention_runs=()
for name in attn-fwd attn-bwd-bf16; do [ -s "$out/$name.json" ] && attention_runs+=("$out/$name.json"); done
if [ ${#attention_runs[@]} -gt 0 ]; then
  python3 -m bench.predict_attention --measured "${attention_runs[@]}" --out "$out/attention-measured-vs-predicted.md" \
    >/dev/null 2>&1 || echo "predict_attention.py --measured failed (see it by hand)"
fi
wants copies && bench_stage copies bench/bench_window_partition.py bench/bench_pixel_shuffle.py "$@"

run_script() {  # name, script args...: a whole-model script, its output in OUTDIR/<name>.log
  local name=$1; shift
  echo "-- $*" | tee -a "$out/$name.log"
  timeout -s INT "$limit" python3 "$@" >>"$out/$name.log" 2>&1 || { echo "FAILED: $* (see $name.log)"; status=1; }
}
if wants model; then
  for dtype in bfloat16 float32; do
    run_script model bench/bench_swinir.py --device cuda --dtype $dtype --providers cuda triton reference
  done
  tail -20 "$out/model.log"
fi
if wants model-compiled; then
  run_script model-compiled bench/bench_swinir.py --device cuda --dtype bfloat16 --providers reference-compiled reference
  tail -8 "$out/model-compiled.log"
fi
if wants profile; then
  run_script profile bench/profile_swinir.py --device cuda --dtype bf16 --results-dir "$out"
  tail -40 "$out/profile.log"
fi
ls -la "$out"
exit $status
