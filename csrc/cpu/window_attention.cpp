// Fused window attention with relative position bias on CPU, in two layouts that share one core:
//
//   window layout  window_attention(qkv (B*nW, N, 3C), rel_bias (nH, N, N), mask (nW, N, N)?)
//   image layout   shifted_window_attention(qkv (B, H, W, 3C), rel_bias, ws, shift)
//
// For window w and head h (q, k, v the head's (N, hd) slices of the window's qkv rows):
//   S = q k^T * scale + rel_bias[h] (+ mask),  P = softmax_rows(S),  O = P v,
// computed in the op-math type (fp32 for fp16/bf16/fp32, fp64 for fp64) and written once. A thread
// loads a window's qkv rows once (all heads), transposes k, and runs the heads over that copy with
// the register-tiled products and vectorised softmax of window_attention_math.inc.
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
#include <ATen/Version.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "../checks.h"
#include "../limits.h"

namespace swinir_kernels {
namespace {

constexpr double kShiftMaskValue = -100.0;  // the official additive mask, not -inf
// For the bias gradient the windows are split into chunks of at least kMinWindowsPerBiasChunk windows,
// at most kMaxBiasGradChunks chunks; each chunk owns an (nH, N, padded_tokens(N)) partial. The count
// depends on the shape only (not the thread count), which keeps the summation order fixed. Each
// partial is ~100 KB at nH=6, N=64: one per window made zeroing and summing them cost a third of the
// backward.
constexpr int64_t kMinWindowsPerBiasChunk = 8;
constexpr int64_t kMaxBiasGradChunks = 64;

// ---------------------------------------------------------------------------------------------
// The arithmetic (window_attention_math.inc), compiled twice: portable, and for AVX2 + FMA with GCC on
// x86-64 (other compilers build the portable one only). The extension is built for the baseline ISA
// so the wheel runs anywhere; the AVX2 version is chosen at run time if the CPU has it and ATen's
// capability (which honours ATEN_CPU_CAPABILITY=default) allows it.

// Tile of the small products: kTileRows rows of C share each load of B; kTileColumns columns are two
// AVX2 vectors of fp32. Scratch rows are padded to a multiple of kTileRows, columns to kTileColumns.
constexpr int64_t kTileRows = 4;
constexpr int64_t kTileColumns = 16;

template <typename T>
struct AttentionMath {
  using Matmul = void (*)(int64_t M, int64_t K, int64_t cols, const T* A, int64_t lda, const T* B, int64_t ldb, T* C,
                          int64_t ldc);
  Matmul matmul;               // C = A @ B
  Matmul matmul_transposed_a;  // C = A^T @ B, A stored (K, M)
  void (*softmax_rows)(int64_t N, int64_t ld, T* S, T scale, const T* bias, const T* mask, const T* region,
                       T shift_mask_value);
  void (*softmax_backward_rows)(int64_t N, int64_t ld, const T* P, T* dS, T* bias_grad);
};

namespace portable {
constexpr int64_t kVectorBytes = 16;
#include "window_attention_math.inc"
}  // namespace portable

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define SWINIR_KERNELS_CPU_AVX2 1
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
constexpr int64_t kVectorBytes = 32;
#include "window_attention_math.inc"
}  // namespace avx2
#pragma GCC pop_options
#endif

bool use_avx2() {
#ifdef SWINIR_KERNELS_CPU_AVX2
  const std::string capability = at::get_cpu_capability();
  const bool allowed = capability == "AVX2" || capability == "AVX512";
  return allowed && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

template <typename T>
const AttentionMath<T>& attention_math() {
#ifdef SWINIR_KERNELS_CPU_AVX2
  static const AttentionMath<T> math = use_avx2() ? avx2::attention_math<T>() : portable::attention_math<T>();
#else
  static const AttentionMath<T> math = portable::attention_math<T>();
#endif
  return math;
}

constexpr int64_t round_up(int64_t value, int64_t multiple) { return (value + multiple - 1) / multiple * multiple; }

// The row stride of every (N, N) matrix of the kernel: scores, probabilities, bias, mask, bias gradient.
constexpr int64_t padded_tokens(int64_t N) { return round_up(N, kTileColumns); }

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
  const acc_t* rel_bias;  // (nH, N, padded_tokens(N)) in acc_t, -inf in the padding columns
};

// The tokens of one window: pixel indices (row n at qkv[pixel[n] * 3C]) and at most one mask source.
template <typename acc_t>
struct WindowTokens {
  std::vector<int64_t> pixel;
  const acc_t* mask = nullptr;  // (N, padded_tokens(N)) additive mask (window layout)
  std::vector<acc_t> region;    // shift region id per token (image layout), padded; empty when unmasked
};

// Window layout: window w is rows [w*N, (w+1)*N) of qkv; it uses mask[w % nW].
template <typename acc_t>
struct WindowLayout {
  int64_t tokens;
  const acc_t* mask;  // (nW, N, padded_tokens(N)) or nullptr
  int64_t mask_windows;

  int64_t num_windows(int64_t rows) const { return rows / tokens; }
  void describe(int64_t w, WindowTokens<acc_t>& window) const {
    for (int64_t n = 0; n < tokens; ++n) window.pixel[n] = w * tokens + n;
    window.mask = mask == nullptr ? nullptr : mask + (w % mask_windows) * tokens * padded_tokens(tokens);
  }
};

// Image layout: window (b, wr, wc) of the image rolled by (-shift, -shift). With rolled coordinate
// r = wr*ws + ti, the official mask's region along that axis is 0 if r < H-ws, 1 if r < H-shift, else 2;
// only windows in the last window row or column can contain more than one region.
template <typename acc_t>
struct ImageLayout {
  int64_t height, width, window_size, shift;

  int64_t num_windows(int64_t batch) const { return batch * (height / window_size) * (width / window_size); }
  static acc_t region(int64_t rolled, int64_t extent, int64_t window_size, int64_t shift) {
    return rolled < extent - window_size ? 0 : (rolled < extent - shift ? 1 : 2);
  }
  void describe(int64_t w, WindowTokens<acc_t>& window) const {
    const int64_t ws = window_size;
    const int64_t windows_per_row = width / ws, windows_per_image = (height / ws) * windows_per_row;
    const int64_t b = w / windows_per_image, wr = (w % windows_per_image) / windows_per_row, wc = w % windows_per_row;
    const bool masked = shift > 0 && (wr == height / ws - 1 || wc == windows_per_row - 1);
    window.region.resize(masked ? padded_tokens(ws * ws) : 0);
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

// Per-thread scratch for one window, zero-filled once. The products write only inside the padded
// extents and the loads write only real rows, so padding rows stay zero.
//   rows   = N rounded up to kTileRows;  cols = N rounded up to kTileColumns;
//   hd_pad = hd rounded up to kTileColumns (30 -> 32, 10 -> 16): a product's last column tile of a
//            head runs into the next head's columns (its result there is overwritten or dropped);
//   slack  = hd_pad - hd extra entries after row-major (rows, width) buffers that such a tile of the
//            last head reads or writes past the last row.
template <typename acc_t>
struct Scratch {
  int64_t rows, cols, hd_pad, c_pad;
  std::vector<acc_t> qkv;            // (rows, 3C) + slack: the window's rows of qkv
  std::vector<acc_t> k_t, v_t;       // (C, cols): k and v transposed (v_t: backward only)
  std::vector<acc_t> probabilities;  // (rows, cols): the logits, then P
  std::vector<acc_t> out;            // (rows, c_pad), c_pad = C + hd_pad - hd: forward output
  std::vector<acc_t> grad_out;       // (rows, C) + slack, backward only
  std::vector<acc_t> grad_scores;    // (rows, cols): dP, then dS, backward only
  std::vector<acc_t> grad_q, grad_k, grad_v;  // (rows, c_pad), backward only

  Scratch(int64_t N, int64_t C, int64_t hd, bool backward)
      : rows(round_up(N, kTileRows)), cols(padded_tokens(N)), hd_pad(round_up(hd, kTileColumns)),
        c_pad(C + round_up(hd, kTileColumns) - hd) {
    const int64_t slack = hd_pad - hd;
    const int64_t output = rows * c_pad, backward_output = backward ? output : 0;
    qkv.assign(rows * 3 * C + slack, 0);
    k_t.assign(C * cols, 0);
    v_t.assign(backward ? C * cols : 0, 0);
    probabilities.assign(rows * cols, 0);
    out.assign(backward ? 0 : output, 0);
    grad_out.assign(backward ? rows * C + slack : 0, 0);
    grad_scores.assign(backward ? rows * cols : 0, 0);
    grad_q.assign(backward_output, 0);
    grad_k.assign(backward_output, 0);
    grad_v.assign(backward_output, 0);
  }
};

// Copies the window's N rows of `width` channels from `base` (row n at base[pixel[n] * width]) into
// dst (N, width), converted to acc_t.
template <typename scalar_t, typename acc_t>
void load_rows(const scalar_t* base, int64_t width, const std::vector<int64_t>& pixel, acc_t* dst) {
  const int64_t N = static_cast<int64_t>(pixel.size());
  for (int64_t n = 0; n < N; ++n) {
    const scalar_t* row = base + pixel[n] * width;
    for (int64_t c = 0; c < width; ++c) dst[n * width + c] = static_cast<acc_t>(row[c]);
  }
}

// dst (C, ld) = columns [column, column + C) of src's N rows (row stride src_width), transposed.
// In 16x16 tiles: row by row, each source row would write C different cache lines of dst (46 KB at
// C=180, more than L1), which made the two transposes of the backward a quarter of its time.
template <typename acc_t>
void transpose_columns(const acc_t* src, int64_t N, int64_t src_width, int64_t column, int64_t C, acc_t* dst,
                       int64_t ld) {
  constexpr int64_t kTile = 16;
  for (int64_t n0 = 0; n0 < N; n0 += kTile) {
    const int64_t n_end = std::min(N, n0 + kTile);
    for (int64_t c0 = 0; c0 < C; c0 += kTile) {
      const int64_t c_end = std::min(C, c0 + kTile);
      for (int64_t n = n0; n < n_end; ++n) {
        const acc_t* row = src + n * src_width + column;
        for (int64_t c = c0; c < c_end; ++c) dst[c * ld + n] = row[c];
      }
    }
  }
}

// Writes the window's N rows: columns [0, C) of each source (row stride src_width), times its factor,
// side by side (parts of them) in the destination rows at base[pixel[n] * dst_width].
template <typename scalar_t, typename acc_t, int kParts>
void store_rows(const acc_t* const (&src)[kParts], const acc_t (&factor)[kParts], int64_t src_width, int64_t C,
                const std::vector<int64_t>& pixel, scalar_t* base) {
  const int64_t N = static_cast<int64_t>(pixel.size());
  for (int64_t n = 0; n < N; ++n) {
    scalar_t* row = base + pixel[n] * kParts * C;
    for (int part = 0; part < kParts; ++part) {
      const acc_t* from = src[part] + n * src_width;
      for (int64_t c = 0; c < C; ++c) row[part * C + c] = static_cast<scalar_t>(from[c] * factor[part]);
    }
  }
}

// P (rows, cols) = softmax_rows(scale q k^T + rel_bias[h] + mask) in scratch.probabilities, from the
// window's q and k^T in scratch.
template <typename scalar_t>
void attention_probabilities(const Attention<scalar_t>& problem, const WindowTokens<at::opmath_type<scalar_t>>& window,
                             int64_t head, Scratch<at::opmath_type<scalar_t>>& s) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto& math = attention_math<acc_t>();
  const int64_t N = problem.tokens, C = problem.channels, hd = problem.head_dim;
  math.matmul(s.rows, hd, s.cols, s.qkv.data() + head * hd, 3 * C, s.k_t.data() + head * hd * s.cols, s.cols,
              s.probabilities.data(), s.cols);
  math.softmax_rows(N, s.cols, s.probabilities.data(), problem.scale, problem.rel_bias + head * N * s.cols, window.mask,
                    window.region.empty() ? nullptr : window.region.data(), static_cast<acc_t>(kShiftMaskValue));
}

template <typename scalar_t>
void forward_window(const Attention<scalar_t>& problem, const WindowTokens<at::opmath_type<scalar_t>>& window,
                    const scalar_t* qkv, scalar_t* out, Scratch<at::opmath_type<scalar_t>>& s) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto& math = attention_math<acc_t>();
  const int64_t N = problem.tokens, C = problem.channels, hd = problem.head_dim;
  load_rows(qkv, 3 * C, window.pixel, s.qkv.data());
  transpose_columns(s.qkv.data(), N, 3 * C, C, C, s.k_t.data(), s.cols);
  for (int64_t h = 0; h < problem.num_heads; ++h) {
    attention_probabilities(problem, window, h, s);
    // O_h = P v_h, into columns [h*hd, h*hd + hd_pad) of out: heads in order, so head h+1 overwrites
    // what head h's padding tile wrote past its hd columns.
    math.matmul(s.rows, N, s.hd_pad, s.probabilities.data(), s.cols, s.qkv.data() + 2 * C + h * hd, 3 * C,
                s.out.data() + h * hd, s.c_pad);
  }
  const acc_t* parts[1] = {s.out.data()};
  const acc_t factors[1] = {acc_t(1)};
  store_rows(parts, factors, s.c_pad, C, window.pixel, out);
}

// Writes dq, dk, dv of every head into grad_qkv's rows of this window and adds dS to grad_bias
// (nH, N, padded_tokens(N)).
// With logits = scale q k^T + bias: dV = P^T dO, dP = dO v^T, dS = P (dP - rowsum(P dP)),
// dq = scale dS k, dk = scale dS^T q, d bias = dS.
template <typename scalar_t>
void backward_window(const Attention<scalar_t>& problem, const WindowTokens<at::opmath_type<scalar_t>>& window,
                     const scalar_t* grad_out, const scalar_t* qkv, scalar_t* grad_qkv,
                     at::opmath_type<scalar_t>* grad_bias, Scratch<at::opmath_type<scalar_t>>& s) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto& math = attention_math<acc_t>();
  const int64_t N = problem.tokens, C = problem.channels, hd = problem.head_dim;
  const int64_t rows = s.rows, cols = s.cols, hd_pad = s.hd_pad, c_pad = s.c_pad;
  load_rows(qkv, 3 * C, window.pixel, s.qkv.data());
  load_rows(grad_out, C, window.pixel, s.grad_out.data());
  transpose_columns(s.qkv.data(), N, 3 * C, C, C, s.k_t.data(), cols);
  transpose_columns(s.qkv.data(), N, 3 * C, 2 * C, C, s.v_t.data(), cols);
  const acc_t* q = s.qkv.data();
  const acc_t* k = q + C;
  acc_t* dS = s.grad_scores.data();
  for (int64_t h = 0; h < problem.num_heads; ++h) {
    attention_probabilities(problem, window, h, s);
    const acc_t* P = s.probabilities.data();
    const int64_t head = h * hd;
    math.matmul_transposed_a(rows, N, hd_pad, P, cols, s.grad_out.data() + head, C, s.grad_v.data() + head, c_pad);
    math.matmul(rows, hd, cols, s.grad_out.data() + head, C, s.v_t.data() + head * cols, cols, dS, cols);
    math.softmax_backward_rows(N, cols, P, dS, grad_bias + h * N * cols);
    math.matmul(rows, N, hd_pad, dS, cols, k + head, 3 * C, s.grad_q.data() + head, c_pad);
    math.matmul_transposed_a(rows, N, hd_pad, dS, cols, q + head, 3 * C, s.grad_k.data() + head, c_pad);
  }
  const acc_t* parts[3] = {s.grad_q.data(), s.grad_k.data(), s.grad_v.data()};
  const acc_t factors[3] = {problem.scale, problem.scale, acc_t(1)};
  store_rows(parts, factors, c_pad, C, window.pixel, grad_qkv);
}

// ---------------------------------------------------------------------------------------------
// Drivers: parallel over windows, heads looped inside so a window's rows and the bias stay in cache.

template <typename scalar_t, typename Layout>
void run_forward(const Attention<scalar_t>& problem, const Layout& layout, int64_t num_windows, const scalar_t* qkv,
                 scalar_t* out) {
  using acc_t = at::opmath_type<scalar_t>;
  at::parallel_for(0, num_windows, 1, [&](int64_t begin, int64_t end) {
    Scratch<acc_t> scratch(problem.tokens, problem.channels, problem.head_dim, /*backward=*/false);
    WindowTokens<acc_t> window;
    window.pixel.resize(problem.tokens);
    for (int64_t w = begin; w < end; ++w) {
      layout.describe(w, window);
      forward_window(problem, window, qkv, out, scratch);
    }
  });
}

// Returns the bias gradient in acc_t, (nH, N, N) (a view of the padded sum).
template <typename scalar_t, typename Layout>
at::Tensor run_backward(const Attention<scalar_t>& problem, const Layout& layout, int64_t num_windows,
                        const scalar_t* grad_out, const scalar_t* qkv, scalar_t* grad_qkv,
                        const at::TensorOptions& acc_options) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t cols = padded_tokens(problem.tokens);
  const int64_t bias_numel = problem.num_heads * problem.tokens * cols;
  const int64_t chunks = std::clamp<int64_t>(num_windows / kMinWindowsPerBiasChunk, 1, kMaxBiasGradChunks);
  at::Tensor partials = at::zeros({chunks, bias_numel}, acc_options);
  acc_t* partial = partials.mutable_data_ptr<acc_t>();
  at::parallel_for(0, chunks, 1, [&](int64_t chunk_begin, int64_t chunk_end) {
    Scratch<acc_t> scratch(problem.tokens, problem.channels, problem.head_dim, /*backward=*/true);
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
  at::Tensor grad_bias = at::empty({problem.num_heads, problem.tokens, cols}, acc_options);
  acc_t* total = grad_bias.mutable_data_ptr<acc_t>();
  at::parallel_for(0, bias_numel, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t e = begin; e < end; ++e) {
      acc_t sum = 0;
      for (int64_t chunk = 0; chunk < chunks; ++chunk) sum += partial[chunk * bias_numel + e];
      total[e] = sum;
    }
  });
  return grad_bias.narrow(-1, 0, problem.tokens);
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
  TORCH_CHECK_VALUE(C / num_heads <= limits::kCpuAttentionMaxHeadDim, "head_dim = C // num_heads: expected at most ",
                    limits::kCpuAttentionMaxHeadDim,
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

// (..., N, N) -> (..., N, padded_tokens(N)) in `type`, `fill` in the padding columns.
at::Tensor pad_tokens(const at::Tensor& matrices, at::ScalarType type, double fill) {
  auto sizes = matrices.sizes().vec();
  sizes.back() = padded_tokens(sizes.back());
  auto padded = at::full(sizes, fill, matrices.options().dtype(type));
  padded.narrow(-1, 0, matrices.size(-1)).copy_(matrices);
  return padded;
}

// The bias and the optional mask as the kernel reads them: in `acc_type`, rows padded to
// padded_tokens(N), bias -inf in the padding (P = 0 there), mask 0; the mask undefined when absent.
struct PaddedBiasAndMask {
  at::Tensor bias, mask;
  PaddedBiasAndMask(const at::Tensor& rel_bias, const at::Tensor* mask_or_null, at::ScalarType acc_type)
      : bias(pad_tokens(rel_bias, acc_type, -std::numeric_limits<double>::infinity())),
        mask(mask_or_null == nullptr ? at::Tensor() : pad_tokens(*mask_or_null, acc_type, 0.0)) {}
};

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
  const PaddedBiasAndMask padded(rel_bias, mask, acc_type);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, qkv.scalar_type(), "window_attention_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const Attention<scalar_t> problem{tokens, C, num_heads, C / num_heads, static_cast<acc_t>(scale),
                                      padded.bias.const_data_ptr<acc_t>()};
    const auto layout = make_layout(padded.mask.defined() ? padded.mask.const_data_ptr<acc_t>() : nullptr);
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
  const PaddedBiasAndMask padded(rel_bias, mask, acc_type);
  at::Tensor grad_bias;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, qkv.scalar_type(), "window_attention_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const Attention<scalar_t> problem{tokens, C, num_heads, C / num_heads, static_cast<acc_t>(scale),
                                      padded.bias.const_data_ptr<acc_t>()};
    const auto layout = make_layout(padded.mask.defined() ? padded.mask.const_data_ptr<acc_t>() : nullptr);
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
