// Fused window attention (forward and backward) on CUDA, plain CUDA side (no torch headers). Serves
// window_attention (window layout, optional mask tensor) and shifted_window_attention (image layout,
// roll + partition + official shift mask as index arithmetic). Two implementations share the params:
// tensor cores (window_attention_tc_kernel.cu: fp16, bf16, and fp32 as TF32 when allow_tf32) and
// scalar FMAs (window_attention_kernel.cu: exact fp32 and fp64) for windows held on chip (N <= 64,
// head_dim <= 64), and the flash kernels (window_attention_flash_kernel.cu) for larger ones.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "../limits.h"
#include "element_type.h"

namespace swinir_kernels {
namespace cuda {

using limits::kCudaAttentionMaxHeadDim;
using limits::kCudaAttentionMaxTokens;
using limits::kCudaOnChipAttentionMaxHeadDim;
using limits::kCudaOnChipAttentionMaxTokens;
// Windows whose bias gradients one backward block sums before writing its partial; fixed, so the
// summation order (and the result) does not depend on the GPU or the launch.
constexpr int kAttentionWindowsPerGroup = 16;

// Per window w and head h: out = softmax(scale * q k^T + rel_bias[h] + mask_w) v, with q, k, v the
// head's (N, hd) slices of qkv's [q | k | v] channels. Tensors are contiguous. "Compute type" below is
// double for float64 qkv and float otherwise; rel_bias, mask and the bias gradients are in it.
struct WindowAttentionParams {
  const void* qkv;       // window layout (B*nW, N, 3C); image layout (B, H, W, 3C); in `dtype`
  void* out;             // qkv's layout with C channels (forward only)
  const void* rel_bias;  // (nH, N, N), compute type
  const void* mask;      // window layout only: (mask_windows, N, N), compute type, window w uses w % mask_windows; or null
  int64_t mask_windows;
  int64_t num_windows;  // B*nW
  int tokens, num_heads, head_dim;
  double scale;
  // Image layout: windows of wh x ww pixels (N = wh*ww), window w = (b, wr, wc) row-major over the
  // (H/wh, W/ww) grid, token t = (ti, tj) = (t / ww, t % ww) is pixel ((wr*wh + ti + sh) mod H,
  // (wc*ww + tj + sw) mod W); the official -100 mask separates the regions of the rolled image cut at
  // H-wh, H-sh (rows, only when sh > 0) and W-ww, W-sw (columns, only when sw > 0).
  bool image_layout;
  int64_t height, width;
  int window_h, window_w;  // (wh, ww)
  int shift_h, shift_w;    // (sh, sw): 0 <= sh < wh, 0 <= sw < ww
  ElementType dtype;
  bool allow_tf32;  // fp32 may run on TF32 tensor cores (torch.backends.cuda.matmul.allow_tf32)
};

struct WindowAttentionBackwardParams {
  WindowAttentionParams inputs;  // qkv, rel_bias, mask and sizes; inputs.out is unused
  const void* grad_out;          // qkv's layout with C channels, in `dtype`
  void* grad_qkv;                // qkv's layout, in `dtype`; every element is written
  void* grad_bias_partials;      // (window_attention_backward_groups(), nH, N, N), compute type: scratch
  void* grad_bias;               // (nH, N, N), compute type: the partials summed in group order
  // Tensor-core backward only: (nH) zeros; the block finishing a head's last group sums its partials.
  unsigned int* grad_bias_counters;
  // Flash backward only: (2, num_windows, nH, N), compute type, scratch: each row's log-sum-exp and
  // rowsum(dO * O), written by its first pass.
  void* softmax_stats;
};

// Number of window groups, i.e. the first dim of grad_bias_partials.
int64_t window_attention_backward_groups(int64_t num_windows);

// Dynamic shared memory one block needs (the bindings check it against the device's opt-in limit).
size_t window_attention_shared_bytes(const WindowAttentionParams& params, bool backward);

cudaError_t launch_window_attention_forward(const WindowAttentionParams& params, cudaStream_t stream);
cudaError_t launch_window_attention_backward(const WindowAttentionBackwardParams& params, cudaStream_t stream);

// The tensor-core kernels, for fp16, bf16 and (with allow_tf32) fp32; the rest goes to the ones above.
bool window_attention_uses_tensor_cores(const WindowAttentionParams& params);
// Window groups per head of the tensor-core backward: grad_bias_partials is (nH, groups, N, N).
int64_t window_attention_tc_backward_groups(int64_t num_windows);
size_t window_attention_tc_shared_bytes(const WindowAttentionParams& params, bool backward);
cudaError_t launch_window_attention_tc_forward(const WindowAttentionParams& params, cudaStream_t stream);
cudaError_t launch_window_attention_tc_backward(const WindowAttentionBackwardParams& params, cudaStream_t stream);

// The flash kernels (window_attention_flash_kernel.cu), every dtype (tensor cores where
// window_attention_uses_tensor_cores), for the windows the on-chip kernels above cannot take: N >
// kCudaOnChipAttentionMaxTokens or head_dim > kCudaOnChipAttentionMaxHeadDim, up to kCudaAttentionMaxTokens
// and kCudaAttentionMaxHeadDim. Backward: grad_bias_partials is (window_attention_flash_backward_groups(),
// nH, N, N) and softmax_stats must be given; grad_bias_counters is unused.
bool window_attention_uses_flash(const WindowAttentionParams& params);
int64_t window_attention_flash_backward_groups(const WindowAttentionParams& params);
size_t window_attention_flash_shared_bytes(const WindowAttentionParams& params, bool backward);
cudaError_t launch_window_attention_flash_forward(const WindowAttentionParams& params, cudaStream_t stream);
cudaError_t launch_window_attention_flash_backward(const WindowAttentionBackwardParams& params, cudaStream_t stream);

}  // namespace cuda
}  // namespace swinir_kernels
