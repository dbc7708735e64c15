// The pixel-shuffle kernel: one thread per cropped shuffled element (grid-stride), enumerated in the
// shuffled tensor's memory order (c fastest for channels_last, ow fastest for NCHW) so that the
// shuffled side is coalesced; the affine runs in the compute type and rounds once.
#include "element_io.cuh"
#include "launch.cuh"
#include "pixel_shuffle_kernel.h"

namespace swinir_kernels {
namespace cuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void pixel_shuffle_kernel(const T* __restrict__ src, T* __restrict__ dst, PixelShuffleParams p,
                                     int64_t total) {
  using Acc = compute_t<T>;
  const Acc* scale = static_cast<const Acc*>(p.scale);
  const Acc* bias = static_cast<const Acc*>(p.bias);
  const int64_t r = p.upscale_factor;
  const int64_t* ss = p.shuffled_strides;
  const int64_t* us = p.unshuffled_strides;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
    int64_t c, ow, oh, b;
    if (p.channels_innermost) {  // e = ((b * out_h + oh) * out_w + ow) * C + c
      c = e % p.channels;
      const int64_t pixel = e / p.channels;
      ow = pixel % p.out_w;
      oh = (pixel / p.out_w) % p.out_h;
      b = pixel / (p.out_w * p.out_h);
    } else {  // e = ((b * C + c) * out_h + oh) * out_w + ow
      ow = e % p.out_w;
      const int64_t row = e / p.out_w;
      oh = row % p.out_h;
      c = (row / p.out_h) % p.channels;
      b = row / (p.out_h * p.channels);
    }
    const int64_t shuffled = b * ss[0] + c * ss[1] + oh * ss[2] + ow * ss[3];
    const int64_t unshuffled =
        b * us[0] + (c * r * r + (oh % r) * r + ow % r) * us[1] + (oh / r) * us[2] + (ow / r) * us[3];
    const int64_t from = p.to_shuffled ? unshuffled : shuffled;
    const int64_t to = p.to_shuffled ? shuffled : unshuffled;
    Acc value = load_as<Acc>(src + from);
    if (scale != nullptr) value *= scale[c];
    if (bias != nullptr) value += bias[c];
    store_from(dst + to, value);
  }
}

}  // namespace

cudaError_t launch_pixel_shuffle(const PixelShuffleParams& p, cudaStream_t stream) {
  const int64_t total = p.batch * p.channels * p.out_h * p.out_w;
  if (total == 0) return cudaSuccess;
  return dispatch_element_type(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    return launch_kernel(pixel_shuffle_kernel<T>, grid_stride_blocks(total, kThreads), kThreads, 0, stream,
                         static_cast<const T*>(p.src), static_cast<T*>(p.dst), p, total);
  });
}

}  // namespace cuda
}  // namespace swinir_kernels
