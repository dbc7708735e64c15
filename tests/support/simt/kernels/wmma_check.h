// Parameters of the WMMA emulation's test kernels (tests/support/simt/kernels/wmma_check.cu).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace simt_tests {

struct WmmaCheckParams {
  const void* a;  // warps tiles of A, each a_tile elements apart, leading dimension lda
  const void* b;
  const void* c;  // accumulator type
  void* d;        // accumulator type, same layout as c's tiles (ldc), stored d_row_major or not
  int64_t a_tile, b_tile, c_tile;
  unsigned lda, ldb, ldc;
  bool c_row_major, d_row_major, round_tf32;
  float alpha;
  int warps;
};

// kind: "<input>-<A layout>-<B layout>-<accumulator>-m<M>n<N>k<K>", e.g. "f16-row-col-f32-m16n16k16".
cudaError_t launch_wmma_check(const char* kind, const WmmaCheckParams& params);

}  // namespace simt_tests
