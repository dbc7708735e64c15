// __half and __nv_bfloat16 for the SIMT harness: storage types with CUDA's conversion intrinsics,
// bit-exact: round-to-nearest-even, subnormals kept, overflow to infinity, NaN to the canonical 0x7fff
// (what cvt.rn.f16.f32 / cvt.rn.bf16.f32 produce). Like the nvcc build (-D__CUDA_NO_HALF_OPERATORS__
// -D__CUDA_NO_HALF_CONVERSIONS__ -D__CUDA_NO_BFLOAT16_CONVERSIONS__), there are no implicit conversions
// or arithmetic operators; the __h* intrinsics compute in float and round once, which is correctly
// rounded for +, -, * (float's 24 bits >= 2 * 11 + 2, so the double rounding is innocuous).
#pragma once
#include <cstdint>
#include <cstring>

struct __half {
  uint16_t __x;
};
struct __nv_bfloat16 {
  uint16_t __x;
};
typedef __nv_bfloat16 nv_bfloat16;
typedef __half half;

namespace simt {

inline uint32_t float_bits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return bits;
}
inline float bits_float(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Rounds `value` (an integer) right by `shift` bits to nearest, ties to even.
inline uint32_t shift_right_nearest_even(uint32_t value, int shift) {
  const uint32_t quotient = value >> shift;
  const uint32_t remainder = value & ((1u << shift) - 1u);
  const uint32_t half_ulp = 1u << (shift - 1);
  return quotient + ((remainder > half_ulp || (remainder == half_ulp && (quotient & 1u))) ? 1u : 0u);
}

inline uint16_t float_to_half_bits(float f) {
  const uint32_t x = float_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t magnitude = x & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return 0x7fffu;                       // NaN
  if (magnitude >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 rounds to inf
  const uint32_t exponent = magnitude >> 23;
  const uint32_t significand = (magnitude & 0x7fffffu) | 0x800000u;
  if (magnitude < 0x38800000u) {  // below 2^-14: a half subnormal (in units of 2^-24) or zero
    if (magnitude <= 0x33000000u) return static_cast<uint16_t>(sign);  // <= 2^-25 (the tie) rounds to 0
    return static_cast<uint16_t>(sign | shift_right_nearest_even(significand, static_cast<int>(126 - exponent)));
  }
  // Normal: rebias the exponent, round the 23-bit fraction to 10 bits (a carry may bump the exponent).
  const uint32_t rebased = ((exponent - 112u) << 23) | (magnitude & 0x7fffffu);
  return static_cast<uint16_t>(sign | shift_right_nearest_even(rebased, 13));
}

inline float half_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t fraction = h & 0x3ffu;
  if (exponent == 0x1fu) return bits_float(sign | 0x7f800000u | (fraction << 13));
  if (exponent != 0) return bits_float(sign | ((exponent + 112u) << 23) | (fraction << 13));
  // Zero or subnormal: fraction * 2^-24, exact in float.
  const float magnitude = static_cast<float>(fraction) * 5.9604644775390625e-08f;
  return sign ? -magnitude : magnitude;
}

inline uint16_t float_to_bfloat16_bits(float f) {
  const uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;  // NaN
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

inline float bfloat16_bits_to_float(uint16_t b) { return bits_float(static_cast<uint32_t>(b) << 16); }

}  // namespace simt

inline __half __float2half_rn(float f) { return __half{::simt::float_to_half_bits(f)}; }
inline __half __float2half(float f) { return __float2half_rn(f); }
inline float __half2float(__half h) { return ::simt::half_bits_to_float(h.__x); }
inline __half __ushort_as_half(unsigned short bits) { return __half{bits}; }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline bool __hisnan(__half h) { return (h.__x & 0x7fffu) > 0x7c00u; }
inline bool __hisinf(__half h) { return (h.__x & 0x7fffu) == 0x7c00u; }
inline __half __hadd(__half a, __half b) { return __float2half_rn(__half2float(a) + __half2float(b)); }
inline __half __hsub(__half a, __half b) { return __float2half_rn(__half2float(a) - __half2float(b)); }
inline __half __hmul(__half a, __half b) { return __float2half_rn(__half2float(a) * __half2float(b)); }
inline __half __hneg(__half a) { return __half{static_cast<uint16_t>(a.__x ^ 0x8000u)}; }

inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16{::simt::float_to_bfloat16_bits(f)}; }
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
inline float __bfloat162float(__nv_bfloat16 b) { return ::simt::bfloat16_bits_to_float(b.__x); }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short bits) { return __nv_bfloat16{bits}; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.__x; }
inline __nv_bfloat16 __hadd(__nv_bfloat16 a, __nv_bfloat16 b) {
  return __float2bfloat16_rn(__bfloat162float(a) + __bfloat162float(b));
}
inline __nv_bfloat16 __hmul(__nv_bfloat16 a, __nv_bfloat16 b) {
  return __float2bfloat16_rn(__bfloat162float(a) * __bfloat162float(b));
}
