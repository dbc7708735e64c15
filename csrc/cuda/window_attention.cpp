// window_attention / shifted_window_attention and their backward ops on CUDA: argument checks (shared
// with the CPU kernels), the kernel's size limits, fp32/fp64 copies of rel_bias and mask (tiny, shared
// by all windows), allocation and launch of the tensor-core kernels (window_attention_tc_kernel.cu: fp16,
// bf16, and fp32 when torch.backends.cuda.matmul.allow_tf32 is set) or the scalar ones
// (window_attention_kernel.cu: exact fp32, fp64) for windows held on chip (N <= 64 tokens, head_dim <= 64),
// or of the flash kernels (window_attention_flash_kernel.cu, every dtype) for larger windows or heads.
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "../window_attention_args.h"
#include "torch_element_type.h"
#include "window_attention_kernel.h"

namespace swinir_kernels {
namespace {

// Image layout of shifted_window_attention: the window's (wh, ww) and the shift's (sh, sw); absent for
// the window layout.
struct ImageWindows {
  AxisPair window, shift;
};

// The CUDA kernel's limits on top of the shared checks; `tokens_name` names what sets N.
void check_kernel_limits(const AttentionDims& d, const at::Tensor& qkv, const char* tokens_name) {
  TORCH_CHECK_VALUE(d.tokens <= cuda::kCudaAttentionMaxTokens, tokens_name, ": the CUDA kernel handles at most ",
                    cuda::kCudaAttentionMaxTokens, " tokens per window, got ", d.tokens);
  cuda::element_type_of(qkv, "qkv");
}

cuda::WindowAttentionParams make_params(const AttentionDims& d, const at::Tensor& qkv, const at::Tensor& rel_bias,
                                        const at::Tensor& mask, double scale, const ImageWindows* image) {
  cuda::WindowAttentionParams p{};
  p.qkv = qkv.const_data_ptr();
  p.rel_bias = rel_bias.const_data_ptr();
  p.mask = mask.defined() ? mask.const_data_ptr() : nullptr;
  p.mask_windows = mask.defined() ? mask.size(0) : 0;
  p.num_windows = d.num_windows;
  p.tokens = static_cast<int>(d.tokens);
  p.num_heads = static_cast<int>(d.num_heads);
  p.head_dim = static_cast<int>(d.head_dim);
  p.scale = scale;
  p.image_layout = image != nullptr;
  if (image != nullptr) {
    p.height = d.height;
    p.width = d.width;
    p.window_h = static_cast<int>(image->window.h);
    p.window_w = static_cast<int>(image->window.w);
    p.shift_h = static_cast<int>(image->shift.h);
    p.shift_w = static_cast<int>(image->shift.w);
  }
  p.dtype = cuda::element_type_of(qkv, "qkv");
  p.allow_tf32 = at::globalContext().allowTF32CuBLAS();
  return p;
}

int shared_memory_limit() {
  int device = 0, limit = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  return limit;
}

// The kernels that run a call: the flash kernels for windows past the on-chip limits, else the on-chip
// tensor-core or scalar kernels.
enum class Kernels { kScalar, kTensorCores, kFlash };

// Flash kernels: their shared memory must fit. On-chip: the tensor-core kernel for its dtypes where its
// shared memory fits the device (the TF32 backward at head_dim > 48 needs more than an A100's 163 KB), else
// the scalar kernel, which must fit.
Kernels choose_kernels(const cuda::WindowAttentionParams& p, bool backward) {
  const int limit = shared_memory_limit();
  if (cuda::window_attention_uses_flash(p)) {
    const size_t needed = cuda::window_attention_flash_shared_bytes(p, backward);
    TORCH_CHECK_VALUE(needed <= static_cast<size_t>(limit), "qkv: N=", p.tokens, ", head_dim=", p.head_dim,
                      " in this dtype needs ", needed, " bytes of shared memory per block for the CUDA flash ",
                      backward ? "backward" : "forward", " kernels, more than the device's ", limit);
    return Kernels::kFlash;
  }
  if (cuda::window_attention_uses_tensor_cores(p) &&
      cuda::window_attention_tc_shared_bytes(p, backward) <= static_cast<size_t>(limit))
    return Kernels::kTensorCores;
  const size_t needed = cuda::window_attention_shared_bytes(p, backward);
  TORCH_CHECK_VALUE(needed <= static_cast<size_t>(limit), "qkv: N=", p.tokens, ", head_dim=", p.head_dim,
                    " in this dtype needs ", needed, " bytes of shared memory per block for the CUDA ",
                    backward ? "backward" : "forward", " kernel, more than the device's ", limit);
  return Kernels::kScalar;
}

// rel_bias / mask in the kernel's compute type, contiguous (undefined stays undefined).
at::Tensor in_compute_dtype(const at::Tensor& t, const at::Tensor& qkv) {
  return t.defined() ? t.to(cuda::compute_dtype_of(qkv)).contiguous() : t;
}

at::Tensor attention_forward(const at::Tensor& qkv_in, const at::Tensor& rel_bias, const at::Tensor& mask,
                             const AttentionDims& d, double scale, const ImageWindows* image) {
  const c10::cuda::CUDAGuard device_guard(qkv_in.device());
  auto out_shape = qkv_in.sizes().vec();
  out_shape.back() = d.channels;
  auto out = at::empty(out_shape, qkv_in.options());
  if (out.numel() == 0) return out;
  const auto qkv = qkv_in.contiguous();
  const auto bias = in_compute_dtype(rel_bias, qkv);
  const auto mask_values = in_compute_dtype(mask, qkv);
  auto params = make_params(d, qkv, bias, mask_values, scale, image);
  params.out = out.mutable_data_ptr();
  const auto stream = c10::cuda::getCurrentCUDAStream();
  switch (choose_kernels(params, /*backward=*/false)) {
    case Kernels::kFlash:
      C10_CUDA_CHECK(cuda::launch_window_attention_flash_forward(params, stream));
      break;
    case Kernels::kTensorCores:
      C10_CUDA_CHECK(cuda::launch_window_attention_tc_forward(params, stream));
      break;
    case Kernels::kScalar:
      C10_CUDA_CHECK(cuda::launch_window_attention_forward(params, stream));
      break;
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

std::tuple<at::Tensor, at::Tensor> attention_backward(const at::Tensor& grad_out_in, const at::Tensor& qkv_in,
                                                      const at::Tensor& rel_bias, const at::Tensor& mask,
                                                      const AttentionDims& d, double scale,
                                                      const ImageWindows* image) {
  check_attention_grad_out(grad_out_in, qkv_in, d);
  const c10::cuda::CUDAGuard device_guard(qkv_in.device());
  auto grad_qkv = at::empty(qkv_in.sizes(), qkv_in.options());
  if (grad_qkv.numel() == 0) {
    // No window, token or channel: rel_bias has no effect on the (empty) output.
    return {grad_qkv, at::zeros(rel_bias.sizes(), rel_bias.options())};
  }
  const auto qkv = qkv_in.contiguous();
  const auto grad_out = grad_out_in.contiguous();
  const auto bias = in_compute_dtype(rel_bias, qkv);
  const auto mask_values = in_compute_dtype(mask, qkv);
  const auto compute_options = qkv.options().dtype(cuda::compute_dtype_of(qkv));
  cuda::WindowAttentionBackwardParams params{};
  params.inputs = make_params(d, qkv, bias, mask_values, scale, image);
  const Kernels kernels = choose_kernels(params.inputs, /*backward=*/true);
  const bool tensor_cores = kernels == Kernels::kTensorCores;
  // Scalar and flash kernels: partials (groups, nH, N, N) summed by a last kernel; tensor cores: (nH, groups,
  // N, N) summed by each head's last block, which needs the zeroed per-head counters. Flash: the softmax
  // statistics (lse, delta per row) of its first pass.
  const int64_t groups = kernels == Kernels::kFlash ? cuda::window_attention_flash_backward_groups(params.inputs)
                         : tensor_cores             ? cuda::window_attention_tc_backward_groups(d.num_windows)
                                                    : cuda::window_attention_backward_groups(d.num_windows);
  auto grad_bias_partials = at::empty({groups, d.num_heads, d.tokens, d.tokens}, compute_options);
  auto grad_bias = at::empty({d.num_heads, d.tokens, d.tokens}, compute_options);
  auto grad_bias_counters = tensor_cores ? at::zeros({d.num_heads}, qkv.options().dtype(at::kInt)) : at::Tensor();
  params.grad_bias_counters =
      tensor_cores ? reinterpret_cast<unsigned int*>(grad_bias_counters.mutable_data_ptr<int>()) : nullptr;
  params.grad_out = grad_out.const_data_ptr();
  params.grad_qkv = grad_qkv.mutable_data_ptr();
  params.grad_bias_partials = grad_bias_partials.mutable_data_ptr();
  params.grad_bias = grad_bias.mutable_data_ptr();
  auto softmax_stats = kernels == Kernels::kFlash
                           ? at::empty({2, d.num_windows, d.num_heads, d.tokens}, compute_options)
                           : at::Tensor();
  params.softmax_stats = softmax_stats.defined() ? softmax_stats.mutable_data_ptr() : nullptr;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  switch (kernels) {
    case Kernels::kFlash:
      C10_CUDA_CHECK(cuda::launch_window_attention_flash_backward(params, stream));
      break;
    case Kernels::kTensorCores:
      C10_CUDA_CHECK(cuda::launch_window_attention_tc_backward(params, stream));
      break;
    case Kernels::kScalar:
      C10_CUDA_CHECK(cuda::launch_window_attention_backward(params, stream));
      break;
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {grad_qkv, grad_bias.to(rel_bias.scalar_type())};
}

at::Tensor optional_mask(const c10::optional<at::Tensor>& mask) { return mask.has_value() ? *mask : at::Tensor(); }

}  // namespace

at::Tensor window_attention_forward_cuda(const at::Tensor& qkv, const at::Tensor& rel_bias,
                                         const c10::optional<at::Tensor>& mask, int64_t num_heads, double scale) {
  const AttentionDims d = window_attention_dims(qkv, rel_bias, mask, num_heads);
  check_kernel_limits(d, qkv, "qkv.shape[1] (N)");
  return attention_forward(qkv, rel_bias, optional_mask(mask), d, scale, /*image=*/nullptr);
}

std::tuple<at::Tensor, at::Tensor> window_attention_backward_cuda(const at::Tensor& grad_out, const at::Tensor& qkv,
                                                                  const at::Tensor& rel_bias,
                                                                  const c10::optional<at::Tensor>& mask,
                                                                  int64_t num_heads, double scale) {
  const AttentionDims d = window_attention_dims(qkv, rel_bias, mask, num_heads);
  check_kernel_limits(d, qkv, "qkv.shape[1] (N)");
  return attention_backward(grad_out, qkv, rel_bias, optional_mask(mask), d, scale, /*image=*/nullptr);
}

at::Tensor shifted_window_attention_forward_cuda(const at::Tensor& qkv, const at::Tensor& rel_bias, int64_t num_heads,
                                                 at::IntArrayRef window_size, at::IntArrayRef shift, double scale) {
  const ImageWindows image{window_shape(window_size), shift_pair(shift)};
  const AttentionDims d = shifted_window_attention_dims(qkv, rel_bias, num_heads, image.window, image.shift);
  check_kernel_limits(d, qkv, "window_size[0] * window_size[1] (N)");
  return attention_forward(qkv, rel_bias, at::Tensor(), d, scale, &image);
}

std::tuple<at::Tensor, at::Tensor> shifted_window_attention_backward_cuda(const at::Tensor& grad_out,
                                                                          const at::Tensor& qkv,
                                                                          const at::Tensor& rel_bias,
                                                                          int64_t num_heads,
                                                                          at::IntArrayRef window_size,
                                                                          at::IntArrayRef shift, double scale) {
  const ImageWindows image{window_shape(window_size), shift_pair(shift)};
  const AttentionDims d = shifted_window_attention_dims(qkv, rel_bias, num_heads, image.window, image.shift);
  check_kernel_limits(d, qkv, "window_size[0] * window_size[1] (N)");
  return attention_backward(grad_out, qkv, rel_bias, at::Tensor(), d, scale, &image);
}

TORCH_LIBRARY_IMPL(swinir_kernels, CUDA, m) {
  m.impl("window_attention", &window_attention_forward_cuda);
  m.impl("_window_attention_backward", &window_attention_backward_cuda);
  m.impl("shifted_window_attention", &shifted_window_attention_forward_cuda);
  m.impl("_shifted_window_attention_backward", &shifted_window_attention_backward_cuda);
}

}  // namespace swinir_kernels
