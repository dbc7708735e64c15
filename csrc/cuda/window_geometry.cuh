// Where the tokens of a window live, shared by the attention kernels: the pixel (row of qkv / out) of
// token t of window w, and its shift region for the official -100 mask. Window layout: window w's
// tokens are rows w*N .. w*N+N-1. Image layout: roll(-sh, -sw) + partition into wh x ww windows as
// index arithmetic.
#pragma once
#include <cstdint>

#include "window_attention_kernel.h"

namespace swinir_kernels {
namespace cuda {

// Whether the image layout's official shift mask applies at all (some axis is shifted).
__host__ __device__ inline bool has_shift_mask(const WindowAttentionParams& p) {
  return p.image_layout && (p.shift_h > 0 || p.shift_w > 0);
}

// Rolled-image coordinates (row, column) of token t of window w (image layout).
__device__ inline void rolled_coordinates(const WindowAttentionParams& p, int64_t w, int t, int64_t& row,
                                          int64_t& col) {
  const int64_t windows_per_row = p.width / p.window_w;
  const int64_t window_in_image = w % ((p.height / p.window_h) * windows_per_row);
  row = (window_in_image / windows_per_row) * p.window_h + t / p.window_w;
  col = (window_in_image % windows_per_row) * p.window_w + t % p.window_w;
}

// Index of the pixel holding token t of window w: the row of qkv (3C channels) and of out (C channels).
__device__ inline int64_t token_pixel(const WindowAttentionParams& p, int64_t w, int t) {
  if (!p.image_layout) return w * p.tokens + t;
  const int64_t windows_per_image = (p.height / p.window_h) * (p.width / p.window_w);
  const int64_t b = w / windows_per_image;
  int64_t rolled_row, rolled_col;
  rolled_coordinates(p, w, t, rolled_row, rolled_col);
  return (b * p.height + (rolled_row + p.shift_h) % p.height) * p.width + (rolled_col + p.shift_w) % p.width;
}

// Region (0, 1, 2) of rolled coordinate `rolled` along an axis of `extent` pixels, windows of
// `window_extent` and shift `shift`: cut at extent - window_extent and extent - shift; an axis without
// shift is not cut (DAT's calculate_mask, whose slices then degenerate; SwinIR's when both shift).
__device__ inline int axis_region(int64_t rolled, int64_t extent, int window_extent, int shift) {
  if (shift == 0) return 0;
  return rolled < extent - window_extent ? 0 : (rolled < extent - shift ? 1 : 2);
}

// Region (0..8) of token t in the rolled image for the official shift mask. Only meaningful with
// has_shift_mask(p).
__device__ inline int token_region(const WindowAttentionParams& p, int64_t w, int t) {
  int64_t rolled_row, rolled_col;
  rolled_coordinates(p, w, t, rolled_row, rolled_col);
  return axis_region(rolled_row, p.height, p.window_h, p.shift_h) * 3 +
         axis_region(rolled_col, p.width, p.window_w, p.shift_w);
}

}  // namespace cuda
}  // namespace swinir_kernels
