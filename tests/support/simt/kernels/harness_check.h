// Kernels that test the SIMT harness itself (tests/support/simt/kernels/harness_check.cu): what it computes
// (shuffles, votes, atomics, shared memory) and what it must refuse (divergent barriers, mismatched
// warp collectives, accesses past the dynamic shared memory).
#pragma once
#include <cuda_runtime.h>

namespace simt_tests {

// Runs check `name` on `blocks` x `threads`, writing its int results to `out` (see the .cu for sizes).
cudaError_t launch_harness_check(const char* name, int blocks, int threads, int* out);

}  // namespace simt_tests
