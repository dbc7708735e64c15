// Device-side helpers shared by the kernels: element loads/stores converted to the compute type, and
// the host-side ElementType -> C++ type dispatch of the launchers.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "element_type.h"

namespace swinir_kernels {
namespace cuda {

// The type arithmetic runs in: double for double tensors, float for everything narrower.
template <typename T>
struct ComputeType {
  using type = float;
};
template <>
struct ComputeType<double> {
  using type = double;
};
template <typename T>
using compute_t = typename ComputeType<T>::type;

template <typename Acc>
__device__ __forceinline__ Acc load_as(const float* p) { return static_cast<Acc>(*p); }
template <typename Acc>
__device__ __forceinline__ Acc load_as(const double* p) { return static_cast<Acc>(*p); }
template <typename Acc>
__device__ __forceinline__ Acc load_as(const __half* p) { return static_cast<Acc>(__half2float(*p)); }
template <typename Acc>
__device__ __forceinline__ Acc load_as(const __nv_bfloat16* p) { return static_cast<Acc>(__bfloat162float(*p)); }

__device__ __forceinline__ void store_from(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_from(double* p, double v) { *p = v; }
__device__ __forceinline__ void store_from(__half* p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ void store_from(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

__device__ __forceinline__ float exp_of(float x) { return expf(x); }
__device__ __forceinline__ double exp_of(double x) { return exp(x); }

// Calls fn(T{}) with T the C++ type of `type`; generic lambdas pick it up with decltype.
template <typename Fn>
cudaError_t dispatch_element_type(ElementType type, Fn&& fn) {
  switch (type) {
    case ElementType::kFloat32:
      return fn(float{});
    case ElementType::kFloat64:
      return fn(double{});
    case ElementType::kFloat16:
      return fn(__half{});
    case ElementType::kBFloat16:
      return fn(__nv_bfloat16{});
  }
  return cudaErrorInvalidValue;
}

// Blocks for a grid-stride loop over `total` items: enough to fill the GPU, capped so the 1-D grid
// stays far below its 2^31-1 limit (the loop covers the rest).
inline unsigned int grid_stride_blocks(int64_t total, int threads) {
  const int64_t max_blocks = int64_t{1} << 20;
  const int64_t blocks = (total + threads - 1) / threads;
  return static_cast<unsigned int>(blocks < 1 ? 1 : (blocks > max_blocks ? max_blocks : blocks));
}

}  // namespace cuda
}  // namespace swinir_kernels
