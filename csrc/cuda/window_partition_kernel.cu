// The window permutation kernel: each thread moves one aligned chunk (16, 8, 4, 2 or 1 bytes) of a
// pixel, threads enumerate the window layout in order, so window-side accesses are coalesced and
// image-side ones are runs of ww pixels (wrapping at most once at the image edge).
#include "element_io.cuh"
#include "launch.cuh"
#include "window_partition_kernel.h"

namespace swinir_kernels {
namespace cuda {
namespace {

constexpr int kThreads = 256;

// register budget: 64 (bench/static_report.py checks it on sm_90, with no local memory)
// Chunk is the copy unit (uint4, uint2, uint32_t, uint16_t, uint8_t); a pixel is chunks_per_pixel chunks.
template <typename Chunk>
__global__ void window_permute_kernel(const Chunk* __restrict__ src, Chunk* __restrict__ dst, WindowPermuteParams p,
                                      int64_t chunks_per_pixel, int64_t total_chunks) {
  const int64_t wh = p.window_h, ww = p.window_w;
  const int64_t tokens = wh * ww;
  const int64_t windows_per_row = p.width / ww;
  const int64_t windows_per_image = (p.height / wh) * windows_per_row;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total_chunks;
       e += int64_t{gridDim.x} * blockDim.x) {
    // e = (window * tokens + token) * chunks_per_pixel + chunk
    const int64_t chunk = e % chunks_per_pixel;
    const int64_t pixel_in_windows = e / chunks_per_pixel;
    const int64_t token = pixel_in_windows % tokens;
    const int64_t window = pixel_in_windows / tokens;
    const int64_t b = window / windows_per_image;
    const int64_t window_in_image = window % windows_per_image;
    const int64_t row = ((window_in_image / windows_per_row) * wh + token / ww + p.shift_h) % p.height;
    const int64_t col = ((window_in_image % windows_per_row) * ww + token % ww + p.shift_w) % p.width;
    const int64_t image_chunk = ((b * p.height + row) * p.width + col) * chunks_per_pixel + chunk;
    if (p.to_windows) {
      dst[e] = src[image_chunk];
    } else {
      dst[image_chunk] = src[e];
    }
  }
}

template <typename Chunk>
cudaError_t launch_with_chunk(const WindowPermuteParams& p, cudaStream_t stream) {
  const int64_t chunks_per_pixel = p.pixel_bytes / static_cast<int64_t>(sizeof(Chunk));
  const int64_t total = p.batch * p.height * p.width * chunks_per_pixel;
  return launch_kernel(window_permute_kernel<Chunk>, grid_stride_blocks(total, kThreads), kThreads, 0, stream,
                       static_cast<const Chunk*>(p.src), static_cast<Chunk*>(p.dst), p, chunks_per_pixel, total);
}

// Whether chunks of `bytes` tile a pixel and both pointers are aligned to them.
bool chunk_fits(const WindowPermuteParams& p, int64_t bytes) {
  return p.pixel_bytes % bytes == 0 && reinterpret_cast<uintptr_t>(p.src) % bytes == 0 &&
         reinterpret_cast<uintptr_t>(p.dst) % bytes == 0;
}

}  // namespace

cudaError_t launch_window_permute(const WindowPermuteParams& p, cudaStream_t stream) {
  if (p.batch * p.height * p.width * p.pixel_bytes == 0) return cudaSuccess;
  if (chunk_fits(p, 16)) return launch_with_chunk<uint4>(p, stream);
  if (chunk_fits(p, 8)) return launch_with_chunk<uint2>(p, stream);
  if (chunk_fits(p, 4)) return launch_with_chunk<uint32_t>(p, stream);
  if (chunk_fits(p, 2)) return launch_with_chunk<uint16_t>(p, stream);
  return launch_with_chunk<uint8_t>(p, stream);
}

}  // namespace cuda
}  // namespace swinir_kernels
