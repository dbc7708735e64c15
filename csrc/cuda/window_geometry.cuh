// Where the tokens of a window live, shared by the attention kernels: the pixel (row of qkv / out) of
// token t of window w, and its shift region for the official -100 mask. Window layout: window w's
// tokens are rows w*N .. w*N+N-1. Image layout: roll(-shift) + partition as index arithmetic.
#pragma once
#include <cstdint>

#include "window_attention_kernel.h"

namespace swinir_kernels {
namespace cuda {

// Index of the pixel holding token t of window w: the row of qkv (3C channels) and of out (C channels).
__device__ inline int64_t token_pixel(const WindowAttentionParams& p, int64_t w, int t) {
  if (!p.image_layout) return w * p.tokens + t;
  const int64_t ws = p.window_size;
  const int64_t windows_per_row = p.width / ws;
  const int64_t windows_per_image = (p.height / ws) * windows_per_row;
  const int64_t b = w / windows_per_image, window_in_image = w % windows_per_image;
  const int64_t rolled_row = (window_in_image / windows_per_row) * ws + t / ws;
  const int64_t rolled_col = (window_in_image % windows_per_row) * ws + t % ws;
  return (b * p.height + (rolled_row + p.shift) % p.height) * p.width + (rolled_col + p.shift) % p.width;
}

// Region (0..8) of token t in the rolled image for the official shift mask: rows (and columns) split at
// H - ws and H - shift. Only meaningful with image_layout and shift > 0.
__device__ inline int token_region(const WindowAttentionParams& p, int64_t w, int t) {
  const int64_t ws = p.window_size;
  const int64_t windows_per_row = p.width / ws;
  const int64_t window_in_image = w % ((p.height / ws) * windows_per_row);
  const int64_t rolled_row = (window_in_image / windows_per_row) * ws + t / ws;
  const int64_t rolled_col = (window_in_image % windows_per_row) * ws + t % ws;
  const int region_row = rolled_row < p.height - ws ? 0 : (rolled_row < p.height - p.shift ? 1 : 2);
  const int region_col = rolled_col < p.width - ws ? 0 : (rolled_col < p.width - p.shift ? 1 : 2);
  return region_row * 3 + region_col;
}

}  // namespace cuda
}  // namespace swinir_kernels
