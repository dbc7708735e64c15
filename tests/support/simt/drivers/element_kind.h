// dtype names of the case files -> the kernels' ElementType and element size.
#pragma once
#include <string>

#include "case_io.h"
#include "element_type.h"

namespace simt_driver {

struct ElementKind {
  swinir_kernels::cuda::ElementType type;
  size_t size;         // bytes per element
  size_t compute_size; // bytes per compute-type value (double for float64, else float)
};

inline ElementKind element_kind(const std::string& dtype) {
  using swinir_kernels::cuda::ElementType;
  if (dtype == "float32") return {ElementType::kFloat32, 4, 4};
  if (dtype == "float64") return {ElementType::kFloat64, 8, 8};
  if (dtype == "float16") return {ElementType::kFloat16, 2, 4};
  if (dtype == "bfloat16") return {ElementType::kBFloat16, 2, 4};
  fail("dtype: expected float32, float64, float16 or bfloat16, got " + dtype);
}

}  // namespace simt_driver
