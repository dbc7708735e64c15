// Fused window attention with relative position bias on CPU, in two layouts that share one core:
//
//   window layout  window_attention(qkv (B*nW, N, 3C), rel_bias (nH, N, N), mask (nW, N, N)?)
//   image layout   shifted_window_attention(qkv (B, H, W, 3C), rel_bias, ws, shift)
//
// For window w and head h (q, k, v the head's (N, hd) slices of the window's qkv rows):
//   S = q k^T * scale + rel_bias[h] (+ mask),  P = softmax_rows(S),  O = P v,
// computed in the op-math type (fp32 for fp16/bf16/fp32, fp64 for fp64) and written once.
//
// A window is described by the N pixel indices of its tokens: row n of the window lives at
// qkv[pixel[n] * 3C] and out[pixel[n] * C]. In the window layout pixel[n] = w*N + n; in the image
// layout token (ti, tj) of window (b, wr, wc) is pixel (b, (wr*ws+ti+shift) % H, (wc*ws+tj+shift) % W),
// which folds the cyclic shift, the partition and the reverse into the addressing. The official shift
// mask (-100 between tokens of different regions of the rolled image) comes from per-token region ids
// computed from coordinates, so no mask tensor exists for the image layout.
//
// Backward recomputes P (nothing N x N is saved) and, per window and head:
//   dV = P^T dO,  dP = dO v^T,  dS = P * (dP - rowsum(P * dP)),  dq = dS k * scale,  dk = dS^T q * scale,
//   d rel_bias[h] = sum over windows of dS.
// Every pixel belongs to one window, so dq/dk/dv are written without races. The bias gradient is
// accumulated in a fixed number of window chunks (a function of the shape only) and the partials are
// summed in chunk order, so it is bit-identical whatever the thread count.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "../checks.h"

namespace swinir_kernels {
namespace {

constexpr int64_t kMaxHeadDim = 64;
constexpr double kShiftMaskValue = -100.0;  // the official additive mask, not -inf
// Windows are split into at most this many chunks for the bias gradient; each chunk owns an
// (nH, N, N) partial. A constant (not the thread count) keeps the summation order fixed.
constexpr int64_t kBiasGradChunks = 64;

// ---------------------------------------------------------------------------------------------
// Small dense products on row-major scratch buffers. The innermost loop runs over contiguous
// columns of B and C, so -O3 vectorises it (the reduction dimension is the middle loop).

// C (M, cols) += A (M, K) @ B (K, cols)
template <typename T>
inline void add_matmul(int64_t M, int64_t K, int64_t cols, const T* __restrict__ A, const T* __restrict__ B,
                       T* __restrict__ C) {
  for (int64_t i = 0; i < M; ++i) {
    T* __restrict__ c = C + i * cols;
    for (int64_t k = 0; k < K; ++k) {
      const T a = A[i * K + k];
      const T* __restrict__ b = B + k * cols;
      for (int64_t j = 0; j < cols; ++j) c[j] += a * b[j];
    }
  }
}

// C (M, cols) += A (K, M)^T @ B (K, cols)
template <typename T>
inline void add_matmul_transposed_a(int64_t M, int64_t K, int64_t cols, const T* __restrict__ A,
                                    const T* __restrict__ B, T* __restrict__ C) {
  for (int64_t k = 0; k < K; ++k) {
    const T* __restrict__ b = B + k * cols;
    for (int64_t i = 0; i < M; ++i) {
      const T a = A[k * M + i];
      T* __restrict__ c = C + i * cols;
      for (int64_t j = 0; j < cols; ++j) c[j] += a * b[j];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Problem description shared by the two layouts.

template <typename scalar_t>
struct Attention {
  using acc_t = at::opmath_type<scalar_t>;
  int64_t tokens;     // N
  int64_t channels;   // C
  int64_t num_heads;  // nH
  int64_t head_dim;   // hd = C / nH
  acc_t scale;
  const acc_t* rel_bias;  // (nH, N, N), converted to acc_t once
};

// The tokens of one window: pixel indices (row n at qkv[pixel[n] * 3C]) and at most one mask source.
template <typename acc_t>
struct WindowTokens {
  std::vector<int64_t> pixel;
  const acc_t* mask = nullptr;       // (N, N) additive mask (window layout)
  std::vector<int8_t> region;        // per-token shift region (image layout), empty when unmasked
};

// Window layout: window w is rows [w*N, (w+1)*N) of qkv; it uses mask[w % nW].
template <typename acc_t>
struct WindowLayout {
  int64_t tokens;
  const acc_t* mask;  // (nW, N, N) or nullptr
  int64_t mask_windows;

  int64_t num_windows(int64_t rows) const { return rows / tokens; }
  void describe(int64_t w, WindowTokens<acc_t>& window) const {
    for (int64_t n = 0; n < tokens; ++n) window.pixel[n] = w * tokens + n;
    window.mask = mask == nullptr ? nullptr : mask + (w % mask_windows) * tokens * tokens;
  }
};

// Image layout: window (b, wr, wc) of the image rolled by (-shift, -shift). With rolled coordinate
// r = wr*ws + ti, the official mask's region along that axis is 0 if r < H-ws, 1 if r < H-shift, else 2;
// only windows in the last window row or column can contain more than one region.
template <typename acc_t>
struct ImageLayout {
  int64_t height, width, window_size, shift;

  int64_t num_windows(int64_t batch) const { return batch * (height / window_size) * (width / window_size); }
  static int8_t region(int64_t rolled, int64_t extent, int64_t window_size, int64_t shift) {
    return rolled < extent - window_size ? 0 : (rolled < extent - shift ? 1 : 2);
  }
  void describe(int64_t w, WindowTokens<acc_t>& window) const {
    const int64_t ws = window_size;
    const int64_t windows_per_row = width / ws, windows_per_image = (height / ws) * windows_per_row;
    const int64_t b = w / windows_per_image, wr = (w % windows_per_image) / windows_per_row, wc = w % windows_per_row;
    const bool masked = shift > 0 && (wr == height / ws - 1 || wc == windows_per_row - 1);
    window.region.resize(masked ? ws * ws : 0);
    for (int64_t ti = 0; ti < ws; ++ti) {
      const int64_t rolled_h = wr * ws + ti;
      const int64_t image_row = (b * height + (rolled_h + shift) % height) * width;
      for (int64_t tj = 0; tj < ws; ++tj) {
        const int64_t rolled_w = wc * ws + tj;
        window.pixel[ti * ws + tj] = image_row + (rolled_w + shift) % width;
        if (masked) {
          window.region[ti * ws + tj] =
              region(rolled_h, height, ws, shift) * 3 + region(rolled_w, width, ws, shift);
        }
      }
    }
  }
};

// Per-thread scratch for one (window, head): all (N, hd) or (hd, N) or (N, N) acc_t buffers.
template <typename acc_t>
struct Scratch {
  std::vector<acc_t> q, k, k_t, v, v_t, scores, out, grad_out, grad_scores, grad_q, grad_k, grad_v;
  Scratch(int64_t N, int64_t hd, bool backward)
      : q(N * hd), k(backward ? N * hd : 0), k_t(N * hd), v(N * hd), v_t(backward ? N * hd : 0), scores(N * N),
        out(backward ? 0 : N * hd), grad_out(backward ? N * hd : 0), grad_scores(backward ? N * N : 0),
        grad_q(backward ? N * hd : 0), grad_k(backward ? N * hd : 0), grad_v(backward ? N * hd : 0) {}
};

// Gathers columns [column, column + hd) of the window's rows (row stride `row_stride`) into `dst`
// (N, hd) and, if given, `dst_t` (hd, N), converted to acc_t and multiplied by `factor`.
template <typename scalar_t, typename acc_t>
void gather_head(const scalar_t* base, int64_t row_stride, int64_t column, const std::vector<int64_t>& pixel,
                 int64_t hd, acc_t factor, acc_t* dst, acc_t* dst_t) {
  const int64_t N = static_cast<int64_t>(pixel.size());
  for (int64_t n = 0; n < N; ++n) {
    const scalar_t* row = base + pixel[n] * row_stride + column;
    for (int64_t d = 0; d < hd; ++d) {
      const acc_t value = static_cast<acc_t>(row[d]) * factor;
      if (dst != nullptr) dst[n * hd + d] = value;
      if (dst_t != nullptr) dst_t[d * N + n] = value;
    }
  }
}

template <typename scalar_t, typename acc_t>
void scatter_head(const acc_t* src, const std::vector<int64_t>& pixel, int64_t hd, scalar_t* base,
                  int64_t row_stride, int64_t column) {
  const int64_t N = static_cast<int64_t>(pixel.size());
  for (int64_t n = 0; n < N; ++n) {
    scalar_t* row = base + pixel[n] * row_stride + column;
    for (int64_t d = 0; d < hd; ++d) row[d] = static_cast<scalar_t>(src[n * hd + d]);
  }
}

// P = softmax_rows(q_scaled k^T + rel_bias[h] + mask) into `scores` (N, N); q in scratch.q (already
// scaled), k^T in scratch.k_t.
template <typename scalar_t>
void attention_probabilities(const Attention<scalar_t>& problem, const WindowTokens<at::opmath_type<scalar_t>>& window,
                             int64_t head, Scratch<at::opmath_type<scalar_t>>& scratch) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t N = problem.tokens, hd = problem.head_dim;
  acc_t* S = scratch.scores.data();
  const acc_t* bias = problem.rel_bias + head * N * N;
  std::copy(bias, bias + N * N, S);
  if (window.mask != nullptr) {
    for (int64_t e = 0; e < N * N; ++e) S[e] += window.mask[e];
  } else if (!window.region.empty()) {
    for (int64_t i = 0; i < N; ++i)
      for (int64_t j = 0; j < N; ++j)
        if (window.region[i] != window.region[j]) S[i * N + j] += static_cast<acc_t>(kShiftMaskValue);
  }
  add_matmul(N, hd, N, scratch.q.data(), scratch.k_t.data(), S);
  for (int64_t i = 0; i < N; ++i) {
    acc_t* row = S + i * N;
    const acc_t row_max = *std::max_element(row, row + N);
    acc_t sum = 0;
    for (int64_t j = 0; j < N; ++j) {
      row[j] = std::exp(row[j] - row_max);
      sum += row[j];
    }
    const acc_t inverse = acc_t(1) / sum;
    for (int64_t j = 0; j < N; ++j) row[j] *= inverse;
  }
}

template <typename scalar_t>
void forward_window(const Attention<scalar_t>& problem, const WindowTokens<at::opmath_type<scalar_t>>& window,
                    const scalar_t* qkv, scalar_t* out, Scratch<at::opmath_type<scalar_t>>& scratch) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t N = problem.tokens, C = problem.channels, hd = problem.head_dim;
  for (int64_t h = 0; h < problem.num_heads; ++h) {
    gather_head(qkv, 3 * C, h * hd, window.pixel, hd, problem.scale, scratch.q.data(), static_cast<acc_t*>(nullptr));
    gather_head(qkv, 3 * C, C + h * hd, window.pixel, hd, acc_t(1), static_cast<acc_t*>(nullptr), scratch.k_t.data());
    gather_head(qkv, 3 * C, 2 * C + h * hd, window.pixel, hd, acc_t(1), scratch.v.data(), static_cast<acc_t*>(nullptr));
    attention_probabilities(problem, window, h, scratch);
    std::fill(scratch.out.begin(), scratch.out.end(), acc_t(0));
    add_matmul(N, N, hd, scratch.scores.data(), scratch.v.data(), scratch.out.data());
    scatter_head(scratch.out.data(), window.pixel, hd, out, C, h * hd);
  }
}

// Writes dq, dk, dv of every head into grad_qkv's rows of this window and adds dS to grad_bias (nH, N, N).
template <typename scalar_t>
void backward_window(const Attention<scalar_t>& problem, const WindowTokens<at::opmath_type<scalar_t>>& window,
                     const scalar_t* grad_out, const scalar_t* qkv, scalar_t* grad_qkv,
                     at::opmath_type<scalar_t>* grad_bias, Scratch<at::opmath_type<scalar_t>>& scratch) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t N = problem.tokens, C = problem.channels, hd = problem.head_dim;
  acc_t* none = nullptr;
  for (int64_t h = 0; h < problem.num_heads; ++h) {
    gather_head(qkv, 3 * C, h * hd, window.pixel, hd, problem.scale, scratch.q.data(), none);
    gather_head(qkv, 3 * C, C + h * hd, window.pixel, hd, acc_t(1), scratch.k.data(), scratch.k_t.data());
    gather_head(qkv, 3 * C, 2 * C + h * hd, window.pixel, hd, acc_t(1), none, scratch.v_t.data());
    gather_head(grad_out, C, h * hd, window.pixel, hd, acc_t(1), scratch.grad_out.data(), none);
    attention_probabilities(problem, window, h, scratch);
    const acc_t* P = scratch.scores.data();

    std::fill(scratch.grad_v.begin(), scratch.grad_v.end(), acc_t(0));
    add_matmul_transposed_a(N, N, hd, P, scratch.grad_out.data(), scratch.grad_v.data());  // P^T dO

    acc_t* dS = scratch.grad_scores.data();
    std::fill(scratch.grad_scores.begin(), scratch.grad_scores.end(), acc_t(0));
    add_matmul(N, hd, N, scratch.grad_out.data(), scratch.v_t.data(), dS);  // dP = dO v^T
    acc_t* bias_grad = grad_bias + h * N * N;
    for (int64_t i = 0; i < N; ++i) {
      acc_t* row = dS + i * N;
      const acc_t* p = P + i * N;
      acc_t delta = 0;
      for (int64_t j = 0; j < N; ++j) delta += p[j] * row[j];
      for (int64_t j = 0; j < N; ++j) row[j] = p[j] * (row[j] - delta);
      for (int64_t j = 0; j < N; ++j) bias_grad[i * N + j] += row[j];
    }

    std::fill(scratch.grad_q.begin(), scratch.grad_q.end(), acc_t(0));
    add_matmul(N, N, hd, dS, scratch.k.data(), scratch.grad_q.data());  // dS k (times scale below)
    for (auto& value : scratch.grad_q) value *= problem.scale;
    std::fill(scratch.grad_k.begin(), scratch.grad_k.end(), acc_t(0));
    add_matmul_transposed_a(N, N, hd, dS, scratch.q.data(), scratch.grad_k.data());  // dS^T (q * scale)

    scatter_head(scratch.grad_q.data(), window.pixel, hd, grad_qkv, 3 * C, h * hd);
    scatter_head(scratch.grad_k.data(), window.pixel, hd, grad_qkv, 3 * C, C + h * hd);
    scatter_head(scratch.grad_v.data(), window.pixel, hd, grad_qkv, 3 * C, 2 * C + h * hd);
  }
}

// ---------------------------------------------------------------------------------------------
// Drivers: parallel over windows, heads looped inside so a window's rows and the bias stay in cache.

template <typename scalar_t, typename Layout>
void run_forward(const Attention<scalar_t>& problem, const Layout& layout, int64_t num_windows, const scalar_t* qkv,
                 scalar_t* out) {
  using acc_t = at::opmath_type<scalar_t>;
  at::parallel_for(0, num_windows, 1, [&](int64_t begin, int64_t end) {
    Scratch<acc_t> scratch(problem.tokens, problem.head_dim, /*backward=*/false);
    WindowTokens<acc_t> window;
    window.pixel.resize(problem.tokens);
    for (int64_t w = begin; w < end; ++w) {
      layout.describe(w, window);
      forward_window(problem, window, qkv, out, scratch);
    }
  });
}

// Returns the bias gradient in acc_t, (nH, N, N).
template <typename scalar_t, typename Layout>
at::Tensor run_backward(const Attention<scalar_t>& problem, const Layout& layout, int64_t num_windows,
                        const scalar_t* grad_out, const scalar_t* qkv, scalar_t* grad_qkv,
                        const at::TensorOptions& acc_options) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t bias_numel = problem.num_heads * problem.tokens * problem.tokens;
  const int64_t chunks = std::max<int64_t>(1, std::min(num_windows, kBiasGradChunks));
  at::Tensor partials = at::zeros({chunks, bias_numel}, acc_options);
  acc_t* partial = partials.mutable_data_ptr<acc_t>();
  at::parallel_for(0, chunks, 1, [&](int64_t chunk_begin, int64_t chunk_end) {
    Scratch<acc_t> scratch(problem.tokens, problem.head_dim, /*backward=*/true);
    WindowTokens<acc_t> window;
    window.pixel.resize(problem.tokens);
    for (int64_t chunk = chunk_begin; chunk < chunk_end; ++chunk) {
      // Chunk c owns windows [c*num_windows/chunks, (c+1)*num_windows/chunks).
      for (int64_t w = chunk * num_windows / chunks; w < (chunk + 1) * num_windows / chunks; ++w) {
        layout.describe(w, window);
        backward_window(problem, window, grad_out, qkv, grad_qkv, partial + chunk * bias_numel, scratch);
      }
    }
  });
  at::Tensor grad_bias = at::empty({problem.num_heads, problem.tokens, problem.tokens}, acc_options);
  acc_t* total = grad_bias.mutable_data_ptr<acc_t>();
  at::parallel_for(0, bias_numel, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t e = begin; e < end; ++e) {
      acc_t sum = 0;
      for (int64_t chunk = 0; chunk < chunks; ++chunk) sum += partial[chunk * bias_numel + e];
      total[e] = sum;
    }
  });
  return grad_bias;
}

// ---------------------------------------------------------------------------------------------
// Argument checks (the Python API checks first; these guard direct torch.ops calls).

int64_t check_qkv_channels(const at::Tensor& qkv, int64_t num_heads) {
  TORCH_CHECK_VALUE(at::isFloatingType(qkv.scalar_type()), "qkv: expected a floating-point dtype, got ",
                    qkv.scalar_type());
  TORCH_CHECK_VALUE(num_heads >= 1, "num_heads: expected an int >= 1, got ", num_heads);
  const int64_t three_c = qkv.size(-1);
  TORCH_CHECK_VALUE(three_c % 3 == 0, "qkv.shape[-1] (3C): expected a multiple of 3, got ", three_c);
  const int64_t C = three_c / 3;
  TORCH_CHECK_VALUE(C % num_heads == 0, "C = qkv.shape[-1] // 3: expected a multiple of num_heads=", num_heads,
                    ", got ", C);
  TORCH_CHECK_VALUE(C / num_heads <= kMaxHeadDim, "head_dim = C // num_heads: expected at most ", kMaxHeadDim,
                    ", got ", C / num_heads);
  return C;
}

void check_rel_bias(const at::Tensor& rel_bias, const at::Tensor& qkv, int64_t num_heads, int64_t tokens) {
  check_same_device(qkv, rel_bias, "qkv", "rel_bias");
  TORCH_CHECK_VALUE(at::isFloatingType(rel_bias.scalar_type()), "rel_bias: expected a floating-point dtype, got ",
                    rel_bias.scalar_type());
  TORCH_CHECK_VALUE(rel_bias.dim() == 3 && rel_bias.size(0) == num_heads && rel_bias.size(1) == tokens &&
                        rel_bias.size(2) == tokens,
                    "rel_bias: expected shape (", num_heads, ", ", tokens, ", ", tokens, "), got ", rel_bias.sizes());
}

void check_mask(const c10::optional<at::Tensor>& mask, const at::Tensor& qkv) {
  if (!mask.has_value()) return;
  check_same_device(qkv, *mask, "qkv", "mask");
  const int64_t N = qkv.size(1);
  TORCH_CHECK_VALUE(at::isFloatingType(mask->scalar_type()), "mask: expected a floating-point dtype, got ",
                    mask->scalar_type());
  TORCH_CHECK_VALUE(mask->dim() == 3 && mask->size(0) >= 1 && mask->size(1) == N && mask->size(2) == N,
                    "mask: expected shape (nW, ", N, ", ", N, "), got ", mask->sizes());
  TORCH_CHECK_VALUE(qkv.size(0) % mask->size(0) == 0, "qkv.shape[0] (B*nW): expected a multiple of mask.shape[0] (nW)=",
                    mask->size(0), ", got ", qkv.size(0));
}

void check_image(const at::Tensor& qkv, int64_t window_size, int64_t shift) {
  check_dim(qkv, 4, "qkv", "(B, H, W, 3C)");
  check_multiple(qkv.size(1), window_size, "qkv.shape[1] (H)");
  check_multiple(qkv.size(2), window_size, "qkv.shape[2] (W)");
  TORCH_CHECK_VALUE(0 <= shift && shift < window_size, "shift: expected 0 <= shift < window_size=", window_size,
                    ", got ", shift);
}

void check_grad_out(const at::Tensor& grad_out, const at::Tensor& qkv) {
  check_same_device(qkv, grad_out, "qkv", "grad_out");
  auto expected = qkv.sizes().vec();
  expected.back() /= 3;
  TORCH_CHECK_VALUE(grad_out.sizes() == at::IntArrayRef(expected), "grad_out: expected shape ",
                    at::IntArrayRef(expected), " (qkv's with C channels), got ", grad_out.sizes());
  TORCH_CHECK_VALUE(grad_out.scalar_type() == qkv.scalar_type(), "grad_out: expected dtype ", qkv.scalar_type(),
                    " (qkv's), got ", grad_out.scalar_type());
}

at::ScalarType compute_type(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

// Both layouts, forward: `make_layout(acc_mask_or_null)` builds the layout for the converted mask.
template <typename MakeLayout>
at::Tensor attention_forward(const at::Tensor& qkv_in, const at::Tensor& rel_bias, const at::Tensor* mask,
                             int64_t num_heads, double scale, int64_t tokens, int64_t num_windows,
                             const MakeLayout& make_layout) {
  const auto qkv = qkv_in.contiguous();
  const int64_t C = qkv.size(-1) / 3;
  auto out_sizes = qkv.sizes().vec();
  out_sizes.back() = C;
  auto out = at::empty(out_sizes, qkv.options());
  if (out.numel() == 0) return out;
  const auto acc_type = compute_type(qkv.scalar_type());
  const auto bias = rel_bias.to(acc_type).contiguous();
  const auto acc_mask = mask == nullptr ? at::Tensor() : mask->to(acc_type).contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, qkv.scalar_type(), "window_attention_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const Attention<scalar_t> problem{tokens, C, num_heads, C / num_heads, static_cast<acc_t>(scale),
                                      bias.const_data_ptr<acc_t>()};
    const auto layout = make_layout(acc_mask.defined() ? acc_mask.const_data_ptr<acc_t>() : nullptr);
    run_forward(problem, layout, num_windows, qkv.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>());
  });
  return out;
}

template <typename MakeLayout>
std::tuple<at::Tensor, at::Tensor> attention_backward(const at::Tensor& grad_out_in, const at::Tensor& qkv_in,
                                                      const at::Tensor& rel_bias, const at::Tensor* mask,
                                                      int64_t num_heads, double scale, int64_t tokens,
                                                      int64_t num_windows, const MakeLayout& make_layout) {
  const auto qkv = qkv_in.contiguous();
  const auto grad_out = grad_out_in.contiguous();
  const int64_t C = qkv.size(-1) / 3;
  auto grad_qkv = at::empty_like(qkv, at::MemoryFormat::Contiguous);
  const auto acc_type = compute_type(qkv.scalar_type());
  if (qkv.numel() == 0) return {grad_qkv, at::zeros_like(rel_bias, at::MemoryFormat::Contiguous)};
  const auto bias = rel_bias.to(acc_type).contiguous();
  const auto acc_mask = mask == nullptr ? at::Tensor() : mask->to(acc_type).contiguous();
  at::Tensor grad_bias;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, qkv.scalar_type(), "window_attention_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const Attention<scalar_t> problem{tokens, C, num_heads, C / num_heads, static_cast<acc_t>(scale),
                                      bias.const_data_ptr<acc_t>()};
    const auto layout = make_layout(acc_mask.defined() ? acc_mask.const_data_ptr<acc_t>() : nullptr);
    grad_bias = run_backward(problem, layout, num_windows, grad_out.const_data_ptr<scalar_t>(),
                             qkv.const_data_ptr<scalar_t>(), grad_qkv.mutable_data_ptr<scalar_t>(),
                             qkv.options().dtype(acc_type));
  });
  return {grad_qkv, grad_bias.to(rel_bias.scalar_type())};
}

void check_window_inputs(const at::Tensor& qkv, const at::Tensor& rel_bias, const c10::optional<at::Tensor>& mask,
                         int64_t num_heads) {
  check_dim(qkv, 3, "qkv", "(B*nW, N, 3C)");
  check_qkv_channels(qkv, num_heads);
  check_rel_bias(rel_bias, qkv, num_heads, qkv.size(1));
  check_mask(mask, qkv);
}

void check_image_inputs(const at::Tensor& qkv, const at::Tensor& rel_bias, int64_t num_heads, int64_t window_size,
                        int64_t shift) {
  check_image(qkv, window_size, shift);
  check_qkv_channels(qkv, num_heads);
  check_rel_bias(rel_bias, qkv, num_heads, window_size * window_size);
}

auto window_layout(int64_t tokens, const c10::optional<at::Tensor>& mask) {
  const int64_t mask_windows = mask.has_value() ? mask->size(0) : 1;
  return [=](const auto* acc_mask) {
    using acc_t = std::remove_const_t<std::remove_pointer_t<decltype(acc_mask)>>;
    return WindowLayout<acc_t>{tokens, acc_mask, mask_windows};
  };
}

auto image_layout(const at::Tensor& qkv, int64_t window_size, int64_t shift) {
  const int64_t H = qkv.size(1), W = qkv.size(2);
  return [=](const auto* /*no mask tensor*/ acc_mask) {
    using acc_t = std::remove_const_t<std::remove_pointer_t<decltype(acc_mask)>>;
    return ImageLayout<acc_t>{H, W, window_size, shift};
  };
}

int64_t image_windows(const at::Tensor& qkv, int64_t window_size) {
  return qkv.size(0) * (qkv.size(1) / window_size) * (qkv.size(2) / window_size);
}

}  // namespace

at::Tensor window_attention_cpu(const at::Tensor& qkv, const at::Tensor& rel_bias,
                                const c10::optional<at::Tensor>& mask, int64_t num_heads, double scale) {
  check_window_inputs(qkv, rel_bias, mask, num_heads);
  const int64_t N = qkv.size(1);
  return attention_forward(qkv, rel_bias, mask.has_value() ? &*mask : nullptr, num_heads, scale, N, qkv.size(0),
                           window_layout(N, mask));
}

std::tuple<at::Tensor, at::Tensor> window_attention_backward_cpu(const at::Tensor& grad_out, const at::Tensor& qkv,
                                                                 const at::Tensor& rel_bias,
                                                                 const c10::optional<at::Tensor>& mask,
                                                                 int64_t num_heads, double scale) {
  check_window_inputs(qkv, rel_bias, mask, num_heads);
  check_grad_out(grad_out, qkv);
  const int64_t N = qkv.size(1);
  return attention_backward(grad_out, qkv, rel_bias, mask.has_value() ? &*mask : nullptr, num_heads, scale, N,
                            qkv.size(0), window_layout(N, mask));
}

at::Tensor shifted_window_attention_cpu(const at::Tensor& qkv, const at::Tensor& rel_bias, int64_t num_heads,
                                        int64_t window_size, int64_t shift, double scale) {
  check_image_inputs(qkv, rel_bias, num_heads, window_size, shift);
  return attention_forward(qkv, rel_bias, nullptr, num_heads, scale, window_size * window_size,
                           image_windows(qkv, window_size), image_layout(qkv, window_size, shift));
}

std::tuple<at::Tensor, at::Tensor> shifted_window_attention_backward_cpu(const at::Tensor& grad_out,
                                                                         const at::Tensor& qkv,
                                                                         const at::Tensor& rel_bias, int64_t num_heads,
                                                                         int64_t window_size, int64_t shift,
                                                                         double scale) {
  check_image_inputs(qkv, rel_bias, num_heads, window_size, shift);
  check_grad_out(grad_out, qkv);
  return attention_backward(grad_out, qkv, rel_bias, nullptr, num_heads, scale, window_size * window_size,
                            image_windows(qkv, window_size), image_layout(qkv, window_size, shift));
}

TORCH_LIBRARY_IMPL(swinir_kernels, CPU, m) {
  m.impl("window_attention", &window_attention_cpu);
  m.impl("_window_attention_backward", &window_attention_backward_cpu);
  m.impl("shifted_window_attention", &shifted_window_attention_cpu);
  m.impl("_shifted_window_attention_backward", &shifted_window_attention_backward_cpu);
}

}  // namespace swinir_kernels
