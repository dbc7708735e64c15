// pixel_shuffle and its backward through launch_pixel_shuffle, with the parameters filled as
// csrc/cuda/pixel_shuffle.cpp does. Case keys: to_shuffled (0/1), dtype, batch, channels (C, shuffled),
// height, width (unshuffled H, W), upscale_factor, out_h, out_w, channels_last (the memory format both
// tensors take), scale_values / bias_values (0 = absent, 1 or C float64 values in files scale / bias),
// src_offset (bytes); file src (contiguous in that format); writes dst.
#include <vector>

#include "case_io.h"
#include "drivers.h"
#include "element_kind.h"
#include "pixel_shuffle_kernel.h"

namespace simt_driver {
namespace {

// Strides (in elements) of a contiguous (n, c, h, w) tensor in NCHW or channels_last order.
void contiguous_strides(int64_t c, int64_t h, int64_t w, bool channels_last, int64_t* strides) {
  if (channels_last) {
    strides[0] = h * w * c, strides[1] = 1, strides[2] = w * c, strides[3] = c;
  } else {
    strides[0] = c * h * w, strides[1] = h * w, strides[2] = w, strides[3] = 1;
  }
}

// scale / bias as `channels` values of the compute type (the binding's per_channel: to(), expand()).
template <typename Compute>
std::vector<Compute> per_channel(const Case& c, const std::string& name, int64_t channels) {
  const int64_t given = c.integer(name + "_values");
  if (given == 0) return {};
  std::vector<Compute> values = read_values<Compute>(c, name, static_cast<size_t>(given));
  if (given == 1) values.assign(static_cast<size_t>(channels), values[0]);
  return values;
}

}  // namespace

void run_pixel_shuffle(const Case& c) {
  const ElementKind kind = element_kind(c.text("dtype"));
  const bool to_shuffled = c.integer("to_shuffled") != 0, channels_last = c.integer("channels_last") != 0;
  const int64_t batch = c.integer("batch"), channels = c.integer("channels"), r = c.integer("upscale_factor");
  const int64_t height = c.integer("height"), width = c.integer("width");
  const int64_t out_h = c.integer("out_h"), out_w = c.integer("out_w");
  const size_t shuffled_bytes = static_cast<size_t>(batch * channels * out_h * out_w) * kind.size;
  const size_t unshuffled_bytes = static_cast<size_t>(batch * channels * r * r * height * width) * kind.size;
  const auto src = c.read("src", to_shuffled ? unshuffled_bytes : shuffled_bytes, c.integer("src_offset"));
  // Backward: the binding zero-fills grad_x only when the crop dropped pixels (else at::empty).
  const bool cropped = out_h < height * r || out_w < width * r;
  const auto dst = to_shuffled ? Case::output(shuffled_bytes) : Case::output(unshuffled_bytes, 0, cropped ? 0 : 0xff);
  std::vector<float> scale32, bias32;
  std::vector<double> scale64, bias64;
  const void* scale = nullptr;
  const void* bias = nullptr;
  if (kind.type == swinir_kernels::cuda::ElementType::kFloat64) {
    scale64 = per_channel<double>(c, "scale", channels);
    bias64 = per_channel<double>(c, "bias", channels);
    scale = scale64.empty() ? nullptr : scale64.data();
    bias = bias64.empty() ? nullptr : bias64.data();
  } else {
    scale32 = per_channel<float>(c, "scale", channels);
    bias32 = per_channel<float>(c, "bias", channels);
    scale = scale32.empty() ? nullptr : scale32.data();
    bias = bias32.empty() ? nullptr : bias32.data();
  }
  if (!to_shuffled && bias != nullptr) fail("the backward takes no bias");
  swinir_kernels::cuda::PixelShuffleParams params;
  params.src = src->data();
  params.dst = dst->data();
  params.scale = scale;
  params.bias = bias;
  params.batch = batch;
  params.channels = channels;
  params.out_h = out_h;
  params.out_w = out_w;
  params.upscale_factor = r;
  contiguous_strides(channels, out_h, out_w, channels_last, params.shuffled_strides);
  contiguous_strides(channels * r * r, height, width, channels_last, params.unshuffled_strides);
  params.channels_innermost = channels_last;
  params.to_shuffled = to_shuffled;
  params.dtype = kind.type;
  check_launch(swinir_kernels::cuda::launch_pixel_shuffle(params, nullptr), "launch_pixel_shuffle");
  c.write("dst", dst->data(), dst->size());
}

}  // namespace simt_driver
