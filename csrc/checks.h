// Argument checks shared by every backend's host code. The Python API validates first and raises
// ValueError/TypeError; these checks guard direct `torch.ops.swinir_kernels.*` calls so that bad
// input is an error naming the argument, never an out-of-bounds access inside a kernel.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace swinir_kernels {

inline void check_dim(const at::Tensor& t, int64_t dim, const char* name, const char* layout) {
  TORCH_CHECK_VALUE(t.dim() == dim, name, ": expected a ", dim, "-D tensor ", layout, ", got ", t.dim(),
                    "-D with shape ", t.sizes());
}

inline void check_multiple(int64_t value, int64_t window_size, const char* name) {
  TORCH_CHECK_VALUE(window_size > 0, "window_size: expected a positive integer, got ", window_size);
  TORCH_CHECK_VALUE(value % window_size == 0, name, ": expected a multiple of window_size=", window_size,
                    ", got ", value);
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
