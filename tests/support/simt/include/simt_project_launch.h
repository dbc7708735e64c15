// The harness's launch_kernel and set_max_dynamic_shared_bytes: csrc/cuda/launch.cuh leaves them to
// us under SWINIR_SIMT_HARNESS, with the same signatures as its nvcc versions.
#pragma once
#include "simt_runtime.h"

namespace swinir_kernels {
namespace cuda {

template <typename... KernelArgs, typename... Args>
cudaError_t launch_kernel(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, size_t shared_bytes,
                          cudaStream_t stream, Args&&... args) {
  (void)stream;  // launches run to completion, in order
  return ::simt::launch(kernel, grid, block, shared_bytes, std::forward<Args>(args)...);
}

template <typename... KernelArgs>
cudaError_t set_max_dynamic_shared_bytes(void (*kernel)(KernelArgs...), size_t bytes) {
  if (bytes <= 48 * 1024) return cudaSuccess;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
}

}  // namespace cuda
}  // namespace swinir_kernels
