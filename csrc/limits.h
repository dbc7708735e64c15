// What the C++/CUDA kernels can take, stated once. The kernels and their host checks use these
// constants, and _C exports them to Python (csrc/swinir_ops.cpp), where the op registry declares them
// as the cpu and cuda backends' limits (swinir_kernels/registry/). Plain C++: the .cu files include it.
#pragma once

namespace swinir_kernels {
namespace limits {

// head_dim = C / nH of window attention. The CUDA kernels keep a head's slices of q, k, v on chip at
// this width; the CPU kernel's scratch is sized per call, and 128 covers the Swin family (DRCT's dense
// layers reach 122).
constexpr int kCudaAttentionMaxHeadDim = 64;
constexpr int kCpuAttentionMaxHeadDim = 128;
// Tokens per window (N = ws*ws) of the CUDA attention kernels: a window's scores live in shared memory
// and one 16-row strip per warp (4 warps) covers it. The CPU kernel has no token limit.
constexpr int kCudaAttentionMaxTokens = 64;

}  // namespace limits
}  // namespace swinir_kernels
