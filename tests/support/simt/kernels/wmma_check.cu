// Test kernels for the harness's WMMA emulation (plain CUDA; tests/kernels/test_cuda_simt.py checks them against
// a host matmul): each warp w computes D_w = alpha * (A_w B_w + C_w) for one fragment kind, loading A, B
// and C and storing D with the given layouts. Only element-wise operations touch fragment elements
// (tf32 rounding, the alpha scale), as any kernel must.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <cstring>

#include "launch.cuh"
#include "wmma_check.h"

namespace simt_tests {
namespace {

using namespace nvcuda;

template <typename Acc>
__device__ inline Acc scaled(Acc value, float alpha);
template <>
__device__ inline float scaled(float value, float alpha) { return value * alpha; }
template <>
__device__ inline __half scaled(__half value, float alpha) { return __float2half_rn(__half2float(value) * alpha); }

template <typename In, typename Acc, typename LayoutA, typename LayoutB, int M, int N, int K>
__global__ void wmma_check_kernel(WmmaCheckParams p) {
  using Fragment = wmma::fragment<wmma::matrix_a, M, N, K, In, LayoutA>;
  using Element = typename Fragment::storage_element_type;
  const int warp = threadIdx.x / 32;
  const Element* a = static_cast<const Element*>(p.a) + warp * p.a_tile;
  const Element* b = static_cast<const Element*>(p.b) + warp * p.b_tile;
  const Acc* c = static_cast<const Acc*>(p.c) + warp * p.c_tile;
  Acc* d = static_cast<Acc*>(p.d) + warp * p.c_tile;
  Fragment fa;
  wmma::fragment<wmma::matrix_b, M, N, K, In, LayoutB> fb;
  wmma::fragment<wmma::accumulator, M, N, K, Acc> fc, fd;
  wmma::load_matrix_sync(fa, a, p.lda);
  wmma::load_matrix_sync(fb, b, p.ldb);
  if constexpr (std::is_same<In, wmma::precision::tf32>::value) {
    if (p.round_tf32) {
      for (int i = 0; i < fa.num_elements; ++i) fa.x[i] = wmma::__float_to_tf32(fa.x[i]);
      for (int i = 0; i < fb.num_elements; ++i) fb.x[i] = wmma::__float_to_tf32(fb.x[i]);
    }
  }
  wmma::load_matrix_sync(fc, c, p.ldc, p.c_row_major ? wmma::mem_row_major : wmma::mem_col_major);
  wmma::fill_fragment(fd, Acc{});
  wmma::mma_sync(fd, fa, fb, fc);
  for (int i = 0; i < fd.num_elements; ++i) fd.x[i] = scaled(fd.x[i], p.alpha);
  wmma::store_matrix_sync(d, fd, p.ldc, p.d_row_major ? wmma::mem_row_major : wmma::mem_col_major);
}

template <typename In, typename Acc, typename LayoutA, typename LayoutB, int M, int N, int K>
cudaError_t launch(const WmmaCheckParams& p) {
  return swinir_kernels::cuda::launch_kernel(wmma_check_kernel<In, Acc, LayoutA, LayoutB, M, N, K>, dim3(1),
                                             dim3(32 * p.warps), 0, nullptr, p);
}

}  // namespace

// The kinds the unit tests cover: every fragment use with each input type and layout at least once.
cudaError_t launch_wmma_check(const char* kind, const WmmaCheckParams& p) {
  using wmma::col_major;
  using wmma::row_major;
  using wmma::precision::tf32;
  struct Entry {
    const char* name;
    cudaError_t (*launch)(const WmmaCheckParams&);
  };
  static const Entry entries[] = {
      {"f16-row-col-f32-m16n16k16", launch<__half, float, row_major, col_major, 16, 16, 16>},
      {"f16-col-row-f32-m16n16k16", launch<__half, float, col_major, row_major, 16, 16, 16>},
      {"f16-row-row-f16-m16n16k16", launch<__half, __half, row_major, row_major, 16, 16, 16>},
      {"bf16-row-col-f32-m16n16k16", launch<__nv_bfloat16, float, row_major, col_major, 16, 16, 16>},
      {"bf16-col-col-f32-m16n16k16", launch<__nv_bfloat16, float, col_major, col_major, 16, 16, 16>},
      {"tf32-row-col-f32-m16n16k8", launch<tf32, float, row_major, col_major, 16, 16, 8>},
      {"tf32-col-row-f32-m16n16k8", launch<tf32, float, col_major, row_major, 16, 16, 8>},
      {"f16-row-row-f32-m32n8k16", launch<__half, float, row_major, row_major, 32, 8, 16>},
      {"bf16-col-row-f32-m8n32k16", launch<__nv_bfloat16, float, col_major, row_major, 8, 32, 16>},
  };
  for (const Entry& entry : entries)
    if (std::strcmp(entry.name, kind) == 0) return entry.launch(p);
  return cudaErrorInvalidValue;
}

}  // namespace simt_tests
