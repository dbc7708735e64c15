// Argument checks and output shapes of window_partition / window_reverse, shared by the CPU and
// CUDA host code so both backends accept and reject exactly the same calls.
#pragma once
#include "checks.h"

namespace swinir_kernels {

// The image side (B, H, W, C) of a window permutation.
struct ImageDims {
  int64_t batch, height, width, channels;
};

// x (B, H, W, C) with H and W multiples of window_size.
inline ImageDims window_partition_dims(const at::Tensor& x, int64_t window_size) {
  check_dim(x, 4, "x", "(B, H, W, C)");
  check_multiple(x.size(1), window_size, "x.shape[1] (H)");
  check_multiple(x.size(2), window_size, "x.shape[2] (W)");
  return {x.size(0), x.size(1), x.size(2), x.size(3)};
}

// windows (B*nW, ws*ws, C) with nW = (H/ws)*(W/ws) -> the (B, H, W, C) image it reverses to.
inline ImageDims window_reverse_dims(const at::Tensor& windows, int64_t window_size, int64_t H, int64_t W) {
  check_dim(windows, 3, "windows", "(B*nW, ws*ws, C)");
  check_multiple(H, window_size, "H");
  check_multiple(W, window_size, "W");
  const int64_t windows_per_image = (H / window_size) * (W / window_size);
  TORCH_CHECK_VALUE(windows.size(1) == window_size * window_size, "windows.shape[1]: expected window_size**2=",
                    window_size * window_size, ", got ", windows.size(1));
  TORCH_CHECK_VALUE(windows_per_image > 0 && windows.size(0) % windows_per_image == 0,
                    "windows.shape[0]: expected a multiple of the windows per image (H/ws)*(W/ws)=",
                    windows_per_image, ", got ", windows.size(0));
  return {windows.size(0) / windows_per_image, H, W, windows.size(2)};
}

inline int64_t num_windows(const ImageDims& d, int64_t window_size) {
  return d.batch * (d.height / window_size) * (d.width / window_size);
}

}  // namespace swinir_kernels
