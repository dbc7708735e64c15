// window_partition / window_reverse on CPU: cyclic shift and window (un)partition in one pass.
// A pure permutation, so the kernel moves bytes (any dtype) and each op is the other's backward.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>

#include "../window_partition_args.h"

namespace swinir_kernels {
namespace {

// Image layout (B, H, W, C) <-> window layout (B*nW, wh*ww, C). The rolled image row/column (hr, wr)
// reads image pixel ((hr + sh) mod H, (wr + sw) mod W) and is token (hr % wh, wr % ww) of
// window (b, hr / wh, wr / ww); windows are batch-major, then row-major over the window grid.
void copy_windows(const char* image_in, char* image_out, const char* windows_in, char* windows_out, int64_t B,
                  int64_t H, int64_t W, int64_t pixel_bytes, const AxisPair& window, const AxisPair& shift) {
  const bool to_windows = image_in != nullptr;
  const int64_t wh = window.h, ww = window.w;
  const int64_t windows_per_row = W / ww;
  const int64_t windows_per_image = (H / wh) * windows_per_row;
  const int64_t shift_h = positive_mod(shift.h, H);
  const int64_t shift_w = positive_mod(shift.w, W);
  // Each task copies whole image rows; aim for ~64 KiB per task so small images stay serial.
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, W * pixel_bytes));
  at::parallel_for(0, B * H, grain, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / H, hr = row % H;
      const int64_t image_row = (b * H + (hr + shift_h) % H) * W * pixel_bytes;
      const int64_t window_base = b * windows_per_image + (hr / wh) * windows_per_row;
      for (int64_t wc = 0; wc < windows_per_row; ++wc) {
        const int64_t window_row = ((window_base + wc) * wh * ww + (hr % wh) * ww) * pixel_bytes;
        // The ww pixels of this window row start at image column w0 and wrap around at most once.
        const int64_t w0 = (wc * ww + shift_w) % W;
        const int64_t first = std::min(ww, W - w0) * pixel_bytes;
        const int64_t rest = ww * pixel_bytes - first;
        if (to_windows) {
          std::memcpy(windows_out + window_row, image_in + image_row + w0 * pixel_bytes, first);
          if (rest) std::memcpy(windows_out + window_row + first, image_in + image_row, rest);
        } else {
          std::memcpy(image_out + image_row + w0 * pixel_bytes, windows_in + window_row, first);
          if (rest) std::memcpy(image_out + image_row, windows_in + window_row + first, rest);
        }
      }
    }
  });
}

}  // namespace

at::Tensor window_partition_forward_cpu(const at::Tensor& x, at::IntArrayRef window_size, at::IntArrayRef shift) {
  const AxisPair window = window_shape(window_size);
  const ImageDims d = window_partition_dims(x, window);
  auto out = at::empty({num_windows(d, window), window.h * window.w, d.channels}, x.options());
  if (out.numel() == 0) return out;
  const auto src = x.contiguous();
  copy_windows(static_cast<const char*>(src.const_data_ptr()), nullptr, nullptr,
               static_cast<char*>(out.mutable_data_ptr()), d.batch, d.height, d.width, d.channels * x.element_size(),
               window, shift_pair(shift));
  return out;
}

at::Tensor window_reverse_forward_cpu(const at::Tensor& windows, at::IntArrayRef window_size, int64_t H, int64_t W,
                                      at::IntArrayRef shift) {
  const AxisPair window = window_shape(window_size);
  const ImageDims d = window_reverse_dims(windows, window, H, W);
  auto out = at::empty({d.batch, H, W, d.channels}, windows.options());
  if (out.numel() == 0) return out;
  const auto src = windows.contiguous();
  copy_windows(nullptr, static_cast<char*>(out.mutable_data_ptr()), static_cast<const char*>(src.const_data_ptr()),
               nullptr, d.batch, H, W, d.channels * windows.element_size(), window, shift_pair(shift));
  return out;
}

TORCH_LIBRARY_IMPL(swinir_kernels, CPU, m) {
  m.impl("window_partition", &window_partition_forward_cpu);
  m.impl("window_reverse", &window_reverse_forward_cpu);
}

}  // namespace swinir_kernels
