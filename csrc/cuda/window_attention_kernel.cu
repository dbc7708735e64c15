// Fused window attention with scalar FMAs (a readable baseline; tensor cores are a later step).
//
// Forward: one block per (window, head). The head's q, k, v (N x hd) are staged in shared memory in the
// compute type; each warp takes rows i of the score matrix, each lane columns j = lane and lane + 32
// (N <= 64), so a row's softmax is two warp reductions and P never leaves registers/shared memory.
//
// Backward: one block per (group of kAttentionWindowsPerGroup windows, head). Per window it recomputes
// P, then dP = dO V^T, dS = P * (dP - rowsum(P * dP)), dQ = scale * dS K (row pass, per warp), and
// dV = P^T dO, dK = scale * dS^T Q (column pass, per thread). dS summed over the group's windows is the
// block's bias-gradient partial; a second kernel adds the partials in group order (no atomics, so the
// result is deterministic).
#include "element_io.cuh"
#include "launch.cuh"
#include "window_attention_kernel.h"
#include "window_geometry.cuh"

namespace swinir_kernels {
namespace cuda {
namespace {

constexpr int kForwardThreads = 128;
constexpr int kBackwardThreads = 256;
constexpr int kWarp = 32;
constexpr int kColumnsPerLane = (kCudaOnChipAttentionMaxTokens + kWarp - 1) / kWarp;
constexpr float kShiftMaskValue = -100.0f;  // the official additive mask (not -inf)
// Shared-memory token tables in front of the tiles: each token's pixel index (int64) and shift region (int).
constexpr size_t kTableBytes = kCudaOnChipAttentionMaxTokens * (sizeof(int64_t) + sizeof(int));
static_assert(kTableBytes % 16 == 0, "tiles after the token tables must stay 16-byte aligned");

__host__ __device__ inline int64_t group_count(int64_t num_windows) {
  return (num_windows + kAttentionWindowsPerGroup - 1) / kAttentionWindowsPerGroup;
}

// Row stride of the (N, hd) tiles: odd, so lanes reading rows j = lane at one column hit distinct banks.
__host__ __device__ inline int tile_stride(int head_dim) { return head_dim | 1; }

template <typename Acc>
__host__ __device__ inline size_t shared_bytes(int tokens, int head_dim, bool backward) {
  const size_t tile = static_cast<size_t>(tokens) * tile_stride(head_dim);
  const size_t square = static_cast<size_t>(tokens) * tokens;
  // Forward: q, k, v tiles + one probability row per warp. Backward: q, k, v, dO tiles + P, dS, dBias.
  const size_t values = backward ? 4 * tile + 3 * square : 3 * tile + (kForwardThreads / kWarp) * tokens;
  return kTableBytes + values * sizeof(Acc);
}

// Shared-memory views of one block; `backward` adds the dO tile and the N x N P, dS, dBias matrices.
template <typename Acc>
struct SharedTiles {
  int64_t* pixel;  // [N]
  int* region;     // [N]
  Acc *q, *k, *v;  // [N][stride]
  Acc* grad_out;   // [N][stride] (backward)
  Acc* prob;       // forward: [warps][N] rows; backward: [N][N]
  Acc* grad_score; // [N][N] (backward)
  Acc* grad_bias;  // [N][N] (backward): dS summed over the group's windows
  int stride;

  __device__ SharedTiles(unsigned char* raw, int tokens, int head_dim, bool backward) {
    pixel = reinterpret_cast<int64_t*>(raw);
    region = reinterpret_cast<int*>(raw + kCudaOnChipAttentionMaxTokens * sizeof(int64_t));
    stride = tile_stride(head_dim);
    const int tile = tokens * stride;
    q = reinterpret_cast<Acc*>(raw + kTableBytes);
    k = q + tile;
    v = k + tile;
    grad_out = backward ? v + tile : nullptr;
    prob = backward ? grad_out + tile : v + tile;
    grad_score = backward ? prob + tokens * tokens : nullptr;
    grad_bias = backward ? grad_score + tokens * tokens : nullptr;
  }
};

template <typename Acc>
__device__ inline Acc warp_max(Acc value) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    const Acc other = __shfl_xor_sync(0xffffffffu, value, offset);
    value = other > value ? other : value;
  }
  return value;
}

template <typename Acc>
__device__ inline Acc warp_sum(Acc value) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

template <typename Acc>
__device__ inline Acc dot(const Acc* a, const Acc* b, int n) {
  Acc sum = 0;
  for (int d = 0; d < n; ++d) sum += a[d] * b[d];
  return sum;
}

// Fills the token tables for window w (block-wide; the caller synchronises).
template <typename Acc>
__device__ void load_token_tables(const WindowAttentionParams& p, int64_t w, SharedTiles<Acc>& s) {
  const bool shift_mask = has_shift_mask(p);
  for (int t = threadIdx.x; t < p.tokens; t += blockDim.x) {
    s.pixel[t] = token_pixel(p, w, t);
    s.region[t] = shift_mask ? token_region(p, w, t) : 0;
  }
}

// tile[t][d] = src[pixel[t] * pixel_channels + first_channel + d] for the window's N tokens (block-wide).
template <typename T, typename Acc>
__device__ void load_head_tile(Acc* tile, const T* src, const SharedTiles<Acc>& s, int64_t pixel_channels,
                               int64_t first_channel, int tokens, int head_dim) {
  for (int idx = threadIdx.x; idx < tokens * head_dim; idx += blockDim.x) {
    const int t = idx / head_dim, d = idx % head_dim;
    tile[t * s.stride + d] = load_as<Acc>(src + s.pixel[t] * pixel_channels + first_channel + d);
  }
}

// Softmax row i of window w, head h, for this lane's columns j = lane + 32*c (zero where j >= N):
// P[i, j] = softmax_j(scale * q_i . k_j + rel_bias[h, i, j] + mask_w[i, j]). Called by a whole warp.
template <typename Acc>
__device__ void probability_row(const WindowAttentionParams& p, const SharedTiles<Acc>& s, int64_t w, int h, int i,
                                Acc (&prob)[kColumnsPerLane]) {
  const int lane = threadIdx.x % kWarp;
  const int n = p.tokens;
  const Acc* bias_row = static_cast<const Acc*>(p.rel_bias) + (static_cast<int64_t>(h) * n + i) * n;
  const Acc* mask_row =
      p.mask == nullptr ? nullptr : static_cast<const Acc*>(p.mask) + ((w % p.mask_windows) * n + i) * n;
  const bool shift_mask = has_shift_mask(p);
  const Acc scale = static_cast<Acc>(p.scale);
  Acc score[kColumnsPerLane] = {};
  Acc row_max = static_cast<Acc>(-INFINITY);
#pragma unroll
  for (int c = 0; c < kColumnsPerLane; ++c) {
    const int j = lane + c * kWarp;
    if (j >= n) continue;
    Acc value = scale * dot(s.q + i * s.stride, s.k + j * s.stride, p.head_dim) + bias_row[j];
    if (mask_row != nullptr) value += mask_row[j];
    if (shift_mask && s.region[i] != s.region[j]) value += static_cast<Acc>(kShiftMaskValue);
    score[c] = value;
    row_max = value > row_max ? value : row_max;
  }
  row_max = warp_max(row_max);
  Acc row_sum = 0;
#pragma unroll
  for (int c = 0; c < kColumnsPerLane; ++c) {
    prob[c] = lane + c * kWarp < n ? exp_of(score[c] - row_max) : static_cast<Acc>(0);
    row_sum += prob[c];
  }
  const Acc inverse_sum = static_cast<Acc>(1) / warp_sum(row_sum);
#pragma unroll
  for (int c = 0; c < kColumnsPerLane; ++c) prob[c] *= inverse_sum;
}

// register budget: 64 (bench/static_report.py checks it on sm_90, with no local memory)
template <typename T>
__global__ void window_attention_forward_kernel(WindowAttentionParams p) {
  using Acc = compute_t<T>;
  extern __shared__ __align__(16) unsigned char shared_raw[];
  SharedTiles<Acc> s(shared_raw, p.tokens, p.head_dim, /*backward=*/false);
  const T* qkv = static_cast<const T*>(p.qkv);
  T* out = static_cast<T*>(p.out);
  const int n = p.tokens, hd = p.head_dim;
  const int64_t channels = static_cast<int64_t>(p.num_heads) * hd;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp, warps = blockDim.x / kWarp;
  Acc* prob_row = s.prob + warp * n;
  const int64_t items = p.num_windows * p.num_heads;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const int64_t w = item / p.num_heads;
    const int h = static_cast<int>(item % p.num_heads);
    load_token_tables(p, w, s);
    __syncthreads();
    load_head_tile(s.q, qkv, s, 3 * channels, h * hd, n, hd);
    load_head_tile(s.k, qkv, s, 3 * channels, channels + h * hd, n, hd);
    load_head_tile(s.v, qkv, s, 3 * channels, 2 * channels + h * hd, n, hd);
    __syncthreads();
    for (int i = warp; i < n; i += warps) {
      Acc prob[kColumnsPerLane];
      probability_row(p, s, w, h, i, prob);
#pragma unroll
      for (int c = 0; c < kColumnsPerLane; ++c)
        if (lane + c * kWarp < n) prob_row[lane + c * kWarp] = prob[c];
      __syncwarp();
      // out[i, d] = sum_j P[i, j] v[j, d], lanes over d.
      for (int d = lane; d < hd; d += kWarp) {
        Acc sum = 0;
        for (int j = 0; j < n; ++j) sum += prob_row[j] * s.v[j * s.stride + d];
        store_from(out + s.pixel[i] * channels + h * hd + d, sum);
      }
      __syncwarp();  // prob_row is rewritten by this warp's next row
    }
    __syncthreads();  // the tiles are rewritten for the next item
  }
}

// register budget: 64 (bench/static_report.py checks it on sm_90, with no local memory)
template <typename T>
__global__ void window_attention_backward_kernel(WindowAttentionBackwardParams bp) {
  using Acc = compute_t<T>;
  const WindowAttentionParams& p = bp.inputs;
  extern __shared__ __align__(16) unsigned char shared_raw[];
  SharedTiles<Acc> s(shared_raw, p.tokens, p.head_dim, /*backward=*/true);
  const T* qkv = static_cast<const T*>(p.qkv);
  const T* grad_out = static_cast<const T*>(bp.grad_out);
  T* grad_qkv = static_cast<T*>(bp.grad_qkv);
  const int n = p.tokens, hd = p.head_dim;
  const int64_t channels = static_cast<int64_t>(p.num_heads) * hd;
  const Acc scale = static_cast<Acc>(p.scale);
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp, warps = blockDim.x / kWarp;
  const int64_t groups = group_count(p.num_windows);
  for (int64_t item = blockIdx.x; item < groups * p.num_heads; item += gridDim.x) {
    const int64_t group = item / p.num_heads;
    const int h = static_cast<int>(item % p.num_heads);
    // Thread (warp, lane) owns dBias[i][lane + 32c] for the rows i = warp + k*warps in the row pass, so
    // it accumulates there without races; zeroing and the final write use a block-wide index instead,
    // separated from the row passes by the __syncthreads below.
    for (int idx = threadIdx.x; idx < n * n; idx += blockDim.x) s.grad_bias[idx] = 0;
    const int64_t first_window = group * kAttentionWindowsPerGroup;
    const int64_t last_window = first_window + kAttentionWindowsPerGroup;
    const int64_t end_window = last_window < p.num_windows ? last_window : p.num_windows;
    for (int64_t w = first_window; w < end_window; ++w) {
      load_token_tables(p, w, s);
      __syncthreads();
      load_head_tile(s.q, qkv, s, 3 * channels, h * hd, n, hd);
      load_head_tile(s.k, qkv, s, 3 * channels, channels + h * hd, n, hd);
      load_head_tile(s.v, qkv, s, 3 * channels, 2 * channels + h * hd, n, hd);
      load_head_tile(s.grad_out, grad_out, s, channels, h * hd, n, hd);
      __syncthreads();
      // Row pass: P, dP, dS for row i; then dQ[i] = scale * sum_j dS[i, j] k[j].
      for (int i = warp; i < n; i += warps) {
        Acc prob[kColumnsPerLane];
        probability_row(p, s, w, h, i, prob);
        Acc grad_prob[kColumnsPerLane];
        Acc weighted = 0;  // this lane's part of rowsum_j(P[i, j] * dP[i, j])
#pragma unroll
        for (int c = 0; c < kColumnsPerLane; ++c) {
          const int j = lane + c * kWarp;
          grad_prob[c] = j < n ? dot(s.grad_out + i * s.stride, s.v + j * s.stride, hd) : static_cast<Acc>(0);
          weighted += prob[c] * grad_prob[c];
        }
        const Acc row_dot = warp_sum(weighted);
#pragma unroll
        for (int c = 0; c < kColumnsPerLane; ++c) {
          const int j = lane + c * kWarp;
          if (j >= n) continue;
          const Acc grad_score = prob[c] * (grad_prob[c] - row_dot);
          s.prob[i * n + j] = prob[c];
          s.grad_score[i * n + j] = grad_score;
          s.grad_bias[i * n + j] += grad_score;
        }
        __syncwarp();
        for (int d = lane; d < hd; d += kWarp) {
          Acc sum = 0;
          for (int j = 0; j < n; ++j) sum += s.grad_score[i * n + j] * s.k[j * s.stride + d];
          store_from(grad_qkv + s.pixel[i] * 3 * channels + h * hd + d, scale * sum);
        }
      }
      __syncthreads();
      // Column pass: dK[j] = scale * sum_i dS[i, j] q[i], dV[j] = sum_i P[i, j] dO[i], threads over (j, d).
      for (int idx = threadIdx.x; idx < n * hd; idx += blockDim.x) {
        const int j = idx / hd, d = idx % hd;
        Acc grad_k = 0, grad_v = 0;
        for (int i = 0; i < n; ++i) {
          grad_k += s.grad_score[i * n + j] * s.q[i * s.stride + d];
          grad_v += s.prob[i * n + j] * s.grad_out[i * s.stride + d];
        }
        T* row = grad_qkv + s.pixel[j] * 3 * channels + h * hd + d;
        store_from(row + channels, scale * grad_k);
        store_from(row + 2 * channels, grad_v);
      }
      __syncthreads();  // tiles and tables are rewritten for the next window
    }
    Acc* partial = static_cast<Acc*>(bp.grad_bias_partials) + (group * p.num_heads + h) * n * n;
    for (int idx = threadIdx.x; idx < n * n; idx += blockDim.x) partial[idx] = s.grad_bias[idx];
    __syncthreads();  // grad_bias is zeroed again for the next item
  }
}

// register budget: 32 (bench/static_report.py checks it on sm_90, with no local memory)
// grad_bias[e] = sum over groups g, in order, of partials[g][e].
template <typename Acc>
__global__ void sum_bias_partials_kernel(const Acc* __restrict__ partials, Acc* __restrict__ grad_bias,
                                         int64_t groups, int64_t size) {
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < size; e += int64_t{gridDim.x} * blockDim.x) {
    Acc sum = 0;
    for (int64_t g = 0; g < groups; ++g) sum += partials[g * size + e];
    grad_bias[e] = sum;
  }
}

bool sizes_supported(const WindowAttentionParams& p) {
  return p.tokens >= 1 && p.tokens <= kCudaOnChipAttentionMaxTokens && p.head_dim >= 1 &&
         p.head_dim <= kCudaOnChipAttentionMaxHeadDim && p.num_heads >= 1 && (p.mask == nullptr || p.mask_windows >= 1);
}

}  // namespace

int64_t window_attention_backward_groups(int64_t num_windows) { return group_count(num_windows); }

size_t window_attention_shared_bytes(const WindowAttentionParams& p, bool backward) {
  return p.dtype == ElementType::kFloat64 ? shared_bytes<double>(p.tokens, p.head_dim, backward)
                                          : shared_bytes<float>(p.tokens, p.head_dim, backward);
}

cudaError_t launch_window_attention_forward(const WindowAttentionParams& p, cudaStream_t stream) {
  if (p.num_windows == 0) return cudaSuccess;
  if (!sizes_supported(p)) return cudaErrorInvalidValue;
  return dispatch_element_type(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    const size_t bytes = shared_bytes<compute_t<T>>(p.tokens, p.head_dim, /*backward=*/false);
    const cudaError_t status = set_max_dynamic_shared_bytes(window_attention_forward_kernel<T>, bytes);
    if (status != cudaSuccess) return status;
    const unsigned int blocks = grid_stride_blocks(p.num_windows * p.num_heads, 1);
    return launch_kernel(window_attention_forward_kernel<T>, blocks, kForwardThreads, bytes, stream, p);
  });
}

cudaError_t launch_window_attention_backward(const WindowAttentionBackwardParams& bp, cudaStream_t stream) {
  const WindowAttentionParams& p = bp.inputs;
  if (p.num_windows == 0) return cudaSuccess;
  if (!sizes_supported(p)) return cudaErrorInvalidValue;
  return dispatch_element_type(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    using Acc = compute_t<T>;
    const size_t bytes = shared_bytes<Acc>(p.tokens, p.head_dim, /*backward=*/true);
    cudaError_t status = set_max_dynamic_shared_bytes(window_attention_backward_kernel<T>, bytes);
    if (status != cudaSuccess) return status;
    const int64_t groups = group_count(p.num_windows);
    status = launch_kernel(window_attention_backward_kernel<T>, grid_stride_blocks(groups * p.num_heads, 1),
                           kBackwardThreads, bytes, stream, bp);
    if (status != cudaSuccess) return status;
    const int64_t size = static_cast<int64_t>(p.num_heads) * p.tokens * p.tokens;
    constexpr int kSumThreads = 256;
    return launch_kernel(sum_bias_partials_kernel<Acc>, grid_stride_blocks(size, kSumThreads), kSumThreads, 0, stream,
                         static_cast<const Acc*>(bp.grad_bias_partials), static_cast<Acc*>(bp.grad_bias), groups, size);
  });
}

}  // namespace cuda
}  // namespace swinir_kernels
