// window_partition / window_reverse on CUDA, plain CUDA side (no torch headers): one byte-moving
// permutation kernel for both directions, since each op is the other's inverse.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace swinir_kernels {
namespace cuda {

// Image layout (B, H, W, C) <-> window layout (B*nW, wh*ww, C), both contiguous. Window w = (b, wr, wc)
// (batch-major, then row-major over the (H/wh, W/ww) grid), token t = (ti, tj) = (t / ww, t % ww) is
// image pixel (b, (wr*wh + ti + shift_h) mod H, (wc*ww + tj + shift_w) mod W).
struct WindowPermuteParams {
  const void* src;  // the image when to_windows, else the windows
  void* dst;        // the windows when to_windows, else the image
  int64_t batch, height, width;
  int64_t pixel_bytes;  // C * element size: the permutation moves whole pixels
  int64_t window_h, window_w;  // (wh, ww)
  int64_t shift_h, shift_w;  // already reduced to [0, H) and [0, W)
  bool to_windows;           // true: window_partition; false: window_reverse
};

// Enqueues the copy on `stream`; returns the launch error (cudaSuccess when queued).
cudaError_t launch_window_permute(const WindowPermuteParams& params, cudaStream_t stream);

}  // namespace cuda
}  // namespace swinir_kernels
