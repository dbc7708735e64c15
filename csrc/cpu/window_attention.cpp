// Fused window attention with relative position bias on CPU, in two layouts that share one core:
//
//   window layout  window_attention(qkv (B*nW, N, 3C), rel_bias (nH, N, N), mask (nW, N, N)?)
//   image layout   shifted_window_attention(qkv (B, H, W, 3C), rel_bias, (wh, ww), (sh, sw))
//
// For window w and head h (q, k, v the head's (N, hd) slices of the window's qkv rows):
//   S = q k^T * scale + rel_bias[h] (+ mask),  P = softmax_rows(S),  O = P v,
// computed in the op-math type (fp32 for fp16/bf16/fp32, fp64 for fp64) and written once. A thread
// loads a window's qkv rows once for the heads it runs, transposes each head's k, and runs the
// register-tiled products and vectorised softmax of window_attention_math.inc over blocks of
// kBlockRows query rows, so that a block of S (and of dS) stays in cache: at N=256 a whole S is
// 256 KB per head, and the backward's S, dS, bias and bias-gradient rows (1.25 MB with the mask) do
// not fit in a core's L2 together.
//
// A window is described by the N pixel indices of its tokens: row n of the window lives at
// qkv[pixel[n] * 3C] and out[pixel[n] * C]. In the window layout pixel[n] = w*N + n; in the image
// layout token (ti, tj) of window (b, wr, wc) is pixel (b, (wr*wh+ti+sh) % H, (wc*ww+tj+sw) % W),
// which folds the cyclic shift, the partition and the reverse into the addressing. The official shift
// mask (-100 between tokens of different regions of the rolled image) comes from per-token region ids
// computed from coordinates, so no mask tensor exists for the image layout.
//
// Backward recomputes P (nothing N x N is saved) and, per window and head, block by block of rows:
//   dV += P^T dO,  dP = dO v^T,  dS = P * (dP - rowsum(P * dP)),  dq = dS k * scale,  dk += dS^T q * scale,
//   d rel_bias[h] = sum over windows of dS.
// Every pixel belongs to one window and a thread writes only its heads' columns, so dq/dk/dv are
// written without races. The bias gradient is accumulated in a fixed number of window chunks (a
// function of the shape only) and the partials are summed in chunk order, so it is bit-identical
// whatever the thread count; the work items are (chunk, head) pairs, so a few windows still keep
// every thread busy.
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
#include "../window_attention_args.h"
#include "../limits.h"

namespace swinir_kernels {
namespace {

constexpr double kShiftMaskValue = -100.0;  // the official additive mask, not -inf
// For the bias gradient the windows are split into chunks of at least kMinWindowsPerBiasChunk windows,
// at most kMaxBiasGradChunks chunks, and with all partials together at most kMaxBiasGradPartialBytes;
// each chunk owns an (nH, N, padded_tokens(N)) partial. The count depends on the shape only (not the
// thread count), which keeps the summation order fixed. A partial is ~100 KB at nH=6, N=64 (one per
// window made summing them cost a third of the backward) but 1.5 MB at N=256 and 6 MB at N=484: the
// byte cap keeps the final sum's memory traffic bounded (16 MB read, or one partial where that is
// more) whatever the batch.
constexpr int64_t kMinWindowsPerBiasChunk = 8;
constexpr int64_t kMaxBiasGradChunks = 64;
constexpr int64_t kMaxBiasGradPartialBytes = int64_t(16) << 20;

// ---------------------------------------------------------------------------------------------
// The arithmetic (window_attention_math.inc), compiled three times: portable, and with GCC on x86-64
// for AVX2 + FMA and for AVX-512 (other compilers build the portable one only). The extension is built
// for the baseline ISA so the wheel runs anywhere; the widest version the CPU has and ATen's capability
// (which honours ATEN_CPU_CAPABILITY=default|avx2) allows is chosen at run time. AVX-512 doubles the
// multiply-adds per cycle where the cores have 512-bit FMA units (Zen 5, Intel server cores): on a
// Zen 5 core the products ran 1.7x faster than in AVX2.

// Tile of the small products: the rows of C in a tile share each load of B; kTileColumns columns are two
// AVX2 vectors of fp32 (one AVX-512 vector). Scratch rows are padded to a multiple of kTileRows,
// columns to kTileColumns.
constexpr int64_t kTileRows = 4;
constexpr int64_t kTileColumns = 16;
// Query rows per block of S (a multiple of kTileRows): at N=256 a block of S and one of dS are 64 KB
// each, which stay in L2 with the rest of the head's working set.
constexpr int64_t kBlockRows = 64;

template <typename T>
struct AttentionMath {
  using Matmul = void (*)(int64_t M, int64_t K, int64_t cols, const T* A, int64_t lda, const T* B, int64_t ldb, T* C,
                          int64_t ldc, bool accumulate);
  Matmul matmul;               // C (+)= A @ B
  Matmul matmul_transposed_a;  // C (+)= A^T @ B, A stored (K, M)
  void (*softmax_rows)(int64_t N, int64_t ld, T* S, T scale, const T* bias, const T* mask, const T* row_region,
                       const T* region, T shift_mask_value);
  void (*softmax_backward_rows)(int64_t N, int64_t ld, const T* P, T* dS, T* bias_grad, bool accumulate);
};

// kMatmulRows<T>: rows per register tile of the products, each row kTileColumns wide. Twelve fp32
// accumulators or more keep both FMA ports busy through the FMA latency (8, in 4-row AVX2 tiles, left
// them stalling): 6 rows of 2 AVX2 registers (of 16), 12 rows of one AVX-512 register (of 32). fp64
// rows are twice as many registers: 4 rows in AVX2 (as in the baseline build, where both spill a
// little), 12 in AVX-512.
namespace portable {
constexpr int64_t kVectorBytes = 16;
template <typename T>
constexpr int64_t kMatmulRows = 4;
#include "window_attention_math.inc"
}  // namespace portable

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define SWINIR_KERNELS_CPU_AVX2 1
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
constexpr int64_t kVectorBytes = 32;
template <typename T>
constexpr int64_t kMatmulRows = sizeof(T) == 4 ? 6 : 4;
#include "window_attention_math.inc"
}  // namespace avx2
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
namespace avx512 {
constexpr int64_t kVectorBytes = 64;
template <typename T>
constexpr int64_t kMatmulRows = 12;
#include "window_attention_math.inc"
}  // namespace avx512
#pragma GCC pop_options
#endif

template <typename T>
AttentionMath<T> pick_attention_math() {
#ifdef SWINIR_KERNELS_CPU_AVX2
  const std::string capability = at::get_cpu_capability();
  if (capability == "AVX512" && __builtin_cpu_supports("avx512f")) return avx512::attention_math<T>();
  if ((capability == "AVX2" || capability == "AVX512") && __builtin_cpu_supports("avx2") &&
      __builtin_cpu_supports("fma")) {
    return avx2::attention_math<T>();
  }
#endif
  return portable::attention_math<T>();
}

template <typename T>
const AttentionMath<T>& attention_math() {
  static const AttentionMath<T> math = pick_attention_math<T>();
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

// Image layout: window (b, wr, wc) of a wh x ww grid over the image rolled by (-sh, -sw). With rolled
// coordinate r = wr*wh + ti, the official mask's region along H is 0 if r < H-wh, 1 if r < H-sh, else 2
// (likewise along W); an axis without shift is not cut (DAT's calculate_mask, whose slices then
// degenerate), so only windows in the last window row (sh > 0) or column (sw > 0) can contain more
// than one region.
template <typename acc_t>
struct ImageLayout {
  int64_t height, width;
  AxisPair window, shift;

  int64_t num_windows(int64_t batch) const { return batch * (height / window.h) * (width / window.w); }
  static acc_t region(int64_t rolled, int64_t extent, int64_t window_extent, int64_t shift) {
    if (shift == 0) return 0;
    return rolled < extent - window_extent ? 0 : (rolled < extent - shift ? 1 : 2);
  }
  void describe(int64_t w, WindowTokens<acc_t>& window_tokens) const {
    const int64_t wh = window.h, ww = window.w;
    const int64_t windows_per_row = width / ww, windows_per_image = (height / wh) * windows_per_row;
    const int64_t b = w / windows_per_image, wr = (w % windows_per_image) / windows_per_row, wc = w % windows_per_row;
    const bool masked = (shift.h > 0 && wr == height / wh - 1) || (shift.w > 0 && wc == windows_per_row - 1);
    window_tokens.region.resize(masked ? padded_tokens(wh * ww) : 0);
    for (int64_t ti = 0; ti < wh; ++ti) {
      const int64_t rolled_h = wr * wh + ti;
      const int64_t image_row = (b * height + (rolled_h + shift.h) % height) * width;
      for (int64_t tj = 0; tj < ww; ++tj) {
        const int64_t rolled_w = wc * ww + tj;
        window_tokens.pixel[ti * ww + tj] = image_row + (rolled_w + shift.w) % width;
        if (masked) {
          window_tokens.region[ti * ww + tj] =
              region(rolled_h, height, wh, shift.h) * 3 + region(rolled_w, width, ww, shift.w);
        }
      }
    }
  }
};

// Per-thread scratch, zero-filled once. The products write only inside the padded extents and the
// loads write only real rows, so padding rows stay zero.
//   rows   = N rounded up to kTileRows;  cols = N rounded up to kTileColumns;
//   hd_pad = hd rounded up to kTileColumns (30 -> 32, 10 -> 16): a product's last column tile of a
//            head runs into the next head's columns (its result there is overwritten or dropped);
//   slack  = hd_pad - hd extra entries after row-major (rows, width) buffers that such a tile of the
//            last head reads or writes past the last row.
template <typename acc_t>
struct Scratch {
  int64_t rows, cols, hd_pad, c_pad;
  std::vector<acc_t> qkv;            // (rows, 3C) + slack: the window's rows of qkv
  std::vector<acc_t> k_t, v_t;       // (hd, cols): a head's k and v transposed (v_t: backward only)
  std::vector<acc_t> probabilities;  // (min(kBlockRows, rows), cols): a block of the logits, then of P
  std::vector<acc_t> out;            // (rows, c_pad), c_pad = C + hd_pad - hd: forward output
  std::vector<acc_t> grad_out;       // (rows, C) + slack, backward only
  std::vector<acc_t> grad_scores;    // like probabilities: a block of dP, then of dS, backward only
  std::vector<acc_t> grad_q, grad_k, grad_v;  // (rows, c_pad), backward only

  Scratch(int64_t N, int64_t C, int64_t hd, bool backward)
      : rows(round_up(N, kTileRows)), cols(padded_tokens(N)), hd_pad(round_up(hd, kTileColumns)),
        c_pad(C + round_up(hd, kTileColumns) - hd) {
    const int64_t slack = hd_pad - hd;
    const int64_t output = rows * c_pad, backward_output = backward ? output : 0;
    const int64_t block = std::min(kBlockRows, rows) * cols;
    qkv.assign(rows * 3 * C + slack, 0);
    k_t.assign(hd * cols, 0);
    v_t.assign(backward ? hd * cols : 0, 0);
    probabilities.assign(block, 0);
    out.assign(backward ? 0 : output, 0);
    grad_out.assign(backward ? rows * C + slack : 0, 0);
    grad_scores.assign(backward ? block : 0, 0);
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
// In 16x16 tiles: row by row, each source row would write C different cache lines of dst (more than
// L1 holds at head_dim 128).
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

// Writes columns [first, last) of the window's N rows: those columns of each source (row stride
// src_width), times its factor, side by side (parts of C columns) in the destination rows at
// base[pixel[n] * kParts * C].
template <typename scalar_t, typename acc_t, int kParts>
void store_rows(const acc_t* const (&src)[kParts], const acc_t (&factor)[kParts], int64_t src_width, int64_t C,
                int64_t first, int64_t last, const std::vector<int64_t>& pixel, scalar_t* base) {
  const int64_t N = static_cast<int64_t>(pixel.size());
  for (int64_t n = 0; n < N; ++n) {
    scalar_t* row = base + pixel[n] * kParts * C;
    for (int part = 0; part < kParts; ++part) {
      const acc_t* from = src[part] + n * src_width;
      for (int64_t c = first; c < last; ++c) row[part * C + c] = static_cast<scalar_t>(from[c] * factor[part]);
    }
  }
}

// The rows [first, first + block) of the window's scratch matrices (block <= kBlockRows, a multiple
// of kTileRows); `real` of them are tokens (the rest is padding of the last block).
struct RowBlock {
  int64_t first, block, real;
};

template <typename F>
void for_each_row_block(int64_t N, int64_t rows, const F& f) {
  for (int64_t first = 0; first < rows; first += kBlockRows) {
    f(RowBlock{first, std::min(kBlockRows, rows - first), std::min(kBlockRows, N - first)});
  }
}

// Rows [b.first, b.first + b.block) of P = softmax_rows(scale q k^T + rel_bias[h] + mask) in
// scratch.probabilities (its row 0 is row b.first), from the window's q and the head's k^T in scratch.
template <typename scalar_t>
void attention_probabilities(const Attention<scalar_t>& problem, const WindowTokens<at::opmath_type<scalar_t>>& window,
                             int64_t head, const RowBlock& b, Scratch<at::opmath_type<scalar_t>>& s) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto& math = attention_math<acc_t>();
  const int64_t N = problem.tokens, C = problem.channels, hd = problem.head_dim, cols = s.cols;
  math.matmul(b.block, hd, cols, s.qkv.data() + b.first * 3 * C + head * hd, 3 * C, s.k_t.data(), cols,
              s.probabilities.data(), cols, /*accumulate=*/false);
  const acc_t* region = window.region.empty() ? nullptr : window.region.data();
  math.softmax_rows(b.real, cols, s.probabilities.data(), problem.scale, problem.rel_bias + (head * N + b.first) * cols,
                    window.mask == nullptr ? nullptr : window.mask + b.first * cols,
                    region == nullptr ? nullptr : region + b.first, region, static_cast<acc_t>(kShiftMaskValue));
}

// Heads [head_begin, head_end) of one window: loads its rows, computes O_h = P_h v_h block by block and
// writes those heads' columns of out.
template <typename scalar_t>
void forward_heads(const Attention<scalar_t>& problem, const WindowTokens<at::opmath_type<scalar_t>>& window,
                   int64_t head_begin, int64_t head_end, const scalar_t* qkv, scalar_t* out,
                   Scratch<at::opmath_type<scalar_t>>& s) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto& math = attention_math<acc_t>();
  const int64_t N = problem.tokens, C = problem.channels, hd = problem.head_dim;
  load_rows(qkv, 3 * C, window.pixel, s.qkv.data());
  for (int64_t h = head_begin; h < head_end; ++h) {
    transpose_columns(s.qkv.data(), N, 3 * C, C + h * hd, hd, s.k_t.data(), s.cols);
    for_each_row_block(N, s.rows, [&](const RowBlock& b) {
      attention_probabilities(problem, window, h, b, s);
      // Into columns [h*hd, h*hd + hd_pad) of out: heads in order, so head h+1 overwrites what head
      // h's padding tile wrote past its hd columns.
      math.matmul(b.block, N, s.hd_pad, s.probabilities.data(), s.cols, s.qkv.data() + 2 * C + h * hd, 3 * C,
                  s.out.data() + b.first * s.c_pad + h * hd, s.c_pad, /*accumulate=*/false);
    });
  }
  const acc_t* parts[1] = {s.out.data()};
  const acc_t factors[1] = {acc_t(1)};
  store_rows(parts, factors, s.c_pad, C, head_begin * hd, head_end * hd, window.pixel, out);
}

// Heads [head_begin, head_end) of one window: writes their dq, dk, dv into grad_qkv's rows of the
// window and adds head h's dS to grad_bias[h] (grad_bias (nH, N, padded_tokens(N)); stores it when
// `accumulate_bias` is false: the chunk's first window).
// With logits = scale q k^T + bias: dV = P^T dO, dP = dO v^T, dS = P (dP - rowsum(P dP)),
// dq = scale dS k, dk = scale dS^T q, d bias = dS; dV and dk sum over the row blocks.
template <typename scalar_t>
void backward_heads(const Attention<scalar_t>& problem, const WindowTokens<at::opmath_type<scalar_t>>& window,
                    int64_t head_begin, int64_t head_end, const scalar_t* grad_out, const scalar_t* qkv,
                    scalar_t* grad_qkv, at::opmath_type<scalar_t>* grad_bias, bool accumulate_bias,
                    Scratch<at::opmath_type<scalar_t>>& s) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto& math = attention_math<acc_t>();
  const int64_t N = problem.tokens, C = problem.channels, hd = problem.head_dim;
  const int64_t rows = s.rows, cols = s.cols, hd_pad = s.hd_pad, c_pad = s.c_pad;
  load_rows(qkv, 3 * C, window.pixel, s.qkv.data());
  load_rows(grad_out, C, window.pixel, s.grad_out.data());
  const acc_t* P = s.probabilities.data();
  acc_t* dS = s.grad_scores.data();
  for (int64_t h = head_begin; h < head_end; ++h) {
    const int64_t head = h * hd;
    const acc_t* q = s.qkv.data() + head;
    const acc_t* k = q + C;
    transpose_columns(s.qkv.data(), N, 3 * C, C + head, hd, s.k_t.data(), cols);
    transpose_columns(s.qkv.data(), N, 3 * C, 2 * C + head, hd, s.v_t.data(), cols);
    // Columns [head, head + hd_pad) of the gradients, heads in order as in forward_heads; dV and dk
    // start from the first block's product, which overwrites the previous head's padding tile.
    for_each_row_block(N, rows, [&](const RowBlock& b) {
      const bool accumulate = b.first > 0;
      const acc_t* dO = s.grad_out.data() + b.first * C + head;
      attention_probabilities(problem, window, h, b, s);
      math.matmul_transposed_a(rows, b.block, hd_pad, P, cols, dO, C, s.grad_v.data() + head, c_pad, accumulate);
      math.matmul(b.block, hd, cols, dO, C, s.v_t.data(), cols, dS, cols, /*accumulate=*/false);
      math.softmax_backward_rows(b.real, cols, P, dS, grad_bias + (h * N + b.first) * cols, accumulate_bias);
      math.matmul(b.block, N, hd_pad, dS, cols, k, 3 * C, s.grad_q.data() + b.first * c_pad + head, c_pad,
                  /*accumulate=*/false);
      math.matmul_transposed_a(rows, b.block, hd_pad, dS, cols, q + b.first * 3 * C, 3 * C, s.grad_k.data() + head,
                               c_pad, accumulate);
    });
  }
  const acc_t* parts[3] = {s.grad_q.data(), s.grad_k.data(), s.grad_v.data()};
  const acc_t factors[3] = {problem.scale, problem.scale, acc_t(1)};
  store_rows(parts, factors, c_pad, C, head_begin * hd, head_end * hd, window.pixel, grad_qkv);
}

// ---------------------------------------------------------------------------------------------
// Drivers: parallel over (window, head) pairs in the forward and (bias chunk, head) pairs in the
// backward, so that a few windows still keep every thread busy. A thread runs the heads of its range
// window by window, so a window's rows are loaded once for all of them, not once per head.

template <typename scalar_t, typename Layout>
void run_forward(const Attention<scalar_t>& problem, const Layout& layout, int64_t num_windows, const scalar_t* qkv,
                 scalar_t* out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t nH = problem.num_heads;
  at::parallel_for(0, num_windows * nH, 1, [&](int64_t begin, int64_t end) {
    Scratch<acc_t> scratch(problem.tokens, problem.channels, problem.head_dim, /*backward=*/false);
    WindowTokens<acc_t> window;
    window.pixel.resize(problem.tokens);
    for (int64_t item = begin; item < end;) {
      const int64_t w = item / nH, head_begin = item % nH, head_end = std::min(nH, head_begin + end - item);
      layout.describe(w, window);
      forward_heads(problem, window, head_begin, head_end, qkv, out, scratch);
      item += head_end - head_begin;
    }
  });
}

// The number of bias-gradient chunks (see kMinWindowsPerBiasChunk): a function of the shape only.
int64_t bias_grad_chunks(int64_t num_windows, int64_t partial_bytes) {
  const int64_t by_windows = num_windows / kMinWindowsPerBiasChunk;
  const int64_t by_bytes = kMaxBiasGradPartialBytes / partial_bytes;
  return std::max<int64_t>(1, std::min({by_windows, by_bytes, kMaxBiasGradChunks}));
}

// Returns the bias gradient in acc_t, (nH, N, N) (a view of the padded sum).
template <typename scalar_t, typename Layout>
at::Tensor run_backward(const Attention<scalar_t>& problem, const Layout& layout, int64_t num_windows,
                        const scalar_t* grad_out, const scalar_t* qkv, scalar_t* grad_qkv,
                        const at::TensorOptions& acc_options) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t N = problem.tokens, nH = problem.num_heads, cols = padded_tokens(N);
  const int64_t bias_numel = nH * N * cols;
  const int64_t chunks = bias_grad_chunks(num_windows, bias_numel * static_cast<int64_t>(sizeof(acc_t)));
  // Every element of a partial is stored by its chunk's first window, so no zero-filling.
  at::Tensor partials = at::empty({chunks, bias_numel}, acc_options);
  acc_t* partial = partials.mutable_data_ptr<acc_t>();
  at::parallel_for(0, chunks * nH, 1, [&](int64_t begin, int64_t end) {
    Scratch<acc_t> scratch(N, problem.channels, problem.head_dim, /*backward=*/true);
    WindowTokens<acc_t> window;
    window.pixel.resize(N);
    for (int64_t item = begin; item < end;) {
      const int64_t chunk = item / nH, head_begin = item % nH, head_end = std::min(nH, head_begin + end - item);
      // Chunk c owns windows [c*num_windows/chunks, (c+1)*num_windows/chunks); each (chunk, head)
      // partial sums its windows in order, however the heads are split between threads.
      const int64_t first = chunk * num_windows / chunks, last = (chunk + 1) * num_windows / chunks;
      for (int64_t w = first; w < last; ++w) {
        layout.describe(w, window);
        backward_heads(problem, window, head_begin, head_end, grad_out, qkv, grad_qkv, partial + chunk * bias_numel,
                       /*accumulate_bias=*/w > first, scratch);
      }
      item += head_end - head_begin;
    }
  });
  at::Tensor grad_bias = at::empty({nH, N, cols}, acc_options);
  acc_t* total = grad_bias.mutable_data_ptr<acc_t>();
  at::parallel_for(0, bias_numel, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t e = begin; e < end; ++e) {
      acc_t sum = 0;
      for (int64_t chunk = 0; chunk < chunks; ++chunk) sum += partial[chunk * bias_numel + e];
      total[e] = sum;
    }
  });
  return grad_bias.narrow(-1, 0, N);
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
// Without padding columns (N a multiple of kTileColumns, as at 64, 256 and 1024 tokens) a contiguous
// tensor of that type is used as is: the copy cost a pass over the bias and mask per call.
at::Tensor pad_tokens(const at::Tensor& matrices, at::ScalarType type, double fill) {
  if (matrices.size(-1) == padded_tokens(matrices.size(-1))) return matrices.to(type).contiguous();
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

void check_image_inputs(const at::Tensor& qkv, const at::Tensor& rel_bias, int64_t num_heads, const AxisPair& window,
                        const AxisPair& shift) {
  check_image_windows(qkv, window, shift);
  check_qkv_channels(qkv, num_heads);
  check_rel_bias(rel_bias, qkv, num_heads, window.h * window.w);
}

auto window_layout(int64_t tokens, const c10::optional<at::Tensor>& mask) {
  const int64_t mask_windows = mask.has_value() ? mask->size(0) : 1;
  return [=](const auto* acc_mask) {
    using acc_t = std::remove_const_t<std::remove_pointer_t<decltype(acc_mask)>>;
    return WindowLayout<acc_t>{tokens, acc_mask, mask_windows};
  };
}

auto image_layout(const at::Tensor& qkv, const AxisPair& window, const AxisPair& shift) {
  const int64_t H = qkv.size(1), W = qkv.size(2);
  return [=](const auto* /*no mask tensor*/ acc_mask) {
    using acc_t = std::remove_const_t<std::remove_pointer_t<decltype(acc_mask)>>;
    return ImageLayout<acc_t>{H, W, window, shift};
  };
}

int64_t image_windows(const at::Tensor& qkv, const AxisPair& window) {
  return qkv.size(0) * (qkv.size(1) / window.h) * (qkv.size(2) / window.w);
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
                                        at::IntArrayRef window_size, at::IntArrayRef shift, double scale) {
  const AxisPair window = window_shape(window_size), shifts = shift_pair(shift);
  check_image_inputs(qkv, rel_bias, num_heads, window, shifts);
  return attention_forward(qkv, rel_bias, nullptr, num_heads, scale, window.h * window.w, image_windows(qkv, window),
                           image_layout(qkv, window, shifts));
}

std::tuple<at::Tensor, at::Tensor> shifted_window_attention_backward_cpu(const at::Tensor& grad_out,
                                                                         const at::Tensor& qkv,
                                                                         const at::Tensor& rel_bias, int64_t num_heads,
                                                                         at::IntArrayRef window_size,
                                                                         at::IntArrayRef shift, double scale) {
  const AxisPair window = window_shape(window_size), shifts = shift_pair(shift);
  check_image_inputs(qkv, rel_bias, num_heads, window, shifts);
  check_grad_out(grad_out, qkv);
  return attention_backward(grad_out, qkv, rel_bias, nullptr, num_heads, scale, window.h * window.w,
                            image_windows(qkv, window), image_layout(qkv, window, shifts));
}

TORCH_LIBRARY_IMPL(swinir_kernels, CPU, m) {
  m.impl("window_attention", &window_attention_cpu);
  m.impl("_window_attention_backward", &window_attention_backward_cpu);
  m.impl("shifted_window_attention", &shifted_window_attention_cpu);
  m.impl("_shifted_window_attention_backward", &shifted_window_attention_backward_cpu);
}

}  // namespace swinir_kernels
