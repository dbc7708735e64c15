// pixel_shuffle and its backward on CUDA, plain CUDA side (no torch headers). One strided kernel
// serves both directions: it visits every cropped pixel of the shuffled tensor once.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "element_type.h"

namespace swinir_kernels {
namespace cuda {

// Shuffled tensor S (B, C, out_h, out_w), unshuffled U (B, C*r*r, H, W), out_h <= H*r, out_w <= W*r:
//   S[b, c, oh, ow] <-> U[b, c*r*r + (oh % r)*r + ow % r, oh / r, ow / r].
// Forward (to_shuffled):  S = U * scale[c] + bias[c].   Backward: U = S * scale[c] (bias is null);
// U's pixels outside the crop are not written (the caller zero-fills them).
struct PixelShuffleParams {
  const void* src;  // U when to_shuffled, else S
  void* dst;        // S when to_shuffled, else U
  // Per-channel affine (C values) in the compute type (double for float64 tensors, else float), or null.
  const void* scale;
  const void* bias;
  int64_t batch, channels, out_h, out_w, upscale_factor;
  int64_t shuffled_strides[4];    // of S, in elements
  int64_t unshuffled_strides[4];  // of U, in elements
  bool channels_innermost;        // enumerate c fastest (channels_last tensors), else ow fastest
  bool to_shuffled;               // true: forward; false: backward
  ElementType dtype;
};

cudaError_t launch_pixel_shuffle(const PixelShuffleParams& params, cudaStream_t stream);

}  // namespace cuda
}  // namespace swinir_kernels
