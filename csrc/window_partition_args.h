// Argument checks and output shapes of window_partition / window_reverse, shared by the CPU and
// CUDA host code so both backends accept and reject exactly the same calls.
#pragma once
#include "checks.h"

namespace swinir_kernels {

// The image side (B, H, W, C) of a window permutation.
struct ImageDims {
  int64_t batch, height, width, channels;
};

// x (B, H, W, C) with H a multiple of wh and W of ww.
inline ImageDims window_partition_dims(const at::Tensor& x, const AxisPair& window) {
  check_dim(x, 4, "x", "(B, H, W, C)");
  check_multiple(x.size(1), window.h, "x.shape[1] (H)", "window_size[0]");
  check_multiple(x.size(2), window.w, "x.shape[2] (W)", "window_size[1]");
  return {x.size(0), x.size(1), x.size(2), x.size(3)};
}

// windows (B*nW, wh*ww, C) with nW = (H/wh)*(W/ww) -> the (B, H, W, C) image it reverses to.
inline ImageDims window_reverse_dims(const at::Tensor& windows, const AxisPair& window, int64_t H, int64_t W) {
  check_dim(windows, 3, "windows", "(B*nW, wh*ww, C)");
  check_multiple(H, window.h, "H", "window_size[0]");
  check_multiple(W, window.w, "W", "window_size[1]");
  const int64_t windows_per_image = (H / window.h) * (W / window.w);
  TORCH_CHECK_VALUE(windows.size(1) == window.h * window.w, "windows.shape[1]: expected wh*ww=",
                    window.h * window.w, ", got ", windows.size(1));
  TORCH_CHECK_VALUE(windows_per_image > 0 && windows.size(0) % windows_per_image == 0,
                    "windows.shape[0]: expected a multiple of the windows per image (H/wh)*(W/ww)=",
                    windows_per_image, ", got ", windows.size(0));
  return {windows.size(0) / windows_per_image, H, W, windows.size(2)};
}

inline int64_t num_windows(const ImageDims& d, const AxisPair& window) {
  return d.batch * (d.height / window.h) * (d.width / window.w);
}

}  // namespace swinir_kernels
