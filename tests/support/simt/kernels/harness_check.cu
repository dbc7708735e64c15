// Kernels that test the SIMT harness itself; tests/kernels/test_cuda_simt.py runs them and checks the results
// or the "simt error:" they must produce. Plain CUDA, launched through the project's launch helper.
#include <cuda_runtime.h>
#include <mma.h>

#include <cstring>

#include "harness_check.h"
#include "launch.cuh"

namespace simt_tests {
namespace {

// out[thread][0..9]: shfl from lane 3, shfl_xor 1, shfl_up 2, shfl_down 5, shfl width 8 from lane 1,
// ballot of odd lanes, all (lane < 32), any (lane == 7), shfl of a double, a warp sum by xor.
__global__ void warp_functions(int* out) {
  const int t = threadIdx.x, lane = t % 32;
  int* mine = out + t * 10;
  const int value = 100 * (t / 32) + lane;
  mine[0] = __shfl_sync(0xffffffffu, value, 3);
  mine[1] = __shfl_xor_sync(0xffffffffu, value, 1);
  mine[2] = __shfl_up_sync(0xffffffffu, value, 2);
  mine[3] = __shfl_down_sync(0xffffffffu, value, 5);
  mine[4] = __shfl_sync(0xffffffffu, value, 1, 8);
  mine[5] = static_cast<int>(__ballot_sync(0xffffffffu, lane % 2 == 1));
  mine[6] = __all_sync(0xffffffffu, lane < 32);
  mine[7] = __any_sync(0xffffffffu, lane == 7);
  mine[8] = static_cast<int>(__shfl_sync(0xffffffffu, 0.5 + value, 31));
  int sum = value;
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  mine[9] = sum;
}

// out[block]: the block's sum of thread indices through a static __shared__ accumulator and atomicAdd;
// out[gridDim.x]: the grid's count of threads through a global atomicAdd.
__global__ void atomics_and_static_shared(int* out) {
  __shared__ int block_sum;
  if (threadIdx.x == 0) block_sum = 0;
  __syncthreads();
  atomicAdd(&block_sum, static_cast<int>(threadIdx.x));
  atomicAdd(out + gridDim.x, 1);
  __syncthreads();
  if (threadIdx.x == 0) out[blockIdx.x] = block_sum;
}

// out[t] = the value thread t + 1 wrote to shared memory: with the barrier every order gives t + 1; without
// it the result depends on the order the harness runs the threads in (a shared-memory race).
template <bool with_barrier>
__global__ void neighbour_exchange(int* out) {
  extern __shared__ int exchange[];
  const int t = threadIdx.x;
  exchange[t] = t;
  if (with_barrier) __syncthreads();
  out[t] = exchange[(t + 1) % blockDim.x];
}

__global__ void early_return_before_barrier(int* out) {
  if (threadIdx.x < 16) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}

__global__ void barriers_at_two_sites(int* out) {
  if (threadIdx.x % 2 == 0) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}

__global__ void mismatched_masks(int* out) {
  const unsigned mask = threadIdx.x == 0 ? 0x0000ffffu : 0xffffffffu;
  out[threadIdx.x] = __shfl_xor_sync(mask, static_cast<int>(threadIdx.x), 1);
}

__global__ void shuffle_with_returned_lanes(int* out) {
  if (threadIdx.x >= 16) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, static_cast<int>(threadIdx.x), 1);
}

__global__ void wmma_on_half_a_warp(int* out) {
  __shared__ __align__(32) float tile[16 * 16];
  for (int i = threadIdx.x; i < 256; i += blockDim.x) tile[i] = 1.0f;
  __syncwarp();
  nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> accumulator;
  if (threadIdx.x < 16) nvcuda::wmma::load_matrix_sync(accumulator, tile, 16, nvcuda::wmma::mem_row_major);
  out[threadIdx.x] = 1;
}

__global__ void read_past_dynamic_shared(int* out) {
  extern __shared__ int exchange[];
  exchange[threadIdx.x] = 1;
  __syncthreads();
  out[threadIdx.x] = exchange[threadIdx.x + 1];  // one int past the blockDim.x launched
}

}  // namespace

cudaError_t launch_harness_check(const char* name, int blocks, int threads, int* out) {
  using swinir_kernels::cuda::launch_kernel;
  const size_t exchange_bytes = threads * sizeof(int);
  if (std::strcmp(name, "warp_functions") == 0) return launch_kernel(warp_functions, blocks, threads, 0, nullptr, out);
  if (std::strcmp(name, "atomics_and_static_shared") == 0)
    return launch_kernel(atomics_and_static_shared, blocks, threads, 0, nullptr, out);
  if (std::strcmp(name, "exchange_with_barrier") == 0)
    return launch_kernel(neighbour_exchange<true>, blocks, threads, exchange_bytes, nullptr, out);
  if (std::strcmp(name, "exchange_without_barrier") == 0)
    return launch_kernel(neighbour_exchange<false>, blocks, threads, exchange_bytes, nullptr, out);
  if (std::strcmp(name, "early_return_before_barrier") == 0)
    return launch_kernel(early_return_before_barrier, blocks, threads, 0, nullptr, out);
  if (std::strcmp(name, "barriers_at_two_sites") == 0)
    return launch_kernel(barriers_at_two_sites, blocks, threads, 0, nullptr, out);
  if (std::strcmp(name, "mismatched_masks") == 0) return launch_kernel(mismatched_masks, blocks, threads, 0, nullptr, out);
  if (std::strcmp(name, "shuffle_with_returned_lanes") == 0)
    return launch_kernel(shuffle_with_returned_lanes, blocks, threads, 0, nullptr, out);
  if (std::strcmp(name, "wmma_on_half_a_warp") == 0)
    return launch_kernel(wmma_on_half_a_warp, blocks, threads, 0, nullptr, out);
  if (std::strcmp(name, "read_past_dynamic_shared") == 0)
    return launch_kernel(read_past_dynamic_shared, blocks, threads, exchange_bytes, nullptr, out);
  if (std::strcmp(name, "too_much_dynamic_shared") == 0)
    return launch_kernel(neighbour_exchange<true>, blocks, threads, 64 * 1024, nullptr, out);
  return cudaErrorInvalidValue;
}

}  // namespace simt_tests
