// window_attention / shifted_window_attention forward and backward through the launchers the binding
// picks (launch_window_attention_flash_* past the on-chip limits (N > 64 or head_dim > 64), else
// launch_window_attention_tc_* for fp16, bf16 and fp32 with allow_tf32, else launch_window_attention_*),
// with the parameters filled as csrc/cuda/window_attention.cpp does (limits, shared-memory check,
// compute-type rel_bias and mask, zeroed bias-gradient counters, the flash backward's statistics scratch).
// Case keys: layout (window | image), dtype, channels, num_heads, scale, qkv_offset (bytes); window
// layout: num_windows, tokens, mask_windows (0 = no mask); image layout: batch, height, width,
// window_h, window_w, shift_h, shift_w; optional allow_tf32 (0 | 1, default 0). Files: qkv, grad_out
// (dtype), rel_bias, mask (float64). Writes out, grad_qkv (dtype), grad_bias (the compute type: float64
// for float64 qkv, else float32), tensor_cores (one byte: 1 where tensor cores ran) and flash (one byte:
// 1 where the flash kernels ran).
#include <vector>

#include "case_io.h"
#include "drivers.h"
#include "element_kind.h"
#include "window_attention_kernel.h"

namespace simt_driver {
namespace {

using swinir_kernels::cuda::WindowAttentionBackwardParams;
using swinir_kernels::cuda::WindowAttentionParams;

// cudaDevAttrMaxSharedMemoryPerBlockOptin of an sm_90 GPU (H100/H200).
constexpr size_t kSharedMemoryOptInLimit = 227 * 1024;

template <typename Compute>
void run(const Case& c, const ElementKind& kind) {
  const bool image = c.text("layout") == "image";
  const int64_t channels = c.integer("channels"), num_heads = c.integer("num_heads");
  int64_t num_windows, tokens, pixels;
  if (image) {
    const int64_t wh = c.integer("window_h"), ww = c.integer("window_w");
    num_windows = c.integer("batch") * (c.integer("height") / wh) * (c.integer("width") / ww);
    tokens = wh * ww;
    pixels = c.integer("batch") * c.integer("height") * c.integer("width");
  } else {
    num_windows = c.integer("num_windows");
    tokens = c.integer("tokens");
    pixels = num_windows * tokens;
  }
  // No size check here: the launchers' own (csrc/limits.h) refuse what the kernels cannot take, and
  // tests/kernels/test_limits.py runs them one past their limits.
  const int64_t mask_windows = image ? 0 : c.integer("mask_windows");
  const auto qkv = c.read("qkv", static_cast<size_t>(pixels * 3 * channels) * kind.size, c.integer("qkv_offset"));
  const auto grad_out = c.read("grad_out", static_cast<size_t>(pixels * channels) * kind.size);
  const std::vector<Compute> rel_bias = read_values<Compute>(c, "rel_bias", static_cast<size_t>(num_heads * tokens * tokens));
  const std::vector<Compute> mask =
      mask_windows > 0 ? read_values<Compute>(c, "mask", static_cast<size_t>(mask_windows * tokens * tokens))
                       : std::vector<Compute>();
  // make_params
  WindowAttentionParams p{};
  p.qkv = qkv->data();
  p.rel_bias = rel_bias.data();
  p.mask = mask.empty() ? nullptr : mask.data();
  p.mask_windows = mask_windows;
  p.num_windows = num_windows;
  p.tokens = static_cast<int>(tokens);
  p.num_heads = static_cast<int>(num_heads);
  p.head_dim = static_cast<int>(channels / num_heads);
  p.scale = c.real("scale");
  p.image_layout = image;
  if (image) {
    p.height = c.integer("height");
    p.width = c.integer("width");
    p.window_h = static_cast<int>(c.integer("window_h"));
    p.window_w = static_cast<int>(c.integer("window_w"));
    p.shift_h = static_cast<int>(c.integer("shift_h"));
    p.shift_w = static_cast<int>(c.integer("shift_w"));
  }
  p.dtype = kind.type;
  p.allow_tf32 = c.has("allow_tf32") && c.integer("allow_tf32") != 0;
  const bool flash = swinir_kernels::cuda::window_attention_uses_flash(p);
  const bool tensor_cores = swinir_kernels::cuda::window_attention_uses_tensor_cores(p);
  // choose_kernels' shared-memory check, forward and backward
  for (bool backward : {false, true}) {
    const size_t needed = flash          ? swinir_kernels::cuda::window_attention_flash_shared_bytes(p, backward)
                          : tensor_cores ? swinir_kernels::cuda::window_attention_tc_shared_bytes(p, backward)
                                         : swinir_kernels::cuda::window_attention_shared_bytes(p, backward);
    if (needed > kSharedMemoryOptInLimit) fail("needs more shared memory per block than the device's opt-in limit");
  }

  const auto out = Case::output(static_cast<size_t>(pixels * channels) * kind.size);
  p.out = out->data();
  if (flash) {
    check_launch(swinir_kernels::cuda::launch_window_attention_flash_forward(p, nullptr),
                 "launch_window_attention_flash_forward");
  } else if (tensor_cores) {
    check_launch(swinir_kernels::cuda::launch_window_attention_tc_forward(p, nullptr), "launch_window_attention_tc_forward");
  } else {
    check_launch(swinir_kernels::cuda::launch_window_attention_forward(p, nullptr), "launch_window_attention_forward");
  }
  c.write("out", out->data(), out->size());

  const int64_t groups = flash          ? swinir_kernels::cuda::window_attention_flash_backward_groups(p)
                         : tensor_cores ? swinir_kernels::cuda::window_attention_tc_backward_groups(num_windows)
                                        : swinir_kernels::cuda::window_attention_backward_groups(num_windows);
  const auto counters = Case::output(static_cast<size_t>(num_heads) * sizeof(unsigned int), 0, /*fill=*/0);
  const auto grad_qkv = Case::output(qkv->size());
  const auto partials = Case::output(static_cast<size_t>(groups * num_heads * tokens * tokens) * sizeof(Compute));
  const auto grad_bias = Case::output(static_cast<size_t>(num_heads * tokens * tokens) * sizeof(Compute));
  const auto softmax_stats = Case::output(flash ? static_cast<size_t>(2 * num_windows * num_heads * tokens) * sizeof(Compute) : 0);
  WindowAttentionBackwardParams bp{};
  bp.inputs = p;
  bp.inputs.out = nullptr;
  bp.grad_out = grad_out->data();
  bp.grad_qkv = grad_qkv->data();
  bp.grad_bias_partials = partials->data();
  bp.grad_bias = grad_bias->data();
  bp.grad_bias_counters = tensor_cores && !flash ? static_cast<unsigned int*>(counters->data()) : nullptr;
  bp.softmax_stats = flash ? softmax_stats->data() : nullptr;
  if (flash) {
    check_launch(swinir_kernels::cuda::launch_window_attention_flash_backward(bp, nullptr),
                 "launch_window_attention_flash_backward");
  } else if (tensor_cores) {
    check_launch(swinir_kernels::cuda::launch_window_attention_tc_backward(bp, nullptr),
                 "launch_window_attention_tc_backward");
  } else {
    check_launch(swinir_kernels::cuda::launch_window_attention_backward(bp, nullptr), "launch_window_attention_backward");
  }
  c.write("grad_qkv", grad_qkv->data(), grad_qkv->size());
  c.write("grad_bias", grad_bias->data(), grad_bias->size());
  const unsigned char used_tensor_cores = tensor_cores ? 1 : 0;
  c.write("tensor_cores", &used_tensor_cores, 1);
  const unsigned char used_flash = flash ? 1 : 0;
  c.write("flash", &used_flash, 1);
}

}  // namespace

void run_attention(const Case& c) {
  const ElementKind kind = element_kind(c.text("dtype"));
  if (kind.type == swinir_kernels::cuda::ElementType::kFloat64) {
    run<double>(c, kind);
  } else {
    run<float>(c, kind);
  }
}

}  // namespace simt_driver
