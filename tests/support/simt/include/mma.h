// Stand-in for <mma.h> in the SIMT harness build: nvcuda::wmma emulated on the CPU.
//
// What is modelled:
// - fragment<matrix_a | matrix_b | accumulator, M, N, K, T, Layout> for m16n16k16 (also m32n8k16, m8n32k16)
//   with __half / __nv_bfloat16 inputs and float / __half accumulators, and m16n16k8 with precision::tf32
//   inputs and float accumulators; num_elements and x[i] as in CUDA.
// - load_matrix_sync, store_matrix_sync and mma_sync are warp collectives: every lane of the warp must
//   call them (mask 0xffffffff) with the same pointer, ldm and layout, else "simt error:". The pointer must
//   be 32-byte aligned and ldm a multiple of 16 bytes, as CUDA requires. fill_fragment is per lane.
// - The distribution of matrix elements over lanes is deliberately NOT the hardware's: a permutation of
//   (lane, i) -> (row, col), one per fragment kind, drawn from the run's seed. Kernel code may only apply
//   the same element-wise operation to all of a fragment's x[i] (or combine fragments of the same type
//   element by element); code that assumes where an element lives gives wrong results here. The number
//   of elements per lane is rows * cols / 32 (the hardware holds 16 for m16n16k16 half A/B fragments).
// - mma_sync: D = A B + C with exact products (fp16/bf16/tf32 significands have at most 11 bits, so their
//   products are exact, as in the tensor core), summed in double and rounded once to the accumulator type
//   (round to nearest even). Real tensor cores add the products of a k-block with truncated alignment
//   (not IEEE round-to-nearest), so a GPU result can differ by a few ulps of the largest addend.
// - tf32: __float_to_tf32 rounds to 10 mantissa bits to nearest, ties away from zero (PTX cvt.rna.tf32.f32),
//   and clears the low 13 bits. The tensor core reads only the top 19 bits of a tf32 operand, so mma_sync
//   truncates the low 13 bits of matrix_a/matrix_b elements that were not converted.
#pragma once
#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <tuple>
#include <vector>

#include "simt_half.h"
#include "simt_runtime.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };
namespace precision {
struct tf32 {};
}  // namespace precision

// Round to nearest, ties away from zero, to tf32's 10 mantissa bits; the low 13 bits are cleared.
inline float __float_to_tf32(float in) {
  const uint32_t bits = ::simt::float_bits(in);
  if ((bits & 0x7f800000u) == 0x7f800000u) return in;  // inf, NaN
  return ::simt::bits_float((bits + 0x1000u) & 0xffffe000u);
}

namespace detail {

template <typename Use, int M, int N, int K>
struct Shape;
template <int M, int N, int K>
struct Shape<matrix_a, M, N, K> {
  static constexpr int rows = M, cols = K, kind = 0;
};
template <int M, int N, int K>
struct Shape<matrix_b, M, N, K> {
  static constexpr int rows = K, cols = N, kind = 1;
};
template <int M, int N, int K>
struct Shape<accumulator, M, N, K> {
  static constexpr int rows = M, cols = N, kind = 2;
};

template <typename T>
struct Storage {
  using type = T;
};
template <>
struct Storage<precision::tf32> {
  using type = float;
};

template <typename Use, int M, int N, int K, typename T>
constexpr bool supported() {
  constexpr bool half_inputs = std::is_same<T, __half>::value || std::is_same<T, __nv_bfloat16>::value;
  constexpr bool k16 = (M == 16 && N == 16 && K == 16) || (M == 32 && N == 8 && K == 16) || (M == 8 && N == 32 && K == 16);
  constexpr bool k8 = M == 16 && N == 16 && K == 8;
  if (std::is_same<Use, accumulator>::value)
    return (k16 && (std::is_same<T, float>::value || std::is_same<T, __half>::value)) ||
           (k8 && std::is_same<T, float>::value);
  return (k16 && half_inputs) || (k8 && std::is_same<T, precision::tf32>::value);
}

// The run's mapping of fragment element (lane, i) -> matrix position row * cols + col for one kind of
// fragment: a random permutation drawn from the configured seed, so no kernel can rely on it.
inline const std::vector<int>& element_positions(int kind, int rows, int cols) {
  static std::map<std::tuple<uint64_t, int, int, int>, std::vector<int>> cache;
  const uint64_t seed = ::simt::configured_seed();
  const auto key = std::make_tuple(seed, kind, rows, cols);
  auto found = cache.find(key);
  if (found != cache.end()) return found->second;
  std::vector<int> positions(rows * cols);
  for (int i = 0; i < rows * cols; ++i) positions[i] = i;
  std::mt19937_64 random(seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(kind * 1000003 + rows * 1009 + cols));
  std::shuffle(positions.begin(), positions.end(), random);
  return cache.emplace(key, std::move(positions)).first->second;
}

inline double to_double(float v) { return v; }
inline double to_double(__half v) { return __half2float(v); }
inline double to_double(__nv_bfloat16 v) { return __bfloat162float(v); }
inline void from_double(double v, float& out) { out = static_cast<float>(v); }
// Via float: double rounding to half through float is innocuous (24 >= 2 * 11 + 2 bits).
inline void from_double(double v, __half& out) { out = __float2half_rn(static_cast<float>(v)); }

struct MemoryPayload {
  void* fragment;
  const void* pointer;
  unsigned ldm;
  bool row_major;
};

struct MmaPayload {
  void* d;
  const void* a;
  const void* b;
  const void* c;
};

// Common checks of a warp-wide memory operation: same pointer / ldm / layout on every lane, CUDA's
// alignment rules.
template <typename Element>
void check_memory_operation(const char* name, void* const* payloads) {
  const auto* first = static_cast<const MemoryPayload*>(payloads[0]);
  for (int lane = 1; lane < 32; ++lane) {
    const auto* mine = static_cast<const MemoryPayload*>(payloads[lane]);
    if (mine->pointer != first->pointer || mine->ldm != first->ldm || mine->row_major != first->row_major)
      ::simt::detail::fail_in_collective(name,
                                         "lane %d passes pointer %p, ldm %u, %s layout; lane 0 passes %p, %u, %s "
                                         "(they must be the same on every lane)",
                                         lane, mine->pointer, mine->ldm, mine->row_major ? "row-major" : "col-major",
                                         first->pointer, first->ldm, first->row_major ? "row-major" : "col-major");
  }
  if (reinterpret_cast<uintptr_t>(first->pointer) % 32 != 0)
    ::simt::detail::fail_in_collective(name, "pointer %p is not 32-byte aligned", first->pointer);
  if ((first->ldm * sizeof(Element)) % 16 != 0)
    ::simt::detail::fail_in_collective(name, "ldm %u is not a multiple of 16 bytes (%zu-byte elements)", first->ldm,
                                       sizeof(Element));
}

inline void require_full_warp(const char* name, unsigned mask) {
  if (mask != 0xffffffffu) ::simt::detail::fail_in_collective(name, "needs all 32 lanes, mask 0x%08x", mask);
}

template <typename Fragment, typename Element>
void resolve_load(void* const* payloads, unsigned mask) {
  require_full_warp("load_matrix_sync", mask);
  check_memory_operation<Element>("load_matrix_sync", payloads);
  const auto* first = static_cast<const MemoryPayload*>(payloads[0]);
  const Element* source = static_cast<const Element*>(first->pointer);
  const std::vector<int>& positions = element_positions(Fragment::kind, Fragment::rows, Fragment::cols);
  for (int lane = 0; lane < 32; ++lane) {
    auto* fragment = static_cast<Fragment*>(static_cast<const MemoryPayload*>(payloads[lane])->fragment);
    for (int i = 0; i < Fragment::num_elements; ++i) {
      const int position = positions[lane * Fragment::num_elements + i];
      const int row = position / Fragment::cols, col = position % Fragment::cols;
      fragment->x[i] = first->row_major ? source[static_cast<size_t>(row) * first->ldm + col]
                                        : source[static_cast<size_t>(col) * first->ldm + row];
    }
  }
}

template <typename Fragment, typename Element>
void resolve_store(void* const* payloads, unsigned mask) {
  require_full_warp("store_matrix_sync", mask);
  check_memory_operation<Element>("store_matrix_sync", payloads);
  const auto* first = static_cast<const MemoryPayload*>(payloads[0]);
  Element* target = const_cast<Element*>(static_cast<const Element*>(first->pointer));
  const std::vector<int>& positions = element_positions(Fragment::kind, Fragment::rows, Fragment::cols);
  for (int lane = 0; lane < 32; ++lane) {
    const auto* fragment = static_cast<const Fragment*>(static_cast<const MemoryPayload*>(payloads[lane])->fragment);
    for (int i = 0; i < Fragment::num_elements; ++i) {
      const int position = positions[lane * Fragment::num_elements + i];
      const int row = position / Fragment::cols, col = position % Fragment::cols;
      (first->row_major ? target[static_cast<size_t>(row) * first->ldm + col]
                        : target[static_cast<size_t>(col) * first->ldm + row]) = fragment->x[i];
    }
  }
}

// The matrix a fragment kind holds, gathered from all lanes, as doubles; tf32 operands lose their low
// 13 bits, as the tensor core ignores them.
template <typename Fragment, bool tf32>
std::vector<double> gather(void* const* payloads, const void* MmaPayload::*member) {
  std::vector<double> matrix(Fragment::rows * Fragment::cols);
  const std::vector<int>& positions = element_positions(Fragment::kind, Fragment::rows, Fragment::cols);
  for (int lane = 0; lane < 32; ++lane) {
    const auto* fragment = static_cast<const Fragment*>(static_cast<const MmaPayload*>(payloads[lane])->*member);
    for (int i = 0; i < Fragment::num_elements; ++i) {
      double value;
      if constexpr (tf32) {
        value = ::simt::bits_float(::simt::float_bits(fragment->x[i]) & 0xffffe000u);
      } else {
        value = to_double(fragment->x[i]);
      }
      matrix[positions[lane * Fragment::num_elements + i]] = value;
    }
  }
  return matrix;
}

template <typename FragmentD, typename FragmentA, typename FragmentB, typename FragmentC, bool tf32>
void resolve_mma(void* const* payloads, unsigned mask) {
  require_full_warp("mma_sync", mask);
  constexpr int M = FragmentD::rows, N = FragmentD::cols, K = FragmentA::cols;
  const std::vector<double> a = gather<FragmentA, tf32>(payloads, &MmaPayload::a);
  const std::vector<double> b = gather<FragmentB, tf32>(payloads, &MmaPayload::b);
  const std::vector<double> c = gather<FragmentC, false>(payloads, &MmaPayload::c);
  std::vector<double> d(M * N);
  for (int row = 0; row < M; ++row)
    for (int col = 0; col < N; ++col) {
      double sum = c[row * N + col];
      for (int k = 0; k < K; ++k) sum += a[row * K + k] * b[k * N + col];
      d[row * N + col] = sum;
    }
  // Scattered only after every input is gathered: d may be the same fragment as c.
  const std::vector<int>& positions = element_positions(FragmentD::kind, M, N);
  for (int lane = 0; lane < 32; ++lane) {
    auto* fragment = static_cast<FragmentD*>(static_cast<const MmaPayload*>(payloads[lane])->d);
    for (int i = 0; i < FragmentD::num_elements; ++i)
      from_double(d[positions[lane * FragmentD::num_elements + i]], fragment->x[i]);
  }
}

}  // namespace detail

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
class fragment {
  static_assert(detail::supported<Use, M, N, K, T>(), "this wmma fragment is not modelled by the SIMT harness");

 public:
  using element_type = T;
  using storage_element_type = typename detail::Storage<T>::type;
  using layout = Layout;
  static constexpr int rows = detail::Shape<Use, M, N, K>::rows;
  static constexpr int cols = detail::Shape<Use, M, N, K>::cols;
  static constexpr int kind = detail::Shape<Use, M, N, K>::kind;
  static constexpr int num_elements = rows * cols / 32;
  storage_element_type x[num_elements];
};

template <typename Use, int M, int N, int K, typename T, typename Layout>
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f,
                   const typename fragment<Use, M, N, K, T, Layout>::storage_element_type& value) {
  for (int i = 0; i < f.num_elements; ++i) f.x[i] = value;
}

template <typename Use, int M, int N, int K, typename T, typename Layout, typename Element>
void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const Element* pointer, unsigned ldm,
                      const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  static_assert(!std::is_same<Use, accumulator>::value, "accumulator loads take a layout_t");
  static_assert(std::is_same<Layout, row_major>::value || std::is_same<Layout, col_major>::value,
                "matrix_a / matrix_b fragments need a row_major or col_major layout to be loaded");
  using Fragment = fragment<Use, M, N, K, T, Layout>;
  static_assert(std::is_same<Element, typename Fragment::storage_element_type>::value,
                "load_matrix_sync reads the fragment's element type");
  detail::MemoryPayload payload{&f, pointer, ldm, std::is_same<Layout, row_major>::value};
  ::simt::detail::warp_collective(
      {&detail::resolve_load<Fragment, Element>, "load_matrix_sync", 0xffffffffu, &payload, file, line});
}

template <int M, int N, int K, typename T, typename Element>
void load_matrix_sync(fragment<accumulator, M, N, K, T>& f, const Element* pointer, unsigned ldm, layout_t layout,
                      const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  using Fragment = fragment<accumulator, M, N, K, T>;
  static_assert(std::is_same<Element, T>::value, "load_matrix_sync reads the fragment's element type");
  detail::MemoryPayload payload{&f, pointer, ldm, layout == mem_row_major};
  ::simt::detail::warp_collective(
      {&detail::resolve_load<Fragment, Element>, "load_matrix_sync", 0xffffffffu, &payload, file, line});
}

template <int M, int N, int K, typename T, typename Element>
void store_matrix_sync(Element* pointer, const fragment<accumulator, M, N, K, T>& f, unsigned ldm, layout_t layout,
                       const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  using Fragment = fragment<accumulator, M, N, K, T>;
  static_assert(std::is_same<Element, T>::value, "store_matrix_sync writes the fragment's element type");
  detail::MemoryPayload payload{const_cast<Fragment*>(&f), pointer, ldm, layout == mem_row_major};
  ::simt::detail::warp_collective(
      {&detail::resolve_store<Fragment, Element>, "store_matrix_sync", 0xffffffffu, &payload, file, line});
}

template <int M, int N, int K, typename TA, typename LA, typename TB, typename LB, typename TC>
void mma_sync(fragment<accumulator, M, N, K, TC>& d, const fragment<matrix_a, M, N, K, TA, LA>& a,
              const fragment<matrix_b, M, N, K, TB, LB>& b, const fragment<accumulator, M, N, K, TC>& c,
              const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  static_assert(std::is_same<TA, TB>::value, "mma_sync: matrix_a and matrix_b have one element type");
  using FragmentC = fragment<accumulator, M, N, K, TC>;
  constexpr bool tf32 = std::is_same<TA, precision::tf32>::value;
  detail::MmaPayload payload{&d, &a, &b, &c};
  ::simt::detail::warp_collective({&detail::resolve_mma<FragmentC, fragment<matrix_a, M, N, K, TA, LA>,
                                                        fragment<matrix_b, M, N, K, TB, LB>, FragmentC, tf32>,
                                   "mma_sync", 0xffffffffu, &payload, file, line});
}

}  // namespace wmma
}  // namespace nvcuda
