// Flash window attention: the windows the on-chip kernels cannot hold (N > kCudaOnChipAttentionMaxTokens
// tokens or head_dim > kCudaOnChipAttentionMaxHeadDim): the Swin family's 16x16 (HAT, DRCT, ATD), 8x32 /
// 32x8 (DAT), 22x22 (SRFormer) and 32x32 (GRL) windows, head_dim up to 128. Nothing N x N is stored.
//
// One source for every dtype: tiles of q, k, v, dO in the storage dtype T in shared memory, products
// into fp32 (fp64 for double) strips of 16 rows per warp. kTensorCores: the products are WMMA (fp16,
// bf16 m16n16k16; fp32 as TF32 m16n16k8); otherwise scalar FMAs in the compute type (exact fp32, fp64).
// A block of kWarps warps covers kRows = 16 kWarps query (or key) rows: 64 for fp16/bf16, 32 for fp32,
// 16 for fp64 (so that every variant's shared memory fits an sm_90 block at head_dim 128).
//
//   forward   item (window, head, query block): S = q k^T per key block of kRows keys, online softmax
//             (running max m and sum l per row, the output strip rescaled by exp(m_old - m_new)),
//             O += P v; out = O / l. In "statistics" mode (the backward's first pass) it writes
//             lse = m + log l and delta = rowsum(dO * O) per row instead of out.
//   dq        item (window, head, query block): per key block recompute P = exp(logits - lse),
//             dP = dO v^T, dS = P * (dP - delta); dq += dS k.
//   dkv       item (window group, head, key block): per window, per query block the same P and dS
//             (all warps' rows, then a block barrier); dk += dS^T q, dv += P^T dO. dS is added into the
//             group's bias-gradient partial (global, each element owned by one thread, windows in order).
//   sum       grad_bias = the partials added in group order (deterministic: no atomics anywhere).
// Padding: tiles are rewritten whole for every block (zeros beyond N rows and head_dim columns), so no
// stale or NaN shared memory reaches a product.
#include <mma.h>

#include <cstdint>
#include <type_traits>
#include <utility>

#include "element_io.cuh"
#include "launch.cuh"
#include "window_attention_kernel.h"
#include "window_geometry.cuh"

namespace swinir_kernels {
namespace cuda {
namespace {

namespace wmma = nvcuda::wmma;

constexpr int kWarp = 32;
constexpr int kTile = 16;  // rows of a warp's strip; wmma M and N
constexpr float kShiftMaskValue = -100.0f;  // the official additive mask (not -inf)
constexpr size_t kSharedAlign = 128;        // wmma needs 32-byte aligned tile pointers
// Backward window groups: at most kMaxGroups, at least kMinWindowsPerGroup windows each, and the partials
// (groups, nH, N, N) at most kMaxPartialElements; a function of the sizes only (deterministic bits).
constexpr int64_t kMaxGroups = 32;
constexpr int64_t kMinWindowsPerGroup = 4;
constexpr int64_t kMaxPartialElements = int64_t{1} << 24;

template <typename T>
struct FlashWarps {
  static constexpr int value = 4;
};
template <>
struct FlashWarps<float> {
  static constexpr int value = 2;
};
template <>
struct FlashWarps<double> {
  static constexpr int value = 1;
};

__host__ __device__ inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

template <typename T>
__host__ __device__ constexpr int rows_of() {
  return FlashWarps<T>::value * kTile;
}

// The wmma shape and operand types for storage dtype T: fp16 / bf16 operands directly, fp32 as TF32.
template <typename T>
struct Mma {
  static constexpr int kDepth = 16;
  template <typename Use, typename Layout>
  using Operand = wmma::fragment<Use, kTile, kTile, kDepth, T, Layout>;
  using Accumulator = wmma::fragment<wmma::accumulator, kTile, kTile, kDepth, float>;
  template <typename Fragment>
  __device__ static void round(Fragment&) {}
};

template <>
struct Mma<float> {
  static constexpr int kDepth = 8;
  template <typename Use, typename Layout>
  using Operand = wmma::fragment<Use, kTile, kTile, kDepth, wmma::precision::tf32, Layout>;
  using Accumulator = wmma::fragment<wmma::accumulator, kTile, kTile, kDepth, float>;
  template <typename Fragment>
  __device__ static void round(Fragment& fragment) {
    for (int e = 0; e < fragment.num_elements; ++e) fragment.x[e] = wmma::__float_to_tf32(fragment.x[e]);
  }
};

template <typename Layout>
__host__ __device__ constexpr bool is_row_major() {
  return std::is_same<Layout, wmma::row_major>::value;
}

// strip[0:16, 0:columns] (+)= A (16 x depth) * B (depth x columns). A is row-major (a[m * lda + k]) or
// column-major (a[k * lda + m]); B likewise (b[k * ldb + n] or b[n * ldb + k]). Whole warp. With tensor
// cores depth is a multiple of Mma<T>::kDepth and columns of 16; `accumulate` is the same on every lane.
template <typename T, bool kTensorCores, typename LayoutA, typename LayoutB>
__device__ void strip_product(compute_t<T>* strip, int strip_stride, const T* a, int lda, const T* b, int ldb,
                              int depth, int columns, bool accumulate) {
  if constexpr (kTensorCores) {
    using M = Mma<T>;
    const int a_depth_step = is_row_major<LayoutA>() ? M::kDepth : M::kDepth * lda;
    const int b_depth_step = is_row_major<LayoutB>() ? M::kDepth * ldb : M::kDepth;
    const int b_column_step = is_row_major<LayoutB>() ? kTile : kTile * ldb;
#pragma unroll 1
    for (int n = 0; n < columns / kTile; ++n) {
      typename M::Accumulator accumulator;
      if (accumulate) {
        wmma::load_matrix_sync(accumulator, strip + n * kTile, strip_stride, wmma::mem_row_major);
      } else {
        wmma::fill_fragment(accumulator, 0.0f);
      }
#pragma unroll 1
      for (int k = 0; k < depth / M::kDepth; ++k) {
        typename M::template Operand<wmma::matrix_a, LayoutA> a_fragment;
        typename M::template Operand<wmma::matrix_b, LayoutB> b_fragment;
        wmma::load_matrix_sync(a_fragment, a + k * a_depth_step, lda);
        wmma::load_matrix_sync(b_fragment, b + n * b_column_step + k * b_depth_step, ldb);
        M::round(a_fragment);
        M::round(b_fragment);
        wmma::mma_sync(accumulator, a_fragment, b_fragment, accumulator);
      }
      wmma::store_matrix_sync(strip + n * kTile, accumulator, strip_stride, wmma::mem_row_major);
    }
  } else {
    using Acc = compute_t<T>;
    const int lane = threadIdx.x % kWarp;
#pragma unroll 1
    for (int e = lane; e < kTile * columns; e += kWarp) {
      const int m = e / columns, n = e - m * columns;
      Acc sum = accumulate ? strip[m * strip_stride + n] : static_cast<Acc>(0);
      for (int k = 0; k < depth; ++k) {
        const T a_value = is_row_major<LayoutA>() ? a[m * lda + k] : a[k * lda + m];
        const T b_value = is_row_major<LayoutB>() ? b[k * ldb + n] : b[n * ldb + k];
        sum += load_as<Acc>(&a_value) * load_as<Acc>(&b_value);
      }
      strip[m * strip_stride + n] = sum;
    }
  }
}

enum class Pass { kForward, kGradQuery, kGradKeyValue };

// Byte offsets of a block's shared memory; the same on the host (launch size) and the device.
struct FlashLayout {
  int padded_head_dim;
  int tile_stride;   // elements per row of the (kRows, padded_head_dim) q, k, v, dO tiles
  int prob_stride;   // elements per row of the (kRows, kRows) P and dS tiles
  int strip_stride;  // compute-type elements per row of a (16, kRows) score strip
  int out_stride;    // compute-type elements per row of a (16, padded_head_dim) output strip
  size_t query_pixels, key_pixels, query_regions, key_regions, row_values;
  size_t q, k, v, grad_out, prob, grad_score, strips, out_strips, total;
};

struct SharedAllocator {
  size_t end = 0;
  __host__ __device__ size_t take(size_t bytes) {
    const size_t at = end;
    end = (end + bytes + kSharedAlign - 1) / kSharedAlign * kSharedAlign;
    return at;
  }
};

template <typename T>
__host__ __device__ inline FlashLayout flash_layout(int head_dim, Pass pass) {
  using Acc = compute_t<T>;
  constexpr int kRows = rows_of<T>();
  constexpr int kWarps = FlashWarps<T>::value;
  FlashLayout l{};
  l.padded_head_dim = static_cast<int>(ceil_div(head_dim, kTile)) * kTile;
  const int row_padding = 16 / static_cast<int>(sizeof(T));  // a multiple of wmma's ldm unit, staggers banks
  l.tile_stride = l.padded_head_dim + row_padding;
  l.prob_stride = kRows + row_padding;
  l.strip_stride = kRows + 16 / static_cast<int>(sizeof(Acc));
  l.out_stride = l.padded_head_dim + 16 / static_cast<int>(sizeof(Acc));
  const size_t tile = static_cast<size_t>(kRows) * l.tile_stride * sizeof(T);
  const size_t square = static_cast<size_t>(kRows) * l.prob_stride * sizeof(T);
  const size_t strip = static_cast<size_t>(kTile) * l.strip_stride * sizeof(Acc);
  const size_t out_strip = static_cast<size_t>(kTile) * l.out_stride * sizeof(Acc);
  const bool backward = pass != Pass::kForward;
  SharedAllocator shared;
  l.query_pixels = shared.take(kRows * sizeof(int64_t));
  l.key_pixels = shared.take(kRows * sizeof(int64_t));
  l.query_regions = shared.take(kRows * sizeof(int));
  l.key_regions = shared.take(kRows * sizeof(int));
  l.row_values = shared.take(2 * kRows * sizeof(Acc));  // forward: rescale factors; backward: lse, delta
  l.q = shared.take(tile);
  l.k = shared.take(tile);
  l.v = shared.take(tile);
  l.grad_out = backward ? shared.take(tile) : 0;
  l.prob = pass != Pass::kGradQuery ? shared.take(square) : 0;
  l.grad_score = backward ? shared.take(square) : 0;
  l.strips = shared.take((backward ? 2 : 1) * kWarps * strip);
  l.out_strips = shared.take((pass == Pass::kGradKeyValue ? 2 : 1) * kWarps * out_strip);
  l.total = shared.end;
  return l;
}

// Typed views of the shared memory.
template <typename T>
struct FlashShared {
  using Acc = compute_t<T>;
  int64_t *query_pixels, *key_pixels;
  int *query_regions, *key_regions;
  Acc* row_values;  // [2][kRows]
  T *q, *k, *v, *grad_out, *prob, *grad_score;
  Acc *strips, *out_strips;

  __device__ FlashShared(unsigned char* raw, const FlashLayout& l) {
    query_pixels = reinterpret_cast<int64_t*>(raw + l.query_pixels);
    key_pixels = reinterpret_cast<int64_t*>(raw + l.key_pixels);
    query_regions = reinterpret_cast<int*>(raw + l.query_regions);
    key_regions = reinterpret_cast<int*>(raw + l.key_regions);
    row_values = reinterpret_cast<Acc*>(raw + l.row_values);
    q = reinterpret_cast<T*>(raw + l.q);
    k = reinterpret_cast<T*>(raw + l.k);
    v = reinterpret_cast<T*>(raw + l.v);
    grad_out = l.grad_out ? reinterpret_cast<T*>(raw + l.grad_out) : nullptr;
    prob = l.prob ? reinterpret_cast<T*>(raw + l.prob) : nullptr;
    grad_score = l.grad_score ? reinterpret_cast<T*>(raw + l.grad_score) : nullptr;
    strips = reinterpret_cast<Acc*>(raw + l.strips);
    out_strips = reinterpret_cast<Acc*>(raw + l.out_strips);
  }
};

template <typename T>
__device__ inline T from_compute(compute_t<T> value) {
  T result;
  store_from(&result, value);
  return result;
}

__device__ inline float log_of(float x) { return logf(x); }
__device__ inline double log_of(double x) { return log(x); }

template <typename Acc>
__device__ inline Acc warp_sum(Acc value) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

// Pixel and shift-region tables of tokens first .. first + kRows - 1 of window w (block-wide; the caller
// synchronises). Tokens past N get pixel 0 (never dereferenced: their rows are zero-filled).
template <typename T>
__device__ void fill_tables(const WindowAttentionParams& p, int64_t w, int first, int64_t* pixels, int* regions) {
  constexpr int kRows = rows_of<T>();
  const bool shift_mask = has_shift_mask(p);
  for (int r = threadIdx.x; r < kRows; r += blockDim.x) {
    const int t = first + r;
    pixels[r] = t < p.tokens ? token_pixel(p, w, t) : 0;
    regions[r] = t < p.tokens && shift_mask ? token_region(p, w, t) : 0;
  }
}

// tile[r][d] = src[pixels[r] * row_elements + first_channel + d] for the kRows rows (zero past N and for
// d >= head_dim up to the padded width). Block-wide; the caller synchronises.
template <typename T>
__device__ void load_tile(T* tile, const T* src, const int64_t* pixels, int64_t row_elements, int64_t first_channel,
                          int first, const WindowAttentionParams& p, const FlashLayout& l) {
  constexpr int kRows = rows_of<T>();
  const int width = l.padded_head_dim, hd = p.head_dim;
  const T zero = from_compute<T>(0);
  for (int e = threadIdx.x; e < kRows * width; e += blockDim.x) {
    const int r = e / width, d = e - r * width;
    tile[r * l.tile_stride + d] =
        first + r < p.tokens && d < hd ? src[pixels[r] * row_elements + first_channel + d] : zero;
  }
}

// The logit of query token i (row r of the block's tables) and key token j (column c): scale * s + bias
// + mask (+ the shift mask between different regions).
template <typename Acc>
__device__ inline Acc logit(const WindowAttentionParams& p, const Acc* bias_row, const Acc* mask_row, int query_region,
                            int key_region, int j, Acc s) {
  Acc value = static_cast<Acc>(p.scale) * s + bias_row[j];
  if (mask_row != nullptr) value += mask_row[j];
  if (query_region != key_region) value += static_cast<Acc>(kShiftMaskValue);
  return value;
}

// ---- forward (and the backward's statistics pass) ----------------------------------------------------

// register budget: 128 (bench/static_report.py checks it on sm_90, with no local memory): 60-96 taken
// stats == nullptr: writes out. Otherwise writes stats[0][w][h][i] = lse and stats[1][w][h][i] = delta =
// rowsum(dO * O) for the backward (out unused).
template <typename T, bool kTensorCores>
__global__ void window_attention_flash_forward_kernel(WindowAttentionParams p, const T* grad_out,
                                                      compute_t<T>* stats) {
  using Acc = compute_t<T>;
  constexpr int kRows = rows_of<T>();
  constexpr int kColumnsPerLane = kRows / 2;
  extern __shared__ __align__(128) unsigned char shared_raw[];
  const FlashLayout l = flash_layout<T>(p.head_dim, Pass::kForward);
  FlashShared<T> s(shared_raw, l);
  const T* qkv = static_cast<const T*>(p.qkv);
  const int n = p.tokens, hd = p.head_dim, warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int row0 = warp * kTile, r = lane / 2, half = lane % 2;
  const int64_t channels = static_cast<int64_t>(p.num_heads) * hd;
  const int blocks = static_cast<int>(ceil_div(n, kRows));
  const int depth = kTensorCores ? l.padded_head_dim : hd;
  const bool shift_mask = has_shift_mask(p);
  Acc* strip = s.strips + warp * kTile * l.strip_stride;
  Acc* out_strip = s.out_strips + warp * kTile * l.out_stride;
  Acc* row_scale = s.row_values;
  const int64_t items = p.num_windows * p.num_heads * blocks;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const int query_block = static_cast<int>(item % blocks);
    const int64_t window_head = item / blocks;
    const int h = static_cast<int>(window_head % p.num_heads);
    const int64_t w = window_head / p.num_heads;
    const int q0 = query_block * kRows;
    const int i = q0 + row0 + r;  // this lane's query row
    const bool row_valid = i < n;
    fill_tables<T>(p, w, q0, s.query_pixels, s.query_regions);
    for (int e = lane; e < kTile * l.out_stride; e += kWarp) out_strip[e] = 0;
    __syncthreads();
    load_tile(s.q, qkv, s.query_pixels, 3 * channels, h * hd, q0, p, l);
    const Acc* bias_row = static_cast<const Acc*>(p.rel_bias) + (static_cast<int64_t>(h) * n + (row_valid ? i : 0)) * n;
    const Acc* mask_row = p.mask == nullptr || !row_valid
                              ? nullptr
                              : static_cast<const Acc*>(p.mask) + ((w % p.mask_windows) * n + i) * n;
    Acc row_max = static_cast<Acc>(-INFINITY), row_sum = 0;
    for (int key_block = 0; key_block < blocks; ++key_block) {
      const int k0 = key_block * kRows;
      fill_tables<T>(p, w, k0, s.key_pixels, s.key_regions);
      __syncthreads();
      load_tile(s.k, qkv, s.key_pixels, 3 * channels, channels + h * hd, k0, p, l);
      load_tile(s.v, qkv, s.key_pixels, 3 * channels, 2 * channels + h * hd, k0, p, l);
      __syncthreads();
      strip_product<T, kTensorCores, wmma::row_major, wmma::col_major>(strip, l.strip_stride, s.q + row0 * l.tile_stride,
                                                                       l.tile_stride, s.k, l.tile_stride, depth, kRows,
                                                                       false);
      __syncwarp();
      {
        const int query_region = shift_mask && row_valid ? s.query_regions[row0 + r] : 0;
        Acc logits[kColumnsPerLane];
        Acc block_max = static_cast<Acc>(-INFINITY);
#pragma unroll
        for (int c = 0; c < kColumnsPerLane; ++c) {
          const int j = 2 * c + half;
          logits[c] = static_cast<Acc>(-INFINITY);
          if (!row_valid || k0 + j >= n) continue;
          logits[c] = logit(p, bias_row + k0, mask_row == nullptr ? nullptr : mask_row + k0, query_region,
                            shift_mask ? s.key_regions[j] : 0, j, strip[r * l.strip_stride + j]);
          block_max = logits[c] > block_max ? logits[c] : block_max;
        }
        const Acc partner_max = __shfl_xor_sync(0xffffffffu, block_max, 1);
        block_max = partner_max > block_max ? partner_max : block_max;
        const Acc new_max = block_max > row_max ? block_max : row_max;
        // Rows past N see no keys: everything stays zero (no inf - inf).
        const Acc rescale = row_valid ? exp_of(row_max - new_max) : static_cast<Acc>(0);
        Acc block_sum = 0;
        T* prob_row = s.prob + (row0 + r) * l.prob_stride + half;
#pragma unroll
        for (int c = 0; c < kColumnsPerLane; ++c) {
          const Acc prob = row_valid && k0 + 2 * c + half < n ? exp_of(logits[c] - new_max) : static_cast<Acc>(0);
          block_sum += prob;
          prob_row[2 * c] = from_compute<T>(prob);
        }
        block_sum += __shfl_xor_sync(0xffffffffu, block_sum, 1);
        row_sum = row_sum * rescale + block_sum;
        row_max = row_valid ? new_max : row_max;
        if (half == 0) row_scale[row0 + r] = rescale;
      }
      __syncwarp();
      for (int e = lane; e < kTile * l.padded_head_dim; e += kWarp) {
        const int row = e / l.padded_head_dim, d = e - row * l.padded_head_dim;
        out_strip[row * l.out_stride + d] *= row_scale[row0 + row];
      }
      __syncwarp();
      strip_product<T, kTensorCores, wmma::row_major, wmma::row_major>(out_strip, l.out_stride,
                                                                       s.prob + row0 * l.prob_stride, l.prob_stride,
                                                                       s.v, l.tile_stride, kRows, l.padded_head_dim,
                                                                       true);
      __syncthreads();  // k, v and the key tables are rewritten for the next key block
    }
    if (half == 0) row_scale[row0 + r] = row_valid ? static_cast<Acc>(1) / row_sum : static_cast<Acc>(0);
    __syncwarp();
    if (stats == nullptr) {
      T* out = static_cast<T*>(p.out);
      for (int e = lane; e < kTile * hd; e += kWarp) {
        const int row = e / hd, d = e - row * hd;
        if (q0 + row0 + row >= n) continue;
        out[s.query_pixels[row0 + row] * channels + h * hd + d] =
            from_compute<T>(out_strip[row * l.out_stride + d] * row_scale[row0 + row]);
      }
    } else {
      Acc* lse = stats + (w * p.num_heads + h) * n;
      Acc* delta = stats + p.num_windows * p.num_heads * n + (w * p.num_heads + h) * n;
      if (half == 0 && row_valid) lse[i] = row_max + log_of(row_sum);
      for (int row = 0; row < kTile; ++row) {
        if (q0 + row0 + row >= n) break;  // the same on every lane
        Acc sum = 0;
        const T* grad_row = grad_out + s.query_pixels[row0 + row] * channels + h * hd;
        for (int d = lane; d < hd; d += kWarp) sum += load_as<Acc>(grad_row + d) * out_strip[row * l.out_stride + d];
        sum = warp_sum(sum) * row_scale[row0 + row];
        if (lane == 0) delta[q0 + row0 + row] = sum;
      }
    }
    __syncthreads();  // tables, q and the strips are rewritten for the next item
  }
}

// ---- backward ----------------------------------------------------------------------------------------

// dS for this lane's columns of the warp's rows: P = exp(logits - lse), dS = P * (dP - delta), from the
// strips S (scores) and dP; writes dS (and P when prob_tile) to the tiles' rows, and returns nothing.
// With partial != nullptr also adds dS into the bias-gradient partial rows (first window: stores).
template <typename T>
__device__ void recompute_grad_scores(const WindowAttentionParams& p, const FlashShared<T>& s, const FlashLayout& l,
                                      int64_t w, int h, int q0, int k0, const compute_t<T>* scores,
                                      const compute_t<T>* grad_prob, T* prob_tile, compute_t<T>* partial,
                                      bool first_window) {
  using Acc = compute_t<T>;
  constexpr int kRows = rows_of<T>();
  constexpr int kColumnsPerLane = kRows / 2;
  const int n = p.tokens, warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int row0 = warp * kTile, r = lane / 2, half = lane % 2, i = q0 + row0 + r;
  const bool row_valid = i < n;
  const bool shift_mask = has_shift_mask(p);
  const Acc* bias_row = static_cast<const Acc*>(p.rel_bias) + (static_cast<int64_t>(h) * n + (row_valid ? i : 0)) * n + k0;
  const Acc* mask_row = p.mask == nullptr || !row_valid
                            ? nullptr
                            : static_cast<const Acc*>(p.mask) + ((w % p.mask_windows) * n + i) * n + k0;
  const int query_region = shift_mask && row_valid ? s.query_regions[row0 + r] : 0;
  const Acc lse = s.row_values[row0 + r], delta = s.row_values[kRows + row0 + r];
  Acc* partial_row = partial == nullptr || !row_valid ? nullptr : partial + static_cast<int64_t>(i) * n + k0;
  T* grad_score_row = s.grad_score + (row0 + r) * l.prob_stride;
  T* prob_row = prob_tile == nullptr ? nullptr : prob_tile + (row0 + r) * l.prob_stride;
#pragma unroll 4
  for (int c = 0; c < kColumnsPerLane; ++c) {
    const int j = 2 * c + half;
    const bool valid = row_valid && k0 + j < n;
    Acc prob = 0, grad_score = 0;
    if (valid) {
      prob = exp_of(logit(p, bias_row, mask_row, query_region, shift_mask ? s.key_regions[j] : 0, j,
                          scores[r * l.strip_stride + j]) -
                    lse);
      grad_score = prob * (grad_prob[r * l.strip_stride + j] - delta);
      if (partial_row != nullptr) partial_row[j] = first_window ? grad_score : partial_row[j] + grad_score;
    }
    grad_score_row[j] = from_compute<T>(grad_score);
    if (prob_row != nullptr) prob_row[j] = from_compute<T>(prob);
  }
}

// lse and delta of the query rows q0 .. q0 + kRows - 1 into row_values (block-wide).
template <typename T>
__device__ void load_row_statistics(const WindowAttentionParams& p, const FlashShared<T>& s,
                                    const compute_t<T>* stats, int64_t w, int h, int q0) {
  constexpr int kRows = rows_of<T>();
  const int n = p.tokens;
  const compute_t<T>* lse = stats + (w * p.num_heads + h) * n;
  const compute_t<T>* delta = stats + p.num_windows * p.num_heads * n + (w * p.num_heads + h) * n;
  for (int r = threadIdx.x; r < kRows; r += blockDim.x) {
    s.row_values[r] = q0 + r < n ? lse[q0 + r] : 0;
    s.row_values[kRows + r] = q0 + r < n ? delta[q0 + r] : 0;
  }
}

// dst[pixels[row0 + r] * row_elements + first_channel + d] = factor * strip[r][d] for the warp's rows
// below N (whole warp).
template <typename T>
__device__ void store_strip(T* dst, int64_t row_elements, int64_t first_channel, const compute_t<T>* strip,
                            int stride, const int64_t* pixels, int row0, int first, int n, int hd,
                            compute_t<T> factor) {
  const int lane = threadIdx.x % kWarp;
  for (int e = lane; e < kTile * hd; e += kWarp) {
    const int row = e / hd, d = e - row * hd;
    if (first + row0 + row >= n) continue;
    dst[pixels[row0 + row] * row_elements + first_channel + d] = from_compute<T>(factor * strip[row * stride + d]);
  }
}

// register budget: 128 (bench/static_report.py checks it on sm_90, with no local memory): 60-96 taken
// dq = scale * dS k for the query block of one (window, head).
template <typename T, bool kTensorCores>
__global__ void window_attention_flash_grad_query_kernel(WindowAttentionBackwardParams bp) {
  using Acc = compute_t<T>;
  constexpr int kRows = rows_of<T>();
  const WindowAttentionParams& p = bp.inputs;
  extern __shared__ __align__(128) unsigned char shared_raw[];
  const FlashLayout l = flash_layout<T>(p.head_dim, Pass::kGradQuery);
  FlashShared<T> s(shared_raw, l);
  const T* qkv = static_cast<const T*>(p.qkv);
  const T* grad_out = static_cast<const T*>(bp.grad_out);
  const Acc* stats = static_cast<const Acc*>(bp.softmax_stats);
  const int n = p.tokens, hd = p.head_dim, warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int row0 = warp * kTile;
  const int64_t channels = static_cast<int64_t>(p.num_heads) * hd;
  const int blocks = static_cast<int>(ceil_div(n, kRows));
  const int depth = kTensorCores ? l.padded_head_dim : hd;
  Acc* strip = s.strips + warp * 2 * kTile * l.strip_stride;
  Acc* grad_prob = strip + kTile * l.strip_stride;
  Acc* out_strip = s.out_strips + warp * kTile * l.out_stride;
  const int64_t items = p.num_windows * p.num_heads * blocks;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const int query_block = static_cast<int>(item % blocks);
    const int64_t window_head = item / blocks;
    const int h = static_cast<int>(window_head % p.num_heads);
    const int64_t w = window_head / p.num_heads;
    const int q0 = query_block * kRows;
    fill_tables<T>(p, w, q0, s.query_pixels, s.query_regions);
    load_row_statistics(p, s, stats, w, h, q0);
    for (int e = lane; e < kTile * l.out_stride; e += kWarp) out_strip[e] = 0;
    __syncthreads();
    load_tile(s.q, qkv, s.query_pixels, 3 * channels, h * hd, q0, p, l);
    load_tile(s.grad_out, grad_out, s.query_pixels, channels, h * hd, q0, p, l);
    for (int key_block = 0; key_block < blocks; ++key_block) {
      const int k0 = key_block * kRows;
      fill_tables<T>(p, w, k0, s.key_pixels, s.key_regions);
      __syncthreads();
      load_tile(s.k, qkv, s.key_pixels, 3 * channels, channels + h * hd, k0, p, l);
      load_tile(s.v, qkv, s.key_pixels, 3 * channels, 2 * channels + h * hd, k0, p, l);
      __syncthreads();
      strip_product<T, kTensorCores, wmma::row_major, wmma::col_major>(strip, l.strip_stride, s.q + row0 * l.tile_stride,
                                                                       l.tile_stride, s.k, l.tile_stride, depth, kRows,
                                                                       false);
      strip_product<T, kTensorCores, wmma::row_major, wmma::col_major>(
          grad_prob, l.strip_stride, s.grad_out + row0 * l.tile_stride, l.tile_stride, s.v, l.tile_stride, depth, kRows,
          false);
      __syncwarp();
      recompute_grad_scores<T>(p, s, l, w, h, q0, k0, strip, grad_prob, nullptr, nullptr, false);
      __syncwarp();
      strip_product<T, kTensorCores, wmma::row_major, wmma::row_major>(
          out_strip, l.out_stride, s.grad_score + row0 * l.prob_stride, l.prob_stride, s.k, l.tile_stride, kRows,
          l.padded_head_dim, true);
      __syncthreads();  // k, v and the key tables are rewritten for the next key block
    }
    store_strip(static_cast<T*>(bp.grad_qkv), 3 * channels, h * hd, out_strip, l.out_stride, s.query_pixels, row0, q0,
                n, hd, static_cast<Acc>(p.scale));
    __syncthreads();  // tables, tiles and strips are rewritten for the next item
  }
}

// register budget: 128 (bench/static_report.py checks it on sm_90, with no local memory): 60-96 taken
// dk = scale * dS^T q and dv = P^T dO for the key block of one head, window by window over a group of
// windows; dS summed over the group into its bias-gradient partial (groups, nH, N, N).
template <typename T, bool kTensorCores>
__global__ void window_attention_flash_grad_key_value_kernel(WindowAttentionBackwardParams bp, int64_t groups,
                                                             int64_t windows_per_group) {
  using Acc = compute_t<T>;
  constexpr int kRows = rows_of<T>();
  const WindowAttentionParams& p = bp.inputs;
  extern __shared__ __align__(128) unsigned char shared_raw[];
  const FlashLayout l = flash_layout<T>(p.head_dim, Pass::kGradKeyValue);
  FlashShared<T> s(shared_raw, l);
  const T* qkv = static_cast<const T*>(p.qkv);
  const T* grad_out = static_cast<const T*>(bp.grad_out);
  T* grad_qkv = static_cast<T*>(bp.grad_qkv);
  const Acc* stats = static_cast<const Acc*>(bp.softmax_stats);
  const int n = p.tokens, hd = p.head_dim, warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int row0 = warp * kTile;
  const int64_t channels = static_cast<int64_t>(p.num_heads) * hd;
  const int blocks = static_cast<int>(ceil_div(n, kRows));
  const int depth = kTensorCores ? l.padded_head_dim : hd;
  Acc* strip = s.strips + warp * 2 * kTile * l.strip_stride;
  Acc* grad_prob = strip + kTile * l.strip_stride;
  Acc* grad_key = s.out_strips + warp * 2 * kTile * l.out_stride;
  Acc* grad_value = grad_key + kTile * l.out_stride;
  const int64_t items = groups * p.num_heads * blocks;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const int key_block = static_cast<int>(item % blocks);
    const int64_t group_head = item / blocks;
    const int h = static_cast<int>(group_head % p.num_heads);
    const int64_t group = group_head / p.num_heads;
    const int k0 = key_block * kRows;
    const int64_t first_window = group * windows_per_group;
    const int64_t end_window =
        first_window + windows_per_group < p.num_windows ? first_window + windows_per_group : p.num_windows;
    Acc* partial = static_cast<Acc*>(bp.grad_bias_partials) + (group * p.num_heads + h) * n * n;
    for (int64_t w = first_window; w < end_window; ++w) {
      fill_tables<T>(p, w, k0, s.key_pixels, s.key_regions);
      for (int e = lane; e < 2 * kTile * l.out_stride; e += kWarp) grad_key[e] = 0;
      __syncthreads();
      load_tile(s.k, qkv, s.key_pixels, 3 * channels, channels + h * hd, k0, p, l);
      load_tile(s.v, qkv, s.key_pixels, 3 * channels, 2 * channels + h * hd, k0, p, l);
      for (int query_block = 0; query_block < blocks; ++query_block) {
        const int q0 = query_block * kRows;
        fill_tables<T>(p, w, q0, s.query_pixels, s.query_regions);
        load_row_statistics(p, s, stats, w, h, q0);
        __syncthreads();
        load_tile(s.q, qkv, s.query_pixels, 3 * channels, h * hd, q0, p, l);
        load_tile(s.grad_out, grad_out, s.query_pixels, channels, h * hd, q0, p, l);
        __syncthreads();
        // Row pass (this warp's 16 query rows): S, dP -> P, dS tiles and the bias-gradient partial.
        strip_product<T, kTensorCores, wmma::row_major, wmma::col_major>(
            strip, l.strip_stride, s.q + row0 * l.tile_stride, l.tile_stride, s.k, l.tile_stride, depth, kRows, false);
        strip_product<T, kTensorCores, wmma::row_major, wmma::col_major>(
            grad_prob, l.strip_stride, s.grad_out + row0 * l.tile_stride, l.tile_stride, s.v, l.tile_stride, depth,
            kRows, false);
        __syncwarp();
        recompute_grad_scores<T>(p, s, l, w, h, q0, k0, strip, grad_prob, s.prob, partial, w == first_window);
        __syncthreads();  // every row of P and dS is written
        // Column pass (this warp's 16 key rows): dk += dS^T q, dv += P^T dO.
        strip_product<T, kTensorCores, wmma::col_major, wmma::row_major>(grad_key, l.out_stride, s.grad_score + row0,
                                                                         l.prob_stride, s.q, l.tile_stride, kRows,
                                                                         l.padded_head_dim, true);
        strip_product<T, kTensorCores, wmma::col_major, wmma::row_major>(grad_value, l.out_stride, s.prob + row0,
                                                                         l.prob_stride, s.grad_out, l.tile_stride,
                                                                         kRows, l.padded_head_dim, true);
        __syncthreads();  // q, dO, P, dS and the query tables are rewritten for the next query block
      }
      store_strip(grad_qkv, 3 * channels, channels + h * hd, grad_key, l.out_stride, s.key_pixels, row0, k0, n, hd,
                  static_cast<Acc>(p.scale));
      store_strip(grad_qkv, 3 * channels, 2 * channels + h * hd, grad_value, l.out_stride, s.key_pixels, row0, k0, n,
                  hd, static_cast<Acc>(1));
      __syncthreads();  // key tables, k, v and the strips are rewritten for the next window
    }
  }
}

// register budget: 32 (bench/static_report.py checks it on sm_90, with no local memory)
// grad_bias[e] = sum over groups g, in order, of partials[g][e].
template <typename Acc>
__global__ void flash_sum_bias_partials_kernel(const Acc* __restrict__ partials, Acc* __restrict__ grad_bias,
                                               int64_t groups, int64_t size) {
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < size; e += int64_t{gridDim.x} * blockDim.x) {
    Acc sum = 0;
    for (int64_t g = 0; g < groups; ++g) sum += partials[g * size + e];
    grad_bias[e] = sum;
  }
}

bool sizes_supported(const WindowAttentionParams& p) {
  return p.tokens >= 1 && p.tokens <= kCudaAttentionMaxTokens && p.head_dim >= 1 &&
         p.head_dim <= kCudaAttentionMaxHeadDim && p.num_heads >= 1 && (p.mask == nullptr || p.mask_windows >= 1);
}

int64_t windows_per_group(const WindowAttentionParams& p) {
  const int64_t per_head = static_cast<int64_t>(p.num_heads) * p.tokens * p.tokens;
  int64_t groups = ceil_div(p.num_windows, kMinWindowsPerGroup);
  if (groups > kMaxGroups) groups = kMaxGroups;
  const int64_t by_memory = kMaxPartialElements / per_head;
  if (groups > by_memory) groups = by_memory;
  if (groups < 1) groups = 1;
  return ceil_div(p.num_windows, groups);
}

// Calls fn(T{}, std::integral_constant<bool, tensor cores>{}) for the variant that runs `p`.
template <typename Fn>
cudaError_t dispatch_variant(const WindowAttentionParams& p, Fn&& fn) {
  switch (p.dtype) {
    case ElementType::kFloat16:
      return fn(__half{}, std::true_type{});
    case ElementType::kBFloat16:
      return fn(__nv_bfloat16{}, std::true_type{});
    case ElementType::kFloat32:
      return p.allow_tf32 ? fn(float{}, std::true_type{}) : fn(float{}, std::false_type{});
    case ElementType::kFloat64:
      return fn(double{}, std::false_type{});
  }
  return cudaErrorInvalidValue;
}

size_t layout_bytes(const WindowAttentionParams& p, Pass pass) {
  switch (p.dtype) {
    case ElementType::kFloat16:
      return flash_layout<__half>(p.head_dim, pass).total;
    case ElementType::kBFloat16:
      return flash_layout<__nv_bfloat16>(p.head_dim, pass).total;
    case ElementType::kFloat32:
      return flash_layout<float>(p.head_dim, pass).total;
    case ElementType::kFloat64:
      return flash_layout<double>(p.head_dim, pass).total;
  }
  return 0;
}

template <typename Kernel, typename... Args>
cudaError_t launch_items(Kernel kernel, int64_t items, int threads, size_t bytes, cudaStream_t stream, Args&&... args) {
  const cudaError_t status = set_max_dynamic_shared_bytes(kernel, bytes);
  if (status != cudaSuccess) return status;
  return launch_kernel(kernel, dim3(grid_stride_blocks(items, 1)), dim3(threads), bytes, stream,
                       std::forward<Args>(args)...);
}

}  // namespace

bool window_attention_uses_flash(const WindowAttentionParams& p) {
  return p.tokens > kCudaOnChipAttentionMaxTokens || p.head_dim > kCudaOnChipAttentionMaxHeadDim;
}

int64_t window_attention_flash_backward_groups(const WindowAttentionParams& p) {
  return p.num_windows == 0 ? 0 : ceil_div(p.num_windows, windows_per_group(p));
}

size_t window_attention_flash_shared_bytes(const WindowAttentionParams& p, bool backward) {
  if (!backward) return layout_bytes(p, Pass::kForward);
  const size_t query = layout_bytes(p, Pass::kGradQuery), key_value = layout_bytes(p, Pass::kGradKeyValue);
  return query > key_value ? query : key_value;
}

cudaError_t launch_window_attention_flash_forward(const WindowAttentionParams& p, cudaStream_t stream) {
  if (p.num_windows == 0) return cudaSuccess;
  if (!sizes_supported(p)) return cudaErrorInvalidValue;
  return dispatch_variant(p, [&](auto tag, auto tensor_cores) {
    using T = decltype(tag);
    constexpr int kRows = rows_of<T>();
    const int64_t items = p.num_windows * p.num_heads * ceil_div(p.tokens, kRows);
    return launch_items(window_attention_flash_forward_kernel<T, decltype(tensor_cores)::value>, items,
                        FlashWarps<T>::value * kWarp, layout_bytes(p, Pass::kForward), stream, p,
                        static_cast<const T*>(nullptr), static_cast<compute_t<T>*>(nullptr));
  });
}

cudaError_t launch_window_attention_flash_backward(const WindowAttentionBackwardParams& bp, cudaStream_t stream) {
  const WindowAttentionParams& p = bp.inputs;
  if (p.num_windows == 0) return cudaSuccess;
  if (!sizes_supported(p) || bp.softmax_stats == nullptr) return cudaErrorInvalidValue;
  return dispatch_variant(p, [&](auto tag, auto tensor_cores) {
    using T = decltype(tag);
    using Acc = compute_t<T>;
    constexpr bool kTensorCores = decltype(tensor_cores)::value;
    constexpr int kRows = rows_of<T>();
    constexpr int kThreads = FlashWarps<T>::value * kWarp;
    const int64_t blocks = ceil_div(p.tokens, kRows);
    // 1. lse and delta per row (the forward recomputed; out is not written).
    cudaError_t status =
        launch_items(window_attention_flash_forward_kernel<T, kTensorCores>, p.num_windows * p.num_heads * blocks,
                     kThreads, layout_bytes(p, Pass::kForward), stream, p, static_cast<const T*>(bp.grad_out),
                     static_cast<Acc*>(bp.softmax_stats));
    if (status != cudaSuccess) return status;
    // 2. dq.
    status = launch_items(window_attention_flash_grad_query_kernel<T, kTensorCores>,
                          p.num_windows * p.num_heads * blocks, kThreads, layout_bytes(p, Pass::kGradQuery), stream, bp);
    if (status != cudaSuccess) return status;
    // 3. dk, dv and the bias-gradient partials.
    const int64_t per_group = windows_per_group(p);
    const int64_t groups = ceil_div(p.num_windows, per_group);
    status = launch_items(window_attention_flash_grad_key_value_kernel<T, kTensorCores>, groups * p.num_heads * blocks,
                          kThreads, layout_bytes(p, Pass::kGradKeyValue), stream, bp, groups, per_group);
    if (status != cudaSuccess) return status;
    // 4. grad_bias.
    const int64_t size = static_cast<int64_t>(p.num_heads) * p.tokens * p.tokens;
    constexpr int kSumThreads = 256;
    return launch_kernel(flash_sum_bias_partials_kernel<Acc>, grid_stride_blocks(size, kSumThreads), kSumThreads, 0,
                         stream, static_cast<const Acc*>(bp.grad_bias_partials), static_cast<Acc*>(bp.grad_bias),
                         groups, size);
  });
}

}  // namespace cuda
}  // namespace swinir_kernels
