// pixel_shuffle on CPU, with the optional fused epilogue of SwinIR's tail:
//   out[b, c, oh, ow] = x[b, c*r*r + (oh % r)*r + (ow % r), oh / r, ow / r] * scale[c] + bias[c]
// for oh < out_h <= H*r, ow < out_w <= W*r (the crop). Works on NCHW and channels_last tensors
// through their strides; the output takes the input's memory format, as F.pixel_shuffle does.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../pixel_shuffle_args.h"

namespace swinir_kernels {
namespace {

template <typename T>
std::vector<T> per_channel(const c10::optional<at::Tensor>& t, int64_t channels, T fill) {
  if (!t.has_value()) return std::vector<T>(channels, fill);
  auto values = t->to(at::kDouble).reshape({-1}).expand({channels}).contiguous();
  const double* p = values.const_data_ptr<double>();
  return std::vector<T>(p, p + channels);
}

// Visits every cropped output pixel once, calling visit(out_offset, in_offset, c), with
// (B, C, out_h, out_w) output strides `os` and (B, C*r*r, H, W) input strides `is`. Work is split by
// output rows (b, oh); within a row the offsets are affine in the loop counters (no division per
// element). NCHW: the innermost loop runs along the input row's columns (output column iw*r + j, for
// each phase j), contiguous reads. channels_last: one channel at a time along the output row, so the
// channel's epilogue constants stay put (channels innermost ran 1.5-2.5x slower: with SwinIR's 3
// output channels that loop is too short to pay for itself).
template <typename Visit>
void for_each_shuffled(int64_t B, int64_t C, int64_t out_h, int64_t out_w, int64_t r, at::IntArrayRef os,
                       at::IntArrayRef is, bool channels_innermost, const Visit& visit) {
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, C * out_w));
  at::parallel_for(0, B * out_h, grain, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / out_h, oh = row % out_h;
      const int64_t out_row = b * os[0] + oh * os[2];
      // Input channel c*r*r + (oh % r)*r + j at input row oh / r feeds output columns iw*r + j.
      const int64_t in_row = b * is[0] + (oh % r) * r * is[1] + (oh / r) * is[2];
      const int64_t channel_step = r * r * is[1];
      if (channels_innermost) {
        for (int64_t c = 0; c < C; ++c) {
          const int64_t o = out_row + c * os[1], i = in_row + c * channel_step;
          for (int64_t ow = 0, iw = 0; ow < out_w; ++iw) {
            for (int64_t j = 0; j < r && ow < out_w; ++j, ++ow) visit(o + ow * os[3], i + j * is[1] + iw * is[3], c);
          }
        }
      } else {
        for (int64_t c = 0; c < C; ++c) {
          for (int64_t j = 0; j < r && j < out_w; ++j) {
            const int64_t o = out_row + c * os[1] + j * os[3], i = in_row + c * channel_step + j * is[1];
            const int64_t columns = (out_w - j + r - 1) / r;  // iw with iw*r + j < out_w
            for (int64_t iw = 0; iw < columns; ++iw) visit(o + iw * r * os[3], i + iw * is[3], c);
          }
        }
      }
    }
  });
}

}  // namespace

at::Tensor pixel_shuffle_forward_cpu(const at::Tensor& x, int64_t r, const c10::optional<at::Tensor>& scale,
                                     const c10::optional<at::Tensor>& bias, int64_t out_h, int64_t out_w) {
  const ShuffleDims d = pixel_shuffle_dims(x, r, scale, bias, out_h, out_w);
  const int64_t B = d.batch, C = d.channels, H = d.height, W = d.width;
  const auto format = shuffle_memory_format(x);
  const auto src = x.contiguous(format);
  const bool channels_last = format == at::MemoryFormat::ChannelsLast;
  // Nothing to fuse in a plain, uncropped channels_last shuffle: ATen's vectorised channels_last kernel
  // (same output format) beats the strided gather below, which pays off only with the epilogue or crop.
  if (channels_last && r > 1 && !scale.has_value() && !bias.has_value() && out_h == H * r && out_w == W * r) {
    return at::pixel_shuffle(src, r);
  }
  auto out = at::empty({B, C, out_h, out_w}, x.options().memory_format(format));
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pixel_shuffle_forward_cpu", [&] {
    const scalar_t* in = src.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    if (!scale.has_value() && !bias.has_value()) {
      for_each_shuffled(B, C, out_h, out_w, r, out.strides(), src.strides(), channels_last,
                        [&](int64_t oo, int64_t io, int64_t) { o[oo] = in[io]; });
      return;
    }
    // The epilogue runs in opmath (fp32 for half/bf16) and rounds once.
    using opmath_t = at::opmath_type<scalar_t>;
    const auto a = per_channel<opmath_t>(scale, C, 1), b = per_channel<opmath_t>(bias, C, 0);
    for_each_shuffled(B, C, out_h, out_w, r, out.strides(), src.strides(), channels_last,
                      [&](int64_t oo, int64_t io, int64_t c) {
                        o[oo] = static_cast<scalar_t>(static_cast<opmath_t>(in[io]) * a[c] + b[c]);
                      });
  });
  return out;
}

at::Tensor pixel_shuffle_backward_cpu(const at::Tensor& grad_out, int64_t r, const c10::optional<at::Tensor>& scale,
                                      int64_t H, int64_t W) {
  const ShuffleDims d = pixel_shuffle_backward_dims(grad_out, r, scale, H, W);
  const int64_t B = d.batch, C = d.channels, out_h = d.out_h, out_w = d.out_w;
  const auto format = shuffle_memory_format(grad_out);
  const auto g = grad_out.contiguous(format);
  // Cropped-away pixels get no gradient: start from zeros only when the crop dropped any.
  const bool cropped = out_h < H * r || out_w < W * r;
  const bool channels_last = format == at::MemoryFormat::ChannelsLast;
  // The inverse of the forward's ATen shortcut: a plain, uncropped channels_last unshuffle.
  if (channels_last && r > 1 && !scale.has_value() && !cropped) return at::pixel_unshuffle(g, r);
  auto options = grad_out.options().memory_format(format);
  auto grad_x = cropped ? at::zeros({B, C * r * r, H, W}, options) : at::empty({B, C * r * r, H, W}, options);
  if (g.numel() == 0) return grad_x;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "pixel_shuffle_backward_cpu", [&] {
    const scalar_t* go = g.const_data_ptr<scalar_t>();
    scalar_t* gi = grad_x.mutable_data_ptr<scalar_t>();
    if (!scale.has_value()) {
      for_each_shuffled(B, C, out_h, out_w, r, g.strides(), grad_x.strides(), channels_last,
                        [&](int64_t oo, int64_t io, int64_t) { gi[io] = go[oo]; });
      return;
    }
    using opmath_t = at::opmath_type<scalar_t>;
    const auto a = per_channel<opmath_t>(scale, C, 1);
    for_each_shuffled(B, C, out_h, out_w, r, g.strides(), grad_x.strides(), channels_last,
                      [&](int64_t oo, int64_t io, int64_t c) {
                        gi[io] = static_cast<scalar_t>(static_cast<opmath_t>(go[oo]) * a[c]);
                      });
  });
  return grad_x;
}

TORCH_LIBRARY_IMPL(swinir_kernels, CPU, m) {
  m.impl("pixel_shuffle", &pixel_shuffle_forward_cpu);
  m.impl("_pixel_shuffle_backward", &pixel_shuffle_backward_cpu);
}

}  // namespace swinir_kernels
