// Argument checks and shapes of window_attention / shifted_window_attention and their backward ops,
// shared by the backends' host code (the kernels add only their own limits, csrc/limits.h).
#pragma once
#include <c10/util/Optional.h>

#include "checks.h"
#include "limits.h"

namespace swinir_kernels {

struct AttentionDims {
  int64_t num_windows;  // B*nW: windows of the whole batch
  int64_t tokens;       // N = wh*ww tokens per window
  int64_t channels;     // C: qkv holds 3C channels, [q | k | v], each head-major
  int64_t num_heads;    // nH
  int64_t head_dim;     // hd = C / nH
  // Image layout only (shifted_window_attention): qkv is (B, H, W, 3C); zeros in the window layout.
  int64_t batch, height, width;
};

namespace detail {

inline void check_floating(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(at::isFloatingType(t.scalar_type()), name,
                    ": expected dtype float16, bfloat16, float32 or float64, got ", t.scalar_type());
}

// Fills channels / num_heads / head_dim from qkv's last dim and checks rel_bias (nH, N, N).
inline void check_heads_and_bias(AttentionDims& d, const at::Tensor& qkv, const at::Tensor& rel_bias,
                                 int64_t num_heads) {
  check_floating(qkv, "qkv");
  TORCH_CHECK_VALUE(num_heads >= 1, "num_heads: expected an int >= 1, got ", num_heads);
  const int64_t channels3 = qkv.size(-1);
  TORCH_CHECK_VALUE(channels3 % 3 == 0, "qkv.shape[-1] (3C): expected a multiple of 3, got ", channels3);
  d.channels = channels3 / 3;
  TORCH_CHECK_VALUE(d.channels % num_heads == 0, "C = qkv.shape[-1] // 3: expected a multiple of num_heads=",
                    num_heads, ", got ", d.channels);
  d.num_heads = num_heads;
  d.head_dim = d.channels / num_heads;
  TORCH_CHECK_VALUE(d.head_dim <= limits::kCudaAttentionMaxHeadDim, "head_dim = C // num_heads: expected at most ",
                    limits::kCudaAttentionMaxHeadDim, ", got ", d.head_dim);
  check_dim(rel_bias, 3, "rel_bias", "(nH, N, N)");
  check_floating(rel_bias, "rel_bias");
  check_same_device(qkv, rel_bias, "qkv", "rel_bias");
  TORCH_CHECK_VALUE(rel_bias.size(0) == num_heads && rel_bias.size(1) == d.tokens && rel_bias.size(2) == d.tokens,
                    "rel_bias: expected shape (", num_heads, ", ", d.tokens, ", ", d.tokens, "), got ",
                    rel_bias.sizes());
}

}  // namespace detail

// qkv (B*nW, N, 3C), rel_bias (nH, N, N), mask (nW, N, N) or none with B*nW a multiple of nW.
inline AttentionDims window_attention_dims(const at::Tensor& qkv, const at::Tensor& rel_bias,
                                           const c10::optional<at::Tensor>& mask, int64_t num_heads) {
  check_dim(qkv, 3, "qkv", "(B*nW, N, 3C)");
  AttentionDims d{qkv.size(0), qkv.size(1), 0, 0, 0, 0, 0, 0};
  detail::check_heads_and_bias(d, qkv, rel_bias, num_heads);
  if (mask.has_value()) {
    check_dim(*mask, 3, "mask", "(nW, N, N)");
    detail::check_floating(*mask, "mask");
    check_same_device(qkv, *mask, "qkv", "mask");
    TORCH_CHECK_VALUE(mask->size(1) == d.tokens && mask->size(2) == d.tokens, "mask: expected shape (nW, ",
                      d.tokens, ", ", d.tokens, "), got ", mask->sizes());
    TORCH_CHECK_VALUE(mask->size(0) > 0 && d.num_windows % mask->size(0) == 0,
                      "qkv.shape[0] (B*nW): expected a multiple of mask.shape[0] (nW)=", mask->size(0), ", got ",
                      d.num_windows);
  }
  return d;
}

// The image layout's windows: qkv (B, H, W, 3C) with H a multiple of wh and W of ww, 0 <= sh < wh,
// 0 <= sw < ww (every backend's host code; the CPU kernel has no head_dim limit of the CUDA ones below).
inline void check_image_windows(const at::Tensor& qkv, const AxisPair& window, const AxisPair& shift) {
  check_dim(qkv, 4, "qkv", "(B, H, W, 3C)");
  check_multiple(qkv.size(1), window.h, "qkv.shape[1] (H)", "window_size[0]");
  check_multiple(qkv.size(2), window.w, "qkv.shape[2] (W)", "window_size[1]");
  TORCH_CHECK_VALUE(0 <= shift.h && shift.h < window.h, "shift[0]: expected 0 <= shift[0] < window_size[0]=",
                    window.h, ", got ", shift.h);
  TORCH_CHECK_VALUE(0 <= shift.w && shift.w < window.w, "shift[1]: expected 0 <= shift[1] < window_size[1]=",
                    window.w, ", got ", shift.w);
}

// check_image_windows, and rel_bias (nH, wh*ww, wh*ww).
inline AttentionDims shifted_window_attention_dims(const at::Tensor& qkv, const at::Tensor& rel_bias,
                                                   int64_t num_heads, const AxisPair& window, const AxisPair& shift) {
  check_image_windows(qkv, window, shift);
  const int64_t B = qkv.size(0), H = qkv.size(1), W = qkv.size(2);
  AttentionDims d{B * (H / window.h) * (W / window.w), window.h * window.w, 0, 0, 0, B, H, W};
  detail::check_heads_and_bias(d, qkv, rel_bias, num_heads);
  return d;
}

// grad_out: qkv's shape with C instead of 3C channels, qkv's dtype and device.
inline void check_attention_grad_out(const at::Tensor& grad_out, const at::Tensor& qkv, const AttentionDims& d) {
  check_same_device(qkv, grad_out, "qkv", "grad_out");
  TORCH_CHECK_VALUE(grad_out.scalar_type() == qkv.scalar_type(), "grad_out: expected dtype ", qkv.scalar_type(),
                    " (the dtype of qkv), got ", grad_out.scalar_type());
  auto expected = qkv.sizes().vec();
  expected.back() = d.channels;
  TORCH_CHECK_VALUE(grad_out.sizes() == at::IntArrayRef(expected), "grad_out: expected shape ",
                    at::IntArrayRef(expected), ", got ", grad_out.sizes());
}

}  // namespace swinir_kernels
