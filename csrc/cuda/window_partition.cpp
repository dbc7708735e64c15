// window_partition / window_reverse on CUDA: argument checks, allocation and launch of the
// permutation kernel in window_partition_kernel.cu (a byte copy, so every dtype is handled).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../window_partition_args.h"
#include "window_partition_kernel.h"

namespace swinir_kernels {
namespace {

void permute_windows(const at::Tensor& src, at::Tensor& dst, const ImageDims& d, const AxisPair& window,
                     const AxisPair& shift, bool to_windows) {
  cuda::WindowPermuteParams params;
  params.src = src.const_data_ptr();
  params.dst = dst.mutable_data_ptr();
  params.batch = d.batch;
  params.height = d.height;
  params.width = d.width;
  params.pixel_bytes = d.channels * static_cast<int64_t>(src.element_size());
  params.window_h = window.h;
  params.window_w = window.w;
  params.shift_h = positive_mod(shift.h, d.height);
  params.shift_w = positive_mod(shift.w, d.width);
  params.to_windows = to_windows;
  C10_CUDA_CHECK(cuda::launch_window_permute(params, c10::cuda::getCurrentCUDAStream()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

at::Tensor window_partition_forward_cuda(const at::Tensor& x, at::IntArrayRef window_size, at::IntArrayRef shift) {
  const AxisPair window = window_shape(window_size);
  const AxisPair shifts = shift_pair(shift);
  const ImageDims d = window_partition_dims(x, window);
  const c10::cuda::CUDAGuard device_guard(x.device());
  auto out = at::empty({num_windows(d, window), window.h * window.w, d.channels}, x.options());
  if (out.numel() == 0) return out;
  permute_windows(x.contiguous(), out, d, window, shifts, /*to_windows=*/true);
  return out;
}

at::Tensor window_reverse_forward_cuda(const at::Tensor& windows, at::IntArrayRef window_size, int64_t H, int64_t W,
                                       at::IntArrayRef shift) {
  const AxisPair window = window_shape(window_size);
  const AxisPair shifts = shift_pair(shift);
  const ImageDims d = window_reverse_dims(windows, window, H, W);
  const c10::cuda::CUDAGuard device_guard(windows.device());
  auto out = at::empty({d.batch, H, W, d.channels}, windows.options());
  if (out.numel() == 0) return out;
  permute_windows(windows.contiguous(), out, d, window, shifts, /*to_windows=*/false);
  return out;
}

TORCH_LIBRARY_IMPL(swinir_kernels, CUDA, m) {
  m.impl("window_partition", &window_partition_forward_cuda);
  m.impl("window_reverse", &window_reverse_forward_cuda);
}

}  // namespace swinir_kernels
