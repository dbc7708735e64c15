// pixel_shuffle and its backward on CUDA: argument checks (shared with the CPU kernels), the
// memory-format rule, allocation and launch of the strided kernel in pixel_shuffle_kernel.cu.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../pixel_shuffle_args.h"
#include "pixel_shuffle_kernel.h"
#include "torch_element_type.h"

namespace swinir_kernels {
namespace {

// scale / bias as `channels` contiguous values of the compute dtype (undefined when absent).
at::Tensor per_channel(const c10::optional<at::Tensor>& t, int64_t channels, at::ScalarType compute_dtype) {
  if (!t.has_value()) return at::Tensor();
  return t->to(compute_dtype).reshape({-1}).expand({channels}).contiguous();
}

// Launches the kernel between the shuffled tensor (B, C, out_h, out_w) and the unshuffled one.
void launch(const at::Tensor& src, at::Tensor& dst, const at::Tensor& shuffled, const at::Tensor& unshuffled,
            const ShuffleDims& d, int64_t r, const at::Tensor& scale, const at::Tensor& bias, bool to_shuffled,
            bool channels_last) {
  cuda::PixelShuffleParams params;
  params.src = src.const_data_ptr();
  params.dst = dst.mutable_data_ptr();
  params.scale = scale.defined() ? scale.const_data_ptr() : nullptr;
  params.bias = bias.defined() ? bias.const_data_ptr() : nullptr;
  params.batch = d.batch;
  params.channels = d.channels;
  params.out_h = d.out_h;
  params.out_w = d.out_w;
  params.upscale_factor = r;
  for (int i = 0; i < 4; ++i) {
    params.shuffled_strides[i] = shuffled.stride(i);
    params.unshuffled_strides[i] = unshuffled.stride(i);
  }
  params.channels_innermost = channels_last;
  params.to_shuffled = to_shuffled;
  params.dtype = cuda::element_type_of(src, to_shuffled ? "x" : "grad_out");
  C10_CUDA_CHECK(cuda::launch_pixel_shuffle(params, c10::cuda::getCurrentCUDAStream()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

at::Tensor pixel_shuffle_forward_cuda(const at::Tensor& x, int64_t r, const c10::optional<at::Tensor>& scale,
                                      const c10::optional<at::Tensor>& bias, int64_t out_h, int64_t out_w) {
  const ShuffleDims d = pixel_shuffle_dims(x, r, scale, bias, out_h, out_w);
  cuda::element_type_of(x, "x");  // rejects other dtypes before anything is allocated
  const c10::cuda::CUDAGuard device_guard(x.device());
  const auto format = shuffle_memory_format(x);
  auto out = at::empty({d.batch, d.channels, out_h, out_w}, x.options().memory_format(format));
  if (out.numel() == 0) return out;
  const auto src = x.contiguous(format);
  const auto compute_dtype = cuda::compute_dtype_of(x);
  launch(src, out, out, src, d, r, per_channel(scale, d.channels, compute_dtype),
         per_channel(bias, d.channels, compute_dtype), /*to_shuffled=*/true,
         format == at::MemoryFormat::ChannelsLast);
  return out;
}

at::Tensor pixel_shuffle_backward_cuda(const at::Tensor& grad_out, int64_t r, const c10::optional<at::Tensor>& scale,
                                       int64_t H, int64_t W) {
  const ShuffleDims d = pixel_shuffle_backward_dims(grad_out, r, scale, H, W);
  cuda::element_type_of(grad_out, "grad_out");  // rejects other dtypes before anything is allocated
  const c10::cuda::CUDAGuard device_guard(grad_out.device());
  const auto format = shuffle_memory_format(grad_out);
  const auto g = grad_out.contiguous(format);
  // Cropped-away pixels get no gradient: start from zeros only when the crop dropped any.
  const bool cropped = d.out_h < H * r || d.out_w < W * r;
  const auto options = grad_out.options().memory_format(format);
  const std::vector<int64_t> shape{d.batch, d.channels * r * r, H, W};
  auto grad_x = cropped ? at::zeros(shape, options) : at::empty(shape, options);
  if (g.numel() == 0) return grad_x;
  launch(g, grad_x, g, grad_x, d, r, per_channel(scale, d.channels, cuda::compute_dtype_of(grad_out)), at::Tensor(),
         /*to_shuffled=*/false, format == at::MemoryFormat::ChannelsLast);
  return grad_x;
}

TORCH_LIBRARY_IMPL(swinir_kernels, CUDA, m) {
  m.impl("pixel_shuffle", &pixel_shuffle_forward_cuda);
  m.impl("_pixel_shuffle_backward", &pixel_shuffle_backward_cuda);
}

}  // namespace swinir_kernels
