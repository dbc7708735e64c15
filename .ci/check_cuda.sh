#!/usr/bin/env bash
# Compile-checks the CUDA kernels without a GPU: every csrc/**/*.cu through `nvcc -c` for sm_80 and
# sm_90 (warnings as errors in our code). With --bindings it also syntax-checks the torch-facing
# csrc/cuda/*.cpp with the host compiler against the installed torch headers; a CPU-only torch wheel
# lacks the generated c10/cuda/impl/cuda_cmake_macros.h, so an empty stand-in is made in a temporary
# directory for that check only. Exits non-zero on the first failure.
#
#   .ci/check_cuda.sh [--bindings]      (NVCC=/path/to/nvcc to pick a compiler)
set -euo pipefail

cd "$(dirname "$0")/.."
NVCC="${NVCC:-nvcc}"
ARCH_FLAGS=(-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90)
# The flags setup.py gives nvcc in a release build, plus the half/bfloat16 conversion guards that
# torch's CUDAExtension adds (so implicit conversions fail here as they would there).
NVCC_FLAGS=(-std=c++17 -O3 -lineinfo --use_fast_math -Werror all-warnings --expt-relaxed-constexpr
  -D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__ -D__CUDA_NO_BFLOAT16_CONVERSIONS__
  -D__CUDA_NO_HALF2_OPERATORS__)

check_bindings=0
for arg in "$@"; do
  case "$arg" in
    --bindings) check_bindings=1 ;;
    *) echo "usage: $0 [--bindings]" >&2; exit 2 ;;
  esac
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

mapfile -t kernels < <(find csrc -name '*.cu' | sort)
if [ "${#kernels[@]}" -eq 0 ]; then
  echo "check_cuda: no .cu files under csrc/" >&2
  exit 1
fi
echo "check_cuda: $("$NVCC" --version | tail -1)"
for source in "${kernels[@]}"; do
  echo "check_cuda: nvcc sm_80 + sm_90  $source"
  "$NVCC" -c "${ARCH_FLAGS[@]}" "${NVCC_FLAGS[@]}" "$source" -o "$work/$(basename "$source").o"
done
echo "check_cuda: ${#kernels[@]} .cu file(s) compiled for sm_80 and sm_90"

if [ "$check_bindings" -eq 1 ]; then
  python="${PYTHON:-python}"
  torch_include="$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "include"))')"
  python_include="$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  cuda_include="${CUDA_HOME:-/usr/local/cuda}/include"
  [ -f "$cuda_include/cuda_runtime.h" ] || cuda_include="$(dirname "$(command -v "$NVCC")")/../include"
  mkdir -p "$work/stub/c10/cuda/impl"
  if [ ! -f "$torch_include/c10/cuda/impl/cuda_cmake_macros.h" ]; then
    echo "// stand-in for the header a CUDA torch build generates (syntax check only)" \
      > "$work/stub/c10/cuda/impl/cuda_cmake_macros.h"
  fi
  mapfile -t bindings < <(find csrc/cuda -name '*.cpp' | sort)
  for source in "${bindings[@]}"; do
    echo "check_cuda: ${CXX:-c++} -fsyntax-only  $source"
    "${CXX:-c++}" -fsyntax-only -std=c++20 -Wall -Werror -Wno-error=deprecated-declarations \
      -isystem "$work/stub" -isystem "$torch_include" -isystem "$torch_include/torch/csrc/api/include" \
      -isystem "$python_include" -isystem "$cuda_include" -DSWINIR_KERNELS_WITH_CUDA "$source"
  done
  echo "check_cuda: ${#bindings[@]} binding(s) syntax-checked"
fi
