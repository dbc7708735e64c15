// at::ScalarType -> cuda::ElementType for the bindings (*.cpp); the only CUDA header that includes torch.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include "element_type.h"

namespace swinir_kernels {
namespace cuda {

inline ElementType element_type_of(const at::Tensor& t, const char* name) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return ElementType::kFloat32;
    case at::kDouble:
      return ElementType::kFloat64;
    case at::kHalf:
      return ElementType::kFloat16;
    case at::kBFloat16:
      return ElementType::kBFloat16;
    default:
      TORCH_CHECK_TYPE(false, name, ": expected dtype float16, bfloat16, float32 or float64 on CUDA, got ",
                       t.scalar_type());
  }
}

// The dtype the kernels compute in for `t`: float64 for float64 tensors, float32 for narrower ones.
inline at::ScalarType compute_dtype_of(const at::Tensor& t) {
  return t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

}  // namespace cuda
}  // namespace swinir_kernels
