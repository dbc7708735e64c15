// The SIMT harness's stand-in for the CUDA device runtime: kernels compiled as host C++ run here with
// CUDA's execution model. A launch runs the grid's blocks one after another; the threads of a block are
// fibers on one OS thread, scheduled cooperatively: a thread runs until it reaches a synchronisation
// point (__syncthreads, a warp collective) or returns, then the next runnable thread of the block runs,
// in the configured order (forward, reversed, or shuffled with a logged seed). Misuse that would hang or
// be undefined on a GPU (a barrier not reached by all threads, warp collectives with mismatched masks,
// a shuffle from a lane outside the mask) stops the program with a "simt error:" message.
//
// Only what tests/support/simt needs and what our kernels use is modelled; see tests/support/simt/README.md.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

// ---- CUDA qualifiers ----------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
// Shared variables need static storage that all threads of a block see, in both forms CUDA allows:
// `__shared__ T x[n];` and `extern __shared__ T x[];`. thread_local is the one storage class valid in
// both (block-scope thread_local implies static); the block's fibers share the OS thread. The extern
// arrays are defined by the harness build (one buffer per array, see tests/support/simt/build.py).
#define __shared__ thread_local
#define __constant__

// ---- vector types -------------------------------------------------------------------------------
struct uint3 {
  unsigned int x, y, z;
};
struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(16) uint4 {
  unsigned int x, y, z, w;
};
struct alignas(8) uint2 {
  unsigned int x, y;
};
struct alignas(16) int4 {
  int x, y, z, w;
};
struct alignas(8) int2 {
  int x, y;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(8) float2 {
  float x, y;
};
struct alignas(16) double2 {
  double x, y;
};

// ---- runtime API types --------------------------------------------------------------------------
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDeviceFunction = 98,
  cudaErrorLaunchOutOfResources = 701,
};
typedef cudaError_t cudaError;
typedef struct CUstream_st* cudaStream_t;
enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
  cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};

constexpr int warpSize = 32;

namespace simt {

// Per-block limits of an sm_90 GPU (H100/H200): dynamic shared memory beyond 48 KB needs an opt-in.
constexpr size_t kDefaultDynamicSharedBytes = 48 * 1024;
constexpr size_t kMaxDynamicSharedBytes = 227 * 1024;
constexpr unsigned kMaxThreadsPerBlock = 1024;

// kForward, kReversed, kShuffled: every runnable thread runs once per round (to its next synchronisation
// point), in that order. kWarpMajor, kWarpMajorReversed: warp by warp (in that order of warps), each warp
// runs until all its threads wait in __syncthreads or have returned, so a warp gets as far ahead of the
// others as a GPU may let it: a missing __syncthreads between a warp's shared-memory writes and another
// warp's reads shows in one of the two orders.
enum class Order { kForward, kReversed, kShuffled, kWarpMajor, kWarpMajorReversed };

// Scheduling of the following launches: the order threads (and blocks) run in between sync points.
void configure(Order order, uint64_t seed);
uint64_t configured_seed();
const char* order_name(Order order);

namespace detail {

struct ThreadState;
struct BlockState;

// The running thread's coordinates (valid inside a kernel only).
struct Coordinates {
  uint3 thread_index, block_index;
  dim3 block_dim, grid_dim;
  unsigned linear_thread;  // threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)
};
extern const Coordinates* current;

// The per-lane record of a warp collective. Every lane in `mask` must make the same kind of call
// (same `resolver`) with the same mask; when the last one arrives, `resolver` runs once with each
// lane's payload (null for lanes outside the mask) and the lanes continue.
using Resolver = void (*)(void* const* payloads, unsigned mask);
struct WarpCall {
  Resolver resolver;
  const char* name;
  unsigned mask;
  void* payload;
  const char* file;
  int line;
};
void warp_collective(const WarpCall& call);
void block_barrier(const char* file, int line);
unsigned active_lanes();  // lanes of the caller's warp that have not exited
// Stops the program: prints "simt error: <name>: <message>" with the launch, block, thread and schedule.
[[noreturn]] void fail_in_collective(const char* name, const char* format, ...) __attribute__((format(printf, 2, 3)));

// Type-erased kernel body run by every thread of a launch.
struct LaunchBody {
  void (*run)(void* context);
  void* context;
};
cudaError_t run_grid(const void* kernel, dim3 grid, dim3 block, size_t shared_bytes, LaunchBody body);
cudaError_t set_max_dynamic_shared(const void* kernel, size_t bytes);

// Extern dynamic shared arrays register their buffers (tests/support/simt/build.py generates the definitions).
void register_dynamic_shared(unsigned char* buffer);

}  // namespace detail
}  // namespace simt

// ---- built-in variables ---------------------------------------------------------------------------
#define threadIdx (::simt::detail::current->thread_index)
#define blockIdx (::simt::detail::current->block_index)
#define blockDim (::simt::detail::current->block_dim)
#define gridDim (::simt::detail::current->grid_dim)

// ---- synchronisation ----------------------------------------------------------------------------
inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ::simt::detail::block_barrier(file, line);
}

namespace simt {
namespace detail {
inline void resolve_nothing(void* const*, unsigned) {}
}  // namespace detail
}  // namespace simt

inline void __syncwarp(unsigned mask = 0xffffffffu, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ::simt::detail::warp_collective({&::simt::detail::resolve_nothing, "__syncwarp", mask, nullptr, file, line});
}

// Every thread of a block runs on one OS thread with sequentially consistent memory: fences are no-ops
// (the memory model beyond barriers is not modelled, see the README).
inline void __threadfence() {}
inline void __threadfence_block() {}
inline void __threadfence_system() {}

// ---- warp shuffles --------------------------------------------------------------------------------
namespace simt {
namespace detail {

enum class ShuffleMode { kIndex, kUp, kDown, kXor };

template <typename T>
struct ShufflePayload {
  T value;
  int operand;  // source lane, delta or lane mask
  int width;
  T result;
};

// Source lane of `lane` for a shuffle; -1 when the lane keeps its own value (out of its width segment).
inline int shuffle_source(ShuffleMode mode, int lane, int operand, int width) {
  const int segment = lane & ~(width - 1);
  switch (mode) {
    case ShuffleMode::kIndex:
      return segment + (operand & (width - 1));
    case ShuffleMode::kUp:
      return lane - operand >= segment ? lane - operand : -1;
    case ShuffleMode::kDown:
      return lane + operand < segment + width ? lane + operand : -1;
    case ShuffleMode::kXor: {
      const int source = lane ^ operand;
      return source >= segment && source < segment + width ? source : -1;
    }
  }
  return -1;
}

template <typename T, ShuffleMode mode>
void resolve_shuffle(void* const* payloads, unsigned mask) {
  static const char* const names[] = {"__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync"};
  const char* name = names[static_cast<int>(mode)];
  for (int lane = 0; lane < 32; ++lane) {
    if (!(mask >> lane & 1u)) continue;
    auto* mine = static_cast<ShufflePayload<T>*>(payloads[lane]);
    const int width = mine->width;
    if (width < 1 || width > 32 || (width & (width - 1)) != 0)
      fail_in_collective(name, "lane %d: width %d is not a power of two in 1..32", lane, width);
    const int source = shuffle_source(mode, lane, mine->operand, width);
    if (source < 0) {
      mine->result = mine->value;
      continue;
    }
    if (!(mask >> source & 1u))
      fail_in_collective(name, "lane %d reads lane %d, which is not in the mask 0x%08x (undefined on a GPU)", lane,
                         source, mask);
    mine->result = static_cast<ShufflePayload<T>*>(payloads[source])->value;
  }
}

template <typename T, ShuffleMode mode>
T shuffle(const char* name, unsigned mask, T value, int operand, int width, const char* file, int line) {
  static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 16, "shuffled types are plain values");
  ShufflePayload<T> payload{value, operand, width, value};
  warp_collective({&resolve_shuffle<T, mode>, name, mask, &payload, file, line});
  return payload.result;
}

}  // namespace detail
}  // namespace simt

template <typename T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize, const char* file = __builtin_FILE(),
              int line = __builtin_LINE()) {
  using namespace ::simt::detail;
  return shuffle<T, ShuffleMode::kIndex>("__shfl_sync", mask, var, src_lane, width, file, line);
}
template <typename T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize, const char* file = __builtin_FILE(),
                 int line = __builtin_LINE()) {
  using namespace ::simt::detail;
  return shuffle<T, ShuffleMode::kUp>("__shfl_up_sync", mask, var, static_cast<int>(delta), width, file, line);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize, const char* file = __builtin_FILE(),
                   int line = __builtin_LINE()) {
  using namespace ::simt::detail;
  return shuffle<T, ShuffleMode::kDown>("__shfl_down_sync", mask, var, static_cast<int>(delta), width, file, line);
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize, const char* file = __builtin_FILE(),
                  int line = __builtin_LINE()) {
  using namespace ::simt::detail;
  return shuffle<T, ShuffleMode::kXor>("__shfl_xor_sync", mask, var, lane_mask, width, file, line);
}

// ---- warp votes ---------------------------------------------------------------------------------
namespace simt {
namespace detail {

struct VotePayload {
  int predicate;
  unsigned result;
};

// result = the ballot of the lanes in the mask; __all_sync / __any_sync test it against the mask.
inline void resolve_vote(void* const* payloads, unsigned mask) {
  unsigned ballot = 0;
  for (int lane = 0; lane < 32; ++lane)
    if ((mask >> lane & 1u) && static_cast<VotePayload*>(payloads[lane])->predicate != 0) ballot |= 1u << lane;
  for (int lane = 0; lane < 32; ++lane)
    if (mask >> lane & 1u) static_cast<VotePayload*>(payloads[lane])->result = ballot;
}

inline unsigned vote(const char* name, unsigned mask, int predicate, const char* file, int line) {
  VotePayload payload{predicate, 0};
  warp_collective({&resolve_vote, name, mask, &payload, file, line});
  return payload.result;
}

}  // namespace detail
}  // namespace simt

inline unsigned __ballot_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
  return ::simt::detail::vote("__ballot_sync", mask, predicate, file, line);
}
inline int __all_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::simt::detail::vote("__all_sync", mask, predicate, file, line) == mask;
}
inline int __any_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::simt::detail::vote("__any_sync", mask, predicate, file, line) != 0;
}
inline unsigned __activemask() { return ::simt::detail::active_lanes(); }

// ---- atomics: one OS thread runs the block, so a read-modify-write is atomic as written ----------
template <typename T>
T atomicAdd(T* address, T value) {
  const T old = *address;
  *address = old + value;
  return old;
}
template <typename T>
T atomicSub(T* address, T value) {
  const T old = *address;
  *address = old - value;
  return old;
}
template <typename T>
T atomicMax(T* address, T value) {
  const T old = *address;
  *address = old > value ? old : value;
  return old;
}
template <typename T>
T atomicMin(T* address, T value) {
  const T old = *address;
  *address = old < value ? old : value;
  return old;
}
template <typename T>
T atomicExch(T* address, T value) {
  const T old = *address;
  *address = value;
  return old;
}
template <typename T>
T atomicCAS(T* address, T compare, T value) {
  const T old = *address;
  if (old == compare) *address = value;
  return old;
}
template <typename T>
T atomicAnd(T* address, T value) {
  const T old = *address;
  *address = old & value;
  return old;
}
template <typename T>
T atomicOr(T* address, T value) {
  const T old = *address;
  *address = old | value;
  return old;
}

// ---- math: host libm for the correctly rounded or documented functions ----------------------------
// The fast intrinsics run at full precision here; a GPU's are approximate (documented maximum errors:
// __expf 2 + floor(|1.16 x|) ulp, __fdividef 2 ulp for |y| in [2^-126, 2^126], rsqrtf 2 ulp), and
// --use_fast_math turns expf / division into them. Tolerances must allow for that; see the README.
using std::exp;
using std::exp2;
using std::fma;
using std::log;
using std::sqrt;
inline float __expf(float x) { return std::exp(x); }
inline float __exp2f(float x) { return std::exp2(x); }
inline float __logf(float x) { return std::log(x); }
inline float __log2f(float x) { return std::log2(x); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fmul_rn(float x, float y) { return x * y; }
inline float __fadd_rn(float x, float y) { return x + y; }
inline float __fmaf_rn(float x, float y, float z) { return std::fma(x, y, z); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __frsqrt_rn(float x) { return 1.0f / std::sqrt(x); }
inline int __float2int_rn(float x) { return static_cast<int>(std::nearbyint(x)); }
template <typename T>
inline T __ldg(const T* p) {
  return *p;
}
// ld.global.cg / st.global.cg (L2 only, bypassing the SM's L1): one memory here.
template <typename T>
inline T __ldcg(const T* p) {
  return *p;
}
template <typename T>
inline void __stcg(T* p, T value) {
  *p = value;
}
using std::max;
using std::min;

// ---- launches ---------------------------------------------------------------------------------------
namespace simt {
namespace detail {

template <typename Tuple, typename Kernel, size_t... I>
void call_kernel(Kernel kernel, Tuple& args, std::index_sequence<I...>) {
  kernel(std::get<I>(args)...);  // each thread gets its own copies of the by-value parameters
}

}  // namespace detail

// Runs kernel(args...) on grid x block threads with CUDA semantics; returns the launch error (block
// or grid dims out of range, more dynamic shared memory than the kernel may use), as a GPU would.
template <typename... KernelArgs, typename... Args>
cudaError_t launch(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, size_t shared_bytes, Args&&... args);

}  // namespace simt

template <typename... KernelArgs, typename... Args>
cudaError_t simt::launch(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, size_t shared_bytes, Args&&... args) {
  // The argument conversion of a <<<>>> launch: each argument to its parameter's type, once.
  using Params = std::tuple<std::decay_t<KernelArgs>...>;
  Params params(std::forward<Args>(args)...);
  struct Context {
    void (*kernel)(KernelArgs...);
    const Params* params;
  } context{kernel, &params};
  detail::LaunchBody body{[](void* raw) {
                            auto* c = static_cast<Context*>(raw);
                            Params copy = *c->params;
                            detail::call_kernel(c->kernel, copy, std::index_sequence_for<KernelArgs...>{});
                          },
                          &context};
  return detail::run_grid(reinterpret_cast<const void*>(kernel), grid, block, shared_bytes, body);
}

// ---- runtime API functions ----------------------------------------------------------------------
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char* cudaGetErrorString(cudaError_t error);
template <typename T>
cudaError_t cudaFuncSetAttribute(T* kernel, cudaFuncAttribute attribute, int value) {
  if (attribute != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaSuccess;
  if (value < 0) return cudaErrorInvalidValue;
  return ::simt::detail::set_max_dynamic_shared(reinterpret_cast<const void*>(kernel), static_cast<size_t>(value));
}
