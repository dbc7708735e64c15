// Fused window attention on tensor cores (WMMA), forward and backward: fp16 and bf16 (m16n16k16), and
// fp32 as TF32 (m16n16k8) when the user allows TF32. Softmax, accumulators and the bias gradient in fp32.
//
// Work unit ("item"): one head h and a group of consecutive windows. A block of 4 warps stages the head's
// N x N relative-position bias (fp32) in shared memory once per item and walks the group's windows.
// Tokens are padded to 64 (one 16-row strip per warp) and the head dim to a multiple of 16, with zeros
// that no load overwrites. Per window (q, k, v, dO: the head's (64, hd) tiles in the storage dtype):
//   forward   S = q k^T, per warp its 16 query rows x 64 keys -> fp32 strip; each row's softmax of
//             scale * S + bias + mask (shift mask from token regions; padded keys get probability 0)
//             -> P tile; out = P v -> fp32 strip -> global.
//   backward  S and dP = dO v^T per warp; dS = P * (dP - rowsum(P * dP)); dBias += dS (fp32, each
//             element owned by one thread); dq = scale * dS k; after a block barrier, per warp 16 key
//             rows: dk = scale * dS^T q, dv = P^T dO.
// Only load_matrix_sync, store_matrix_sync, mma_sync, fill_fragment and an element-wise TF32 rounding
// touch fragments, so nothing here depends on how a fragment's elements map to lanes.
//
// Global memory: a token's head slice (hd channels at h*hd of q, k, v or dO) is read as the aligned
// chunks that cover it: 16 bytes when every pointer and the channel count allow it, else 8, else one
// element (chosen at launch). A chunk never leaves its pixel row since the row length is a multiple of
// the chunk, so the extra elements it carries (the neighbouring heads') are in bounds and dropped.
// Stores write whole chunks inside the slice and single elements at its edges. Loads overlap compute:
// the next window's chunks go into registers (kPrefetchChunks per thread) before the current window is
// computed and into shared memory after it; chunks beyond that capacity are loaded after the compute.
//
// Bias gradient, deterministic without a second kernel: an item adds dS over its windows in window
// order, writes the sum as its group's partial, and the block that completes a head's last item (an
// atomic ticket after __threadfence) adds that head's partials in group order into grad_bias.
#include <mma.h>

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <type_traits>

#include "element_io.cuh"
#include "launch.cuh"
#include "window_attention_kernel.h"
#include "window_geometry.cuh"

namespace swinir_kernels {
namespace cuda {
namespace {

namespace wmma = nvcuda::wmma;

constexpr int kWarp = 32;
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * kWarp;
// No __launch_bounds__(kThreads): with it, ptxas (CUDA 13, sm_90) aims at 3-4 blocks per SM by capping
// registers at 128 or 168 and spills; without it these kernels take 127-255 registers and never spill.
constexpr int kTile = 16;                        // wmma M and N: one strip of rows per warp
constexpr int kPaddedTokens = kWarps * kTile;    // N <= 64 padded to 64
static_assert(kPaddedTokens == kCudaOnChipAttentionMaxTokens, "one 16-row strip per warp must cover the largest window");
constexpr int kStripStride = kPaddedTokens + 4;  // fp32 strips: rows stay 16-byte aligned, banks staggered
// Softmax: two lanes per row of a warp's strip, lane 2r + h taking the columns j = 2c + h.
constexpr int kColumnsPerLane = kPaddedTokens / 2;
constexpr int kBiasStride = kPaddedTokens + 4;  // fp32 [64][68] bias and bias-gradient tiles: 2-way bank conflicts
// 16 windows per forward item: the bias is staged once per 16 windows, and SwinIR-M's 1,024 windows x 6 heads
// make 384 blocks, one wave of three resident blocks on each of 132 SMs (H100, H200).
constexpr int kForwardWindowsPerItem = 16;
// Backward groups per head: at most kMaxBackwardGroups, of at least kMinBackwardWindowsPerGroup windows; a
// function of the window count only, so the summation order, and the bits of grad_bias, do not depend on the
// GPU. 40 bounds what the last block of a head adds up alone (40 partials of 16 KB: a tail of about 6 us at
// one SM's L2 bandwidth) and makes SwinIR-M's backward 240 blocks, one wave of two resident blocks per SM.
constexpr int kMaxBackwardGroups = 40;
constexpr int kMinBackwardWindowsPerGroup = 8;
// The last block's sum: each thread holds its kSumElements elements' sums and loads kSumGroupsAhead groups'
// values before adding them in group order (the sum is bound by load latency, not by the adds).
constexpr int kSumElements = kPaddedTokens * kPaddedTokens / kThreads;
constexpr int kSumGroupsAhead = 2;
constexpr int kPrefetchChunks = 8;
constexpr float kShiftMaskValue = -100.0f;  // the official additive mask (not -inf)
constexpr size_t kSharedAlign = 128;        // wmma needs 32-byte aligned tile pointers

__host__ __device__ inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

__host__ __device__ inline int64_t backward_windows_per_group(int64_t num_windows) {
  const int64_t groups = ceil_div(num_windows, kMinBackwardWindowsPerGroup);
  return ceil_div(num_windows, groups < kMaxBackwardGroups ? groups : kMaxBackwardGroups);
}

__host__ __device__ inline int64_t backward_groups(int64_t num_windows) {
  return ceil_div(num_windows, backward_windows_per_group(num_windows));
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
  // TF32 operands are fp32 values rounded to TF32 (the same operation on every element).
  template <typename Fragment>
  __device__ static void round(Fragment& fragment) {
    for (int e = 0; e < fragment.num_elements; ++e) fragment.x[e] = wmma::__float_to_tf32(fragment.x[e]);
  }
};

template <typename Layout>
__host__ __device__ constexpr bool is_row_major() {
  return std::is_same<Layout, wmma::row_major>::value;
}

// strip[0:16, 0:columns] = A (16 x depth) * B (depth x columns), fp32, row stride kStripStride. A is
// row-major (a[m * lda + k]) or column-major (a[k * lda + m], i.e. the transpose of a row-major tile);
// B likewise (b[k * ldb + n] or b[n * ldb + k]). Called by a whole warp. Depth steps outermost, with one
// accumulator per 16-column tile (columns <= kPaddedTokens): each A fragment is loaded from shared memory
// once, not once per column tile (a third less shared-memory traffic for S = q k^T at head_dim 30).
template <typename T, typename LayoutA, typename LayoutB>
__device__ void multiply_into_strip(float* strip, const T* a, int lda, const T* b, int ldb, int depth, int columns) {
  using M = Mma<T>;
  constexpr int kMaxColumnTiles = kPaddedTokens / kTile;
  const int a_depth_step = is_row_major<LayoutA>() ? M::kDepth : M::kDepth * lda;
  const int b_depth_step = is_row_major<LayoutB>() ? M::kDepth * ldb : M::kDepth;
  const int b_column_step = is_row_major<LayoutB>() ? kTile : kTile * ldb;
  const int column_tiles = columns / kTile;
  typename M::Accumulator accumulators[kMaxColumnTiles];
#pragma unroll
  for (int n = 0; n < kMaxColumnTiles; ++n) wmma::fill_fragment(accumulators[n], 0.0f);
#pragma unroll 1
  for (int k = 0; k < depth / M::kDepth; ++k) {
    typename M::template Operand<wmma::matrix_a, LayoutA> a_fragment;
    wmma::load_matrix_sync(a_fragment, a + k * a_depth_step, lda);
    M::round(a_fragment);
#pragma unroll
    for (int n = 0; n < kMaxColumnTiles; ++n) {
      if (n >= column_tiles) break;
      typename M::template Operand<wmma::matrix_b, LayoutB> b_fragment;
      wmma::load_matrix_sync(b_fragment, b + n * b_column_step + k * b_depth_step, ldb);
      M::round(b_fragment);
      wmma::mma_sync(accumulators[n], a_fragment, b_fragment, accumulators[n]);
    }
  }
#pragma unroll
  for (int n = 0; n < kMaxColumnTiles; ++n) {
    if (n >= column_tiles) break;
    wmma::store_matrix_sync(strip + n * kTile, accumulators[n], kStripStride, wmma::mem_row_major);
  }
}

// Byte offsets of a block's shared memory; the same on the host (launch size) and the device.
struct SharedLayout {
  int padded_head_dim;
  int tile_stride;  // elements per row of the (64, padded_head_dim) q, k, v, dO tiles
  int prob_stride;  // elements per row of the (64, 64) P and dS tiles
  size_t pixels, regions;  // [2][64] token tables: the current and the next window
  size_t bias, grad_bias;  // [64][64] fp32
  size_t tiles, prob, grad_score, strips, total;
};

struct SharedAllocator {
  size_t end = 0;
  __host__ __device__ size_t take(size_t bytes) {
    const size_t at = end;
    end = (end + bytes + kSharedAlign - 1) / kSharedAlign * kSharedAlign;
    return at;
  }
};

__host__ __device__ inline SharedLayout shared_layout(int head_dim, int element_bytes, bool backward) {
  SharedLayout l{};
  l.padded_head_dim = static_cast<int>(ceil_div(head_dim, kTile)) * kTile;
  const int row_padding = 16 / element_bytes;  // 16 bytes: a multiple of wmma's ldm unit, staggers banks
  l.tile_stride = l.padded_head_dim + row_padding;
  l.prob_stride = kPaddedTokens + row_padding;
  const size_t tile = static_cast<size_t>(kPaddedTokens) * l.tile_stride * element_bytes;
  const size_t prob = static_cast<size_t>(kPaddedTokens) * l.prob_stride * element_bytes;
  const size_t strip = static_cast<size_t>(kTile) * kStripStride * sizeof(float);
  SharedAllocator shared;
  l.pixels = shared.take(2 * kPaddedTokens * sizeof(int64_t));
  l.regions = shared.take(2 * kPaddedTokens * sizeof(int));
  l.bias = shared.take(kPaddedTokens * kBiasStride * sizeof(float));
  l.grad_bias = backward ? shared.take(kPaddedTokens * kBiasStride * sizeof(float)) : 0;
  l.tiles = shared.take((backward ? 4 : 3) * tile);
  l.prob = shared.take(prob);
  l.grad_score = backward ? shared.take(prob) : 0;
  l.strips = shared.take((backward ? 2 : 1) * kWarps * strip);
  l.total = shared.end;
  return l;
}

// Typed views of the shared memory.
template <typename T>
struct SharedTiles {
  int64_t* pixel_tables;  // [2][64]: buffer b at pixel_tables + 64 b (no arrays of pointers: those live in
  int* region_tables;     // local memory when indexed at run time)
  float* bias;
  float* grad_bias;
  T *q, *k, *v, *grad_out;  // consecutive tiles: the loader addresses them by slice
  T* prob;
  T* grad_score;
  float* strips;  // per warp: forward one strip, backward two

  __device__ SharedTiles(unsigned char* raw, const SharedLayout& l, bool backward) {
    pixel_tables = reinterpret_cast<int64_t*>(raw + l.pixels);
    region_tables = reinterpret_cast<int*>(raw + l.regions);
    bias = reinterpret_cast<float*>(raw + l.bias);
    grad_bias = backward ? reinterpret_cast<float*>(raw + l.grad_bias) : nullptr;
    q = reinterpret_cast<T*>(raw + l.tiles);
    k = q + kPaddedTokens * l.tile_stride;
    v = k + kPaddedTokens * l.tile_stride;
    grad_out = backward ? v + kPaddedTokens * l.tile_stride : nullptr;
    prob = reinterpret_cast<T*>(raw + l.prob);
    grad_score = backward ? reinterpret_cast<T*>(raw + l.grad_score) : nullptr;
    strips = reinterpret_cast<float*>(raw + l.strips);
  }
  __device__ int64_t* pixels(int buffer) const { return pixel_tables + buffer * kPaddedTokens; }
  __device__ int* regions(int buffer) const { return region_tables + buffer * kPaddedTokens; }
};

template <int kBytes>
struct VectorBits;
template <>
struct VectorBits<16> {
  using type = uint4;
};
template <>
struct VectorBits<8> {
  using type = uint2;
};
template <>
struct VectorBits<4> {
  using type = unsigned int;
};
template <>
struct VectorBits<2> {
  using type = unsigned short;
};

// kVectorBytes of `values` as one Bits value, assembled from 32-bit words: copying the values into a
// Bits with memcpy lets the compiler split the following vector store into element stores.
template <typename T, int kVectorBytes>
__device__ inline typename VectorBits<kVectorBytes>::type pack_bits(const T* values) {
  typename VectorBits<kVectorBytes>::type bits;
  if constexpr (kVectorBytes < 4) {
    memcpy(&bits, values, sizeof(bits));
  } else {
    unsigned int words[kVectorBytes / 4];
#pragma unroll
    for (int w = 0; w < kVectorBytes / 4; ++w) {
      if constexpr (sizeof(T) == 4) {
        memcpy(&words[w], &values[w], 4);
      } else {
        unsigned short low, high;
        memcpy(&low, &values[2 * w], 2);
        memcpy(&high, &values[2 * w + 1], 2);
        words[w] = low | (static_cast<unsigned int>(high) << 16);
      }
    }
    if constexpr (kVectorBytes == 16) bits = {words[0], words[1], words[2], words[3]};
    if constexpr (kVectorBytes == 8) bits = {words[0], words[1]};
    if constexpr (kVectorBytes == 4) bits = words[0];
  }
  return bits;
}

template <typename T>
__device__ inline T from_float(float value) {
  T result;
  store_from(&result, value);
  return result;
}

// Copies the head slices of one window from global to the shared tiles: slices 0, 1, 2 are q, k, v
// (rows of 3C channels in qkv), slice 3 is dO (rows of C channels in grad_out, backward only). Work item
// (slice, token, chunk), chunk counting the slice's kVectorBytes-aligned chunks from its first.
template <typename T, int kVectorBytes>
class HeadSliceLoader {
 public:
  static constexpr int kElements = kVectorBytes / static_cast<int>(sizeof(T));
  using Bits = typename VectorBits<kVectorBytes>::type;

  __device__ HeadSliceLoader(const WindowAttentionParams& p, const T* grad_out, int slices)
      : qkv_(static_cast<const T*>(p.qkv)),
        grad_out_(grad_out),
        channels_(static_cast<int64_t>(p.num_heads) * p.head_dim),
        head_dim_(p.head_dim),
        tokens_(p.tokens),
        chunks_per_token_((p.head_dim + kElements - 2) / kElements + 1),
        items_(slices * p.tokens * chunks_per_token_) {}

  // Decodes this thread's prefetch items for head h (they are the same for every window of the item).
  __device__ void plan(int h) {
    head_first_channel_ = static_cast<int64_t>(h) * head_dim_;
#pragma unroll
    for (int slot = 0; slot < kPrefetchChunks; ++slot) {
      const int item = threadIdx.x + slot * kThreads;
      int slice, token, chunk;
      plan_[slot] = item < items_ && locate(item, slice, token, chunk) ? (slice << 16) | (token << 8) | chunk : -1;
    }
  }

  // Issues the prefetch loads of the window whose token pixels are `pixels`.
  __device__ void issue(const int64_t* pixels) {
#pragma unroll
    for (int slot = 0; slot < kPrefetchChunks; ++slot) {
      if (plan_[slot] < 0) continue;
      const int slice = plan_[slot] >> 16, token = (plan_[slot] >> 8) & 0xff, chunk = plan_[slot] & 0xff;
      staged_[slot] = load_chunk(slice, pixels[token], chunk);
    }
  }

  // Stores the prefetched chunks into the tiles, then loads and stores the items beyond the prefetch.
  __device__ void commit(const int64_t* pixels, T* tiles, int tile_stride) {
#pragma unroll
    for (int slot = 0; slot < kPrefetchChunks; ++slot) {
      if (plan_[slot] < 0) continue;
      const int slice = plan_[slot] >> 16, token = (plan_[slot] >> 8) & 0xff, chunk = plan_[slot] & 0xff;
      scatter(staged_[slot], slice, token, chunk, tiles, tile_stride);
    }
    for (int item = threadIdx.x + kPrefetchChunks * kThreads; item < items_; item += kThreads) {
      int slice, token, chunk;
      if (locate(item, slice, token, chunk))
        scatter(load_chunk(slice, pixels[token], chunk), slice, token, chunk, tiles, tile_stride);
    }
  }

 private:
  __device__ int64_t row_elements(int slice) const { return slice < 3 ? 3 * channels_ : channels_; }
  __device__ int64_t first_channel(int slice) const { return (slice < 3 ? slice * channels_ : 0) + head_first_channel_; }
  __device__ int64_t chunk_start(int slice, int chunk) const {
    return (first_channel(slice) / kElements + chunk) * kElements;
  }

  // (slice, token, chunk) of `item`; false where the chunk lies past the end of the slice.
  __device__ bool locate(int item, int& slice, int& token, int& chunk) const {
    chunk = item % chunks_per_token_;
    const int slice_token = item / chunks_per_token_;
    token = slice_token % tokens_;
    slice = slice_token / tokens_;
    return chunk_start(slice, chunk) < first_channel(slice) + head_dim_;
  }

  __device__ Bits load_chunk(int slice, int64_t pixel, int chunk) const {
    const T* source = slice < 3 ? qkv_ : grad_out_;
    return *reinterpret_cast<const Bits*>(source + pixel * row_elements(slice) + chunk_start(slice, chunk));
  }

  __device__ void scatter(const Bits& bits, int slice, int token, int chunk, T* tiles, int tile_stride) const {
    T values[kElements];
    memcpy(values, &bits, sizeof(bits));
    const int offset = static_cast<int>(chunk_start(slice, chunk) - first_channel(slice));
    T* row = tiles + (slice * kPaddedTokens + token) * tile_stride;
#pragma unroll
    for (int e = 0; e < kElements; ++e) {
      const int d = offset + e;
      if (d >= 0 && d < head_dim_) row[d] = values[e];
    }
  }

  const T* qkv_;
  const T* grad_out_;
  int64_t channels_;
  int head_dim_, tokens_, chunks_per_token_, items_;
  int64_t head_first_channel_ = 0;
  int plan_[kPrefetchChunks];
  Bits staged_[kPrefetchChunks];
};

// dst[pixels[i] * row_elements + first_channel + d] = factor * strip[i - row0][d] for the warp's rows
// i = row0 .. row0 + 15 below `tokens` and d < head_dim: the aligned chunks inside the slice as vector
// stores, then the elements before the first and after the last of them one by one (two loops: with one
// loop choosing per chunk, the compiler merged both kinds into element stores). Called by a whole warp.
template <typename T, int kVectorBytes>
__device__ void store_head_rows(T* dst, int64_t row_elements, int64_t first_channel, const float* strip, int row0,
                                const int64_t* pixels, int tokens, int head_dim, float factor) {
  constexpr int kElements = kVectorBytes / static_cast<int>(sizeof(T));
  using Bits = typename VectorBits<kVectorBytes>::type;
  const int lane = threadIdx.x % kWarp;
  const int64_t first_whole = (first_channel + kElements - 1) / kElements;  // in chunks
  const int64_t end_whole = (first_channel + head_dim) / kElements;
  const int whole = end_whole > first_whole ? static_cast<int>(end_whole - first_whole) : 0;
#pragma unroll 1
  for (int item = lane; item < kTile * whole; item += kWarp) {
    const int r = item / whole, chunk = item - r * whole;
    if (row0 + r >= tokens) continue;
    const int64_t start = (first_whole + chunk) * kElements;
    const float* values = strip + r * kStripStride + (start - first_channel);
    T converted[kElements];
#pragma unroll
    for (int e = 0; e < kElements; ++e) converted[e] = from_float<T>(factor * values[e]);
    // __stcg: one vector store (an assignment through Bits* was split into 32-bit stores by nvcc 13); the
    // output is not read again by this kernel, so it is cached at L2 only.
    __stcg(reinterpret_cast<Bits*>(dst + pixels[row0 + r] * row_elements + start), pack_bits<T, kVectorBytes>(converted));
  }
  // Edge elements: d < leading and d >= trailing (all of them where no whole chunk fits).
  const int leading = whole > 0 ? static_cast<int>(first_whole * kElements - first_channel) : head_dim;
  const int trailing = whole > 0 ? static_cast<int>(end_whole * kElements - first_channel) : head_dim;
  const int edge = leading + head_dim - trailing;
#pragma unroll 1
  for (int item = lane; item < kTile * edge; item += kWarp) {
    const int r = item / edge, e = item - r * edge;
    if (row0 + r >= tokens) continue;
    const int d = e < leading ? e : trailing + (e - leading);
    store_from(dst + pixels[row0 + r] * row_elements + first_channel + d, factor * strip[r * kStripStride + d]);
  }
}

// Token tables of window w into buffer `buffer` (threads t < N; the caller synchronises).
template <typename T>
__device__ void fill_token_tables(const WindowAttentionParams& p, SharedTiles<T>& s, int buffer, int64_t w) {
  const bool shift_mask = has_shift_mask(p);
  for (int t = threadIdx.x; t < p.tokens; t += blockDim.x) {
    s.pixels(buffer)[t] = token_pixel(p, w, t);
    s.regions(buffer)[t] = shift_mask ? token_region(p, w, t) : 0;
  }
}

// Stages head h's bias (and zeroes the bias-gradient sum in the backward), block-wide.
template <typename T>
__device__ void stage_bias(const WindowAttentionParams& p, SharedTiles<T>& s, int h) {
  const int n = p.tokens;
  const float* bias = static_cast<const float*>(p.rel_bias) + static_cast<int64_t>(h) * n * n;
  for (int e = threadIdx.x; e < n * n; e += blockDim.x) {
    const int i = e / n, j = e - i * n;
    s.bias[i * kBiasStride + j] = bias[e];
    if (s.grad_bias != nullptr) s.grad_bias[i * kBiasStride + j] = 0.0f;
  }
}

// Zeroes the q, k, v (dO) and P (dS) tiles, which lie between l.tiles and l.strips, once: their padding
// (rows >= N, columns >= hd) is never written again.
__device__ inline void zero_tiles(const SharedLayout& l, unsigned char* raw) {
  for (size_t offset = l.tiles + threadIdx.x * sizeof(float); offset < l.strips; offset += blockDim.x * sizeof(float))
    *reinterpret_cast<float*>(raw + offset) = 0.0f;
}

// The softmax rows of a warp's strip of S (rows row0 .. row0 + 15 of window w), two lanes per row:
// lane 2r + h gets prob[c] = P[row0 + r, 2c + h] = softmax_j(scale * S + bias + masks) in row row0 + r,
// zero for padded rows (>= N) and columns. Returns whether the lane's row is a real one. Whole warp.
template <typename T>
__device__ bool probability_rows(const WindowAttentionParams& p, const SharedTiles<T>& s, int tables, int64_t w,
                                 int row0, const float* scores, float (&prob)[kColumnsPerLane]) {
  const int lane = threadIdx.x % kWarp, r = lane / 2, half = lane % 2, i = row0 + r, n = p.tokens;
  const bool row_valid = i < n;
  const float* mask_row = p.mask == nullptr || !row_valid
                              ? nullptr
                              : static_cast<const float*>(p.mask) + ((w % p.mask_windows) * n + i) * n;
  const bool shift_mask = has_shift_mask(p) && row_valid;
  const int region = shift_mask ? s.regions(tables)[i] : 0;
  const float scale = static_cast<float>(p.scale);
  float row_max = -INFINITY;
#pragma unroll
  for (int c = 0; c < kColumnsPerLane; ++c) {
    const int j = 2 * c + half;
    prob[c] = -INFINITY;  // logits first
    if (!row_valid || j >= n) continue;
    float value = scale * scores[r * kStripStride + j] + s.bias[i * kBiasStride + j];
    if (mask_row != nullptr) value += mask_row[j];
    if (shift_mask && s.regions(tables)[j] != region) value += kShiftMaskValue;
    prob[c] = value;
    row_max = fmaxf(row_max, value);
  }
  row_max = fmaxf(row_max, __shfl_xor_sync(0xffffffffu, row_max, 1));
  float row_sum = 0.0f;
#pragma unroll
  for (int c = 0; c < kColumnsPerLane; ++c) {
    prob[c] = row_valid && 2 * c + half < n ? __expf(prob[c] - row_max) : 0.0f;
    row_sum += prob[c];
  }
  row_sum += __shfl_xor_sync(0xffffffffu, row_sum, 1);
  const float inverse_sum = row_valid ? 1.0f / row_sum : 0.0f;
#pragma unroll
  for (int c = 0; c < kColumnsPerLane; ++c) prob[c] *= inverse_sum;
  return row_valid;
}

// The window walk shared by both kernels: token tables and tiles of window w are ready when
// compute(w, tables) runs; the next window's loads are in flight during it.
template <typename T, int kVectorBytes, typename Compute>
__device__ void walk_windows(const WindowAttentionParams& p, SharedTiles<T>& s, const SharedLayout& l,
                             HeadSliceLoader<T, kVectorBytes>& loader, int64_t first_window, int64_t end_window,
                             Compute&& compute) {
  fill_token_tables(p, s, 0, first_window);
  __syncthreads();
  loader.issue(s.pixels(0));
  loader.commit(s.pixels(0), s.q, l.tile_stride);
  if (first_window + 1 < end_window) fill_token_tables(p, s, 1, first_window + 1);
  __syncthreads();
  int tables = 0;
  for (int64_t w = first_window; w < end_window; ++w) {
    const bool has_next = w + 1 < end_window;
    if (has_next) loader.issue(s.pixels(tables ^ 1));
    compute(w, tables);
    __syncthreads();  // the tiles and this window's tables are free
    if (has_next) {
      loader.commit(s.pixels(tables ^ 1), s.q, l.tile_stride);
      if (w + 2 < end_window) fill_token_tables(p, s, tables, w + 2);
    }
    __syncthreads();
    tables ^= 1;
  }
}

// register budget: 255 (bench/static_report.py checks it on sm_90, with no local memory): at up to 255
// registers two 4-warp blocks still fit an SM's registers; shared memory bounds the blocks per SM.
template <typename T, int kVectorBytes>
__global__ void window_attention_tc_forward_kernel(WindowAttentionParams p) {
  extern __shared__ __align__(128) unsigned char shared_raw[];
  const SharedLayout l = shared_layout(p.head_dim, sizeof(T), /*backward=*/false);
  SharedTiles<T> s(shared_raw, l, /*backward=*/false);
  HeadSliceLoader<T, kVectorBytes> loader(p, nullptr, /*slices=*/3);
  T* out = static_cast<T*>(p.out);
  const int n = p.tokens, hd = p.head_dim, warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int row0 = warp * kTile;
  const int64_t channels = static_cast<int64_t>(p.num_heads) * hd;
  float* strip = s.strips + warp * kTile * kStripStride;
  zero_tiles(l, shared_raw);
  const int64_t groups = ceil_div(p.num_windows, kForwardWindowsPerItem);
  for (int64_t item = blockIdx.x; item < groups * p.num_heads; item += gridDim.x) {
    const int64_t group = item / p.num_heads;
    const int h = static_cast<int>(item % p.num_heads);
    const int64_t first_window = group * kForwardWindowsPerItem;
    const int64_t end_window = first_window + kForwardWindowsPerItem < p.num_windows
                                   ? first_window + kForwardWindowsPerItem
                                   : p.num_windows;
    loader.plan(h);
    stage_bias(p, s, h);
    walk_windows(p, s, l, loader, first_window, end_window, [&](int64_t w, int tables) {
      multiply_into_strip<T, wmma::row_major, wmma::col_major>(strip, s.q + row0 * l.tile_stride, l.tile_stride, s.k,
                                                               l.tile_stride, l.padded_head_dim, kPaddedTokens);
      __syncwarp();
      {
        float prob[kColumnsPerLane];
        probability_rows(p, s, tables, w, row0, strip, prob);
        T* prob_row = s.prob + (row0 + lane / 2) * l.prob_stride + lane % 2;
#pragma unroll
        for (int c = 0; c < kColumnsPerLane; ++c) prob_row[2 * c] = from_float<T>(prob[c]);
      }
      __syncwarp();
      multiply_into_strip<T, wmma::row_major, wmma::row_major>(strip, s.prob + row0 * l.prob_stride, l.prob_stride, s.v,
                                                               l.tile_stride, kPaddedTokens, l.padded_head_dim);
      __syncwarp();
      store_head_rows<T, kVectorBytes>(out, channels, h * hd, strip, row0, s.pixels(tables), n, hd, 1.0f);
    });
  }
}

// register budget: 255 (bench/static_report.py checks it on sm_90, with no local memory): the 16-byte
// fp16 variant takes the whole register file; the constraint that matters is no spills.
template <typename T, int kVectorBytes>
__global__ void window_attention_tc_backward_kernel(WindowAttentionBackwardParams bp) {
  const WindowAttentionParams& p = bp.inputs;
  extern __shared__ __align__(128) unsigned char shared_raw[];
  __shared__ bool last_of_head;
  const SharedLayout l = shared_layout(p.head_dim, sizeof(T), /*backward=*/true);
  SharedTiles<T> s(shared_raw, l, /*backward=*/true);
  HeadSliceLoader<T, kVectorBytes> loader(p, static_cast<const T*>(bp.grad_out), /*slices=*/4);
  T* grad_qkv = static_cast<T*>(bp.grad_qkv);
  const int n = p.tokens, hd = p.head_dim, warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int row0 = warp * kTile;
  const int64_t channels = static_cast<int64_t>(p.num_heads) * hd;
  const float scale = static_cast<float>(p.scale);
  float* strip = s.strips + warp * 2 * kTile * kStripStride;
  float* second_strip = strip + kTile * kStripStride;
  zero_tiles(l, shared_raw);
  const int64_t windows_per_group = backward_windows_per_group(p.num_windows);
  const int64_t groups = backward_groups(p.num_windows);
  for (int64_t item = blockIdx.x; item < groups * p.num_heads; item += gridDim.x) {
    const int64_t group = item / p.num_heads;
    const int h = static_cast<int>(item % p.num_heads);
    const int64_t first_window = group * windows_per_group;
    const int64_t end_window =
        first_window + windows_per_group < p.num_windows ? first_window + windows_per_group : p.num_windows;
    loader.plan(h);
    stage_bias(p, s, h);
    walk_windows(p, s, l, loader, first_window, end_window, [&](int64_t w, int tables) {
      const int64_t* pixels = s.pixels(tables);
      // Row pass (this warp's 16 query rows): S, dP, then P, dS, dBias, dq.
      multiply_into_strip<T, wmma::row_major, wmma::col_major>(strip, s.q + row0 * l.tile_stride, l.tile_stride, s.k,
                                                               l.tile_stride, l.padded_head_dim, kPaddedTokens);
      multiply_into_strip<T, wmma::row_major, wmma::col_major>(second_strip, s.grad_out + row0 * l.tile_stride,
                                                               l.tile_stride, s.v, l.tile_stride, l.padded_head_dim,
                                                               kPaddedTokens);
      __syncwarp();
      {
        float prob[kColumnsPerLane];
        const bool row_valid = probability_rows(p, s, tables, w, row0, strip, prob);
        const int r = lane / 2, half = lane % 2;
        const float* grad_prob = second_strip + r * kStripStride + half;
        float weighted = 0.0f;  // this lane's half of rowsum(P * dP); padded columns have P = 0
#pragma unroll
        for (int c = 0; c < kColumnsPerLane; ++c) weighted += prob[c] * grad_prob[2 * c];
        const float row_dot = weighted + __shfl_xor_sync(0xffffffffu, weighted, 1);
        T* prob_row = s.prob + (row0 + r) * l.prob_stride + half;
        T* grad_score_row = s.grad_score + (row0 + r) * l.prob_stride + half;
        float* grad_bias_row = s.grad_bias + (row0 + r) * kBiasStride + half;
#pragma unroll
        for (int c = 0; c < kColumnsPerLane; ++c) {
          const float grad_score = prob[c] * (grad_prob[2 * c] - row_dot);
          prob_row[2 * c] = from_float<T>(prob[c]);
          grad_score_row[2 * c] = from_float<T>(grad_score);
          if (row_valid && 2 * c + half < n) grad_bias_row[2 * c] += grad_score;
        }
      }
      __syncwarp();
      multiply_into_strip<T, wmma::row_major, wmma::row_major>(strip, s.grad_score + row0 * l.prob_stride,
                                                               l.prob_stride, s.k, l.tile_stride, kPaddedTokens,
                                                               l.padded_head_dim);
      __syncwarp();
      store_head_rows<T, kVectorBytes>(grad_qkv, 3 * channels, h * hd, strip, row0, pixels, n, hd, scale);
      __syncthreads();  // every row of P and dS is written
      // Column pass (this warp's 16 key rows j): dk = scale * dS^T q, dv = P^T dO.
      multiply_into_strip<T, wmma::col_major, wmma::row_major>(strip, s.grad_score + row0, l.prob_stride, s.q,
                                                               l.tile_stride, kPaddedTokens, l.padded_head_dim);
      multiply_into_strip<T, wmma::col_major, wmma::row_major>(second_strip, s.prob + row0, l.prob_stride, s.grad_out,
                                                               l.tile_stride, kPaddedTokens, l.padded_head_dim);
      __syncwarp();
      store_head_rows<T, kVectorBytes>(grad_qkv, 3 * channels, channels + h * hd, strip, row0, pixels, n, hd, scale);
      store_head_rows<T, kVectorBytes>(grad_qkv, 3 * channels, 2 * channels + h * hd, second_strip, row0, pixels, n, hd,
                                       1.0f);
    });
    // This group's bias-gradient partial; the last group of head h to finish adds them all in group order.
    float* partials = static_cast<float*>(bp.grad_bias_partials) + static_cast<int64_t>(h) * groups * n * n;
    for (int e = threadIdx.x; e < n * n; e += blockDim.x)
      partials[group * n * n + e] = s.grad_bias[(e / n) * kBiasStride + e % n];
    __threadfence();  // the partial is visible to the other blocks before the ticket is taken
    __syncthreads();
    if (threadIdx.x == 0) {
      last_of_head = atomicAdd(bp.grad_bias_counters + h, 1u) == groups - 1;
      if (last_of_head) bp.grad_bias_counters[h] = 0;  // left zeroed for reuse
    }
    __syncthreads();
    if (last_of_head) {
      __threadfence();
      // Read at L2 (ld.global.cg): the other blocks' partials are not in this SM's L1.
      float sums[kSumElements] = {};
      for (int64_t g0 = 0; g0 < groups; g0 += kSumGroupsAhead) {
        float loaded[kSumGroupsAhead][kSumElements];
#pragma unroll
        for (int u = 0; u < kSumGroupsAhead; ++u) {
#pragma unroll
          for (int k = 0; k < kSumElements; ++k) {
            const int e = threadIdx.x + k * kThreads;
            loaded[u][k] = g0 + u < groups && e < n * n ? __ldcg(partials + (g0 + u) * n * n + e) : 0.0f;
          }
        }
#pragma unroll
        for (int u = 0; u < kSumGroupsAhead; ++u) {
#pragma unroll
          for (int k = 0; k < kSumElements; ++k) {
            if (g0 + u < groups) sums[k] += loaded[u][k];
          }
        }
      }
      float* grad_bias = static_cast<float*>(bp.grad_bias) + static_cast<int64_t>(h) * n * n;
#pragma unroll
      for (int k = 0; k < kSumElements; ++k) {
        const int e = threadIdx.x + k * kThreads;
        if (e < n * n) grad_bias[e] = sums[k];
      }
    }
    __syncthreads();  // last_of_head and the shared sums are reused by the next item
  }
}

bool sizes_supported(const WindowAttentionParams& p) {
  return p.tokens >= 1 && p.tokens <= kCudaOnChipAttentionMaxTokens && p.head_dim >= 1 && p.head_dim <= kCudaOnChipAttentionMaxHeadDim &&
         p.num_heads >= 1 && (p.mask == nullptr || p.mask_windows >= 1) && window_attention_uses_tensor_cores(p);
}

// The widest chunk (16 or 8 bytes, else one element) that every pointer and the channel count allow.
int vector_bytes(std::initializer_list<const void*> pointers, int64_t channels, int element_bytes) {
  for (const int bytes : {16, 8}) {
    bool aligned = (channels * element_bytes) % bytes == 0;
    for (const void* pointer : pointers) aligned = aligned && reinterpret_cast<uintptr_t>(pointer) % bytes == 0;
    if (aligned) return bytes;
  }
  return element_bytes;
}

// Launches kernel<T, bytes> for the runtime chunk width `bytes` (16, 8 or sizeof(T)).
template <typename T, template <typename, int> class KernelFor, typename Params>
cudaError_t launch_with_vector_bytes(int bytes, int64_t items, size_t shared_bytes, cudaStream_t stream,
                                     const Params& params) {
  auto launch = [&](auto kernel) {
    const cudaError_t status = set_max_dynamic_shared_bytes(kernel, shared_bytes);
    if (status != cudaSuccess) return status;
    return launch_kernel(kernel, dim3(grid_stride_blocks(items, 1)), dim3(kThreads), shared_bytes, stream, params);
  };
  if (bytes == 16) return launch(KernelFor<T, 16>::kernel);
  if (bytes == 8) return launch(KernelFor<T, 8>::kernel);
  return launch(KernelFor<T, static_cast<int>(sizeof(T))>::kernel);
}

template <typename T, int kVectorBytes>
struct ForwardKernel {
  static constexpr auto kernel = window_attention_tc_forward_kernel<T, kVectorBytes>;
};

template <typename T, int kVectorBytes>
struct BackwardKernel {
  static constexpr auto kernel = window_attention_tc_backward_kernel<T, kVectorBytes>;
};

// Calls fn(T{}) for the tensor-core storage types.
template <typename Fn>
cudaError_t dispatch_tensor_core_type(ElementType type, Fn&& fn) {
  switch (type) {
    case ElementType::kFloat16:
      return fn(__half{});
    case ElementType::kBFloat16:
      return fn(__nv_bfloat16{});
    case ElementType::kFloat32:
      return fn(float{});
    case ElementType::kFloat64:
      break;
  }
  return cudaErrorInvalidValue;
}

int element_bytes(ElementType type) {
  return type == ElementType::kFloat32 ? 4 : (type == ElementType::kFloat64 ? 8 : 2);
}

}  // namespace

bool window_attention_uses_tensor_cores(const WindowAttentionParams& p) {
  return p.dtype == ElementType::kFloat16 || p.dtype == ElementType::kBFloat16 ||
         (p.dtype == ElementType::kFloat32 && p.allow_tf32);
}

int64_t window_attention_tc_backward_groups(int64_t num_windows) {
  return num_windows == 0 ? 0 : backward_groups(num_windows);
}

size_t window_attention_tc_shared_bytes(const WindowAttentionParams& p, bool backward) {
  return shared_layout(p.head_dim, element_bytes(p.dtype), backward).total;
}

cudaError_t launch_window_attention_tc_forward(const WindowAttentionParams& p, cudaStream_t stream) {
  if (p.num_windows == 0) return cudaSuccess;
  if (!sizes_supported(p)) return cudaErrorInvalidValue;
  return dispatch_tensor_core_type(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    const int64_t channels = static_cast<int64_t>(p.num_heads) * p.head_dim;
    const int bytes = vector_bytes({p.qkv, p.out}, channels, static_cast<int>(sizeof(T)));
    const int64_t items = ceil_div(p.num_windows, kForwardWindowsPerItem) * p.num_heads;
    return launch_with_vector_bytes<T, ForwardKernel>(bytes, items, window_attention_tc_shared_bytes(p, false), stream,
                                                      p);
  });
}

cudaError_t launch_window_attention_tc_backward(const WindowAttentionBackwardParams& bp, cudaStream_t stream) {
  const WindowAttentionParams& p = bp.inputs;
  if (p.num_windows == 0) return cudaSuccess;
  if (!sizes_supported(p)) return cudaErrorInvalidValue;
  return dispatch_tensor_core_type(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    const int64_t channels = static_cast<int64_t>(p.num_heads) * p.head_dim;
    const int bytes = vector_bytes({p.qkv, bp.grad_out, bp.grad_qkv}, channels, static_cast<int>(sizeof(T)));
    const int64_t items = backward_groups(p.num_windows) * p.num_heads;
    return launch_with_vector_bytes<T, BackwardKernel>(bytes, items, window_attention_tc_shared_bytes(p, true), stream,
                                                       bp);
  });
}

}  // namespace cuda
}  // namespace swinir_kernels
