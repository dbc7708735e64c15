// The one place our kernels are launched from. Every launcher calls launch_kernel instead of writing
// `kernel<<<grid, block, shared, stream>>>(args...)`, so the same kernel source runs under nvcc and
// under the SIMT execution harness of the tests (tests/support/simt), which compiles the .cu files as host C++
// with SWINIR_SIMT_HARNESS defined and supplies its own launch_kernel and set_max_dynamic_shared_bytes.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

namespace swinir_kernels {
namespace cuda {

#ifndef SWINIR_SIMT_HARNESS
// Launches `kernel` on `grid` x `block` threads with `shared_bytes` of dynamic shared memory on
// `stream`; returns the launch error (cudaGetLastError), as the launchers report it to the bindings.
template <typename... KernelArgs, typename... Args>
cudaError_t launch_kernel(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, size_t shared_bytes,
                          cudaStream_t stream, Args&&... args) {
  kernel<<<grid, block, shared_bytes, stream>>>(std::forward<Args>(args)...);
  return cudaGetLastError();
}

// Kernels needing more than the default 48 KB of dynamic shared memory must opt in.
template <typename... KernelArgs>
cudaError_t set_max_dynamic_shared_bytes(void (*kernel)(KernelArgs...), size_t bytes) {
  if (bytes <= 48 * 1024) return cudaSuccess;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
}
#endif

}  // namespace cuda
}  // namespace swinir_kernels
