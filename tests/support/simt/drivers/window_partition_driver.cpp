// window_partition / window_reverse through launch_window_permute, with the parameters filled as
// csrc/cuda/window_partition.cpp does. Case keys: to_windows (0/1), batch, height, width, channels,
// element_size, window_h, window_w, shift_h, shift_w (any sign), src_offset, dst_offset (bytes); file src; writes dst.
#include "case_io.h"
#include "drivers.h"
#include "window_partition_kernel.h"

namespace simt_driver {
namespace {

int64_t positive_mod(int64_t value, int64_t modulus) {  // as csrc/checks.h
  const int64_t r = value % modulus;
  return r < 0 ? r + modulus : r;
}

}  // namespace

void run_window_permute(const Case& c) {
  const int64_t batch = c.integer("batch"), height = c.integer("height"), width = c.integer("width");
  const int64_t pixel_bytes = c.integer("channels") * c.integer("element_size");
  const size_t bytes = static_cast<size_t>(batch * height * width * pixel_bytes);
  const auto src = c.read("src", bytes, c.integer("src_offset"));
  const auto dst = Case::output(bytes, c.integer("dst_offset"));
  swinir_kernels::cuda::WindowPermuteParams params;
  params.src = src->data();
  params.dst = dst->data();
  params.batch = batch;
  params.height = height;
  params.width = width;
  params.pixel_bytes = pixel_bytes;
  params.window_h = c.integer("window_h");
  params.window_w = c.integer("window_w");
  params.shift_h = positive_mod(c.integer("shift_h"), height);
  params.shift_w = positive_mod(c.integer("shift_w"), width);
  params.to_windows = c.integer("to_windows") != 0;
  check_launch(swinir_kernels::cuda::launch_window_permute(params, nullptr), "launch_window_permute");
  c.write("dst", dst->data(), dst->size());
}

}  // namespace simt_driver
