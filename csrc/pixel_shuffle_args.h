// Argument checks, shapes and the output memory-format rule of pixel_shuffle and its backward,
// shared by the CPU and CUDA host code.
#pragma once
#include <c10/core/MemoryFormat.h>
#include <c10/util/Optional.h>

#include "checks.h"

namespace swinir_kernels {

// x (B, C*r*r, H, W) <-> shuffled (B, C, out_h, out_w), out_h <= H*r, out_w <= W*r.
struct ShuffleDims {
  int64_t batch, channels, height, width, out_h, out_w;
};

// The output takes the input's memory format, as F.pixel_shuffle does: channels_last only when the
// tensor is channels_last-contiguous and not also NCHW-contiguous (the rule of the Python fake kernel
// in swinir_kernels/_registrations.py, so shapes and strides agree).
inline at::MemoryFormat shuffle_memory_format(const at::Tensor& t) {
  return (t.is_contiguous(at::MemoryFormat::ChannelsLast) && !t.is_contiguous()) ? at::MemoryFormat::ChannelsLast
                                                                               : at::MemoryFormat::Contiguous;
}

// scale / bias: one value per output channel, or one for all.
inline void check_epilogue(const c10::optional<at::Tensor>& t, int64_t channels, const at::Tensor& x,
                           const char* x_name, const char* name) {
  if (!t.has_value()) return;
  check_same_device(x, *t, x_name, name);
  TORCH_CHECK_VALUE(t->numel() == channels || t->numel() == 1, name, ": expected ", channels,
                    " values (one per output channel) or 1, got shape ", t->sizes());
}

inline ShuffleDims pixel_shuffle_dims(const at::Tensor& x, int64_t r, const c10::optional<at::Tensor>& scale,
                                      const c10::optional<at::Tensor>& bias, int64_t out_h, int64_t out_w) {
  check_dim(x, 4, "x", "(B, C*r*r, H, W)");
  TORCH_CHECK_VALUE(r > 0, "upscale_factor: expected a positive integer, got ", r);
  TORCH_CHECK_VALUE(x.size(1) % (r * r) == 0, "x.shape[1]: expected a multiple of upscale_factor**2=", r * r,
                    ", got ", x.size(1));
  const ShuffleDims d{x.size(0), x.size(1) / (r * r), x.size(2), x.size(3), out_h, out_w};
  TORCH_CHECK_VALUE(0 <= out_h && out_h <= d.height * r, "out_h: expected 0..", d.height * r, ", got ", out_h);
  TORCH_CHECK_VALUE(0 <= out_w && out_w <= d.width * r, "out_w: expected 0..", d.width * r, ", got ", out_w);
  check_epilogue(scale, d.channels, x, "x", "scale");
  check_epilogue(bias, d.channels, x, "x", "bias");
  return d;
}

inline ShuffleDims pixel_shuffle_backward_dims(const at::Tensor& grad_out, int64_t r,
                                               const c10::optional<at::Tensor>& scale, int64_t H, int64_t W) {
  check_dim(grad_out, 4, "grad_out", "(B, C, out_h, out_w)");
  TORCH_CHECK_VALUE(r > 0, "upscale_factor: expected a positive integer, got ", r);
  TORCH_CHECK_VALUE(H >= 0 && W >= 0, "H, W: expected non-negative sizes, got ", H, "x", W);
  const ShuffleDims d{grad_out.size(0), grad_out.size(1), H, W, grad_out.size(2), grad_out.size(3)};
  TORCH_CHECK_VALUE(d.out_h <= H * r && d.out_w <= W * r, "grad_out: spatial size ", d.out_h, "x", d.out_w,
                    " exceeds the shuffled input size ", H * r, "x", W * r);
  check_epilogue(scale, d.channels, grad_out, "grad_out", "scale");
  return d;
}

}  // namespace swinir_kernels
