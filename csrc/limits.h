// What the C++/CUDA kernels can take, stated once. The kernels and their host checks use these
// constants, and _C exports them to Python (csrc/swinir_ops.cpp), where the op registry declares them
// as the cpu and cuda backends' limits (swinir_kernels/registry/). Plain C++: the .cu files include it.
#pragma once

namespace swinir_kernels {
namespace limits {

// head_dim = C / nH of window attention, and tokens per window (N = wh*ww). The CUDA backend takes up to
// 128 and 1024 (the Swin family: HAT/DRCT/ATD 16x16 = 256, DAT 8x32 = 256, SRFormer 22x22 = 484, GRL
// 32x32 = 1024 tokens; DRCT's dense layers reach head_dim 122): windows up to the on-chip limits below
// run on the kernels that hold a whole window on chip, larger ones on the flash kernels (key blocks with
// an online softmax, nothing N x N stored). The CPU kernel's scratch is sized per call: no token limit.
constexpr int kCudaAttentionMaxHeadDim = 128;
constexpr int kCpuAttentionMaxHeadDim = 128;
constexpr int kCudaAttentionMaxTokens = 1024;
// The on-chip CUDA kernels (window_attention_kernel.cu, window_attention_tc_kernel.cu): a window's
// scores live in shared memory and one 16-row strip per warp (4 warps) covers it; a head's q, k, v
// slices at this width.
constexpr int kCudaOnChipAttentionMaxTokens = 64;
constexpr int kCudaOnChipAttentionMaxHeadDim = 64;

}  // namespace limits
}  // namespace swinir_kernels
