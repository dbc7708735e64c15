// Argument checks shared by every backend's host code. The Python API validates first and raises
// ValueError/TypeError; these checks guard direct `torch.ops.swinir_kernels.*` calls so that bad
// input is an error naming the argument, never an out-of-bounds access inside a kernel.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Exception.h>

namespace swinir_kernels {

inline void check_dim(const at::Tensor& t, int64_t dim, const char* name, const char* layout) {
  TORCH_CHECK_VALUE(t.dim() == dim, name, ": expected a ", dim, "-D tensor ", layout, ", got ", t.dim(),
                    "-D with shape ", t.sizes());
}

// value % divisor == 0, with divisor a window extent (divisor_name, e.g. "window_size[0]") already
// checked positive by window_shape.
inline void check_multiple(int64_t value, int64_t divisor, const char* name, const char* divisor_name) {
  TORCH_CHECK_VALUE(value % divisor == 0, name, ": expected a multiple of ", divisor_name, "=", divisor, ", got ",
                    value);
}

// A window's extent (wh, ww) or a cyclic shift (sh, sw) along (H, W): an `int[2]` schema argument, to
// which Python may pass one int (the schema repeats it).
struct AxisPair {
  int64_t h, w;
};

// window_size as (wh, ww), both >= 1.
inline AxisPair window_shape(at::IntArrayRef window_size) {
  TORCH_CHECK_VALUE(window_size.size() == 2, "window_size: expected an int or 2 ints (wh, ww), got ",
                    window_size.size(), " values");
  TORCH_CHECK_VALUE(window_size[0] >= 1 && window_size[1] >= 1, "window_size: expected ints >= 1, got ",
                    window_size);
  return {window_size[0], window_size[1]};
}

// shift as (sh, sw); any ints (a permutation rolls by them modulo the image).
inline AxisPair shift_pair(at::IntArrayRef shift) {
  TORCH_CHECK_VALUE(shift.size() == 2, "shift: expected an int or 2 ints (sh, sw), got ", shift.size(), " values");
  return {shift[0], shift[1]};
}

inline void check_same_device(const at::Tensor& a, const at::Tensor& b, const char* name_a, const char* name_b) {
  TORCH_CHECK_VALUE(a.device() == b.device(), name_b, ": expected device ", a.device(), " (the device of ",
                    name_a, "), got ", b.device());
}

// Python's `%`: the result has the sign of the divisor, so a negative shift rolls the other way.
inline int64_t positive_mod(int64_t value, int64_t modulus) {
  int64_t r = value % modulus;
  return r < 0 ? r + modulus : r;
}

}  // namespace swinir_kernels
