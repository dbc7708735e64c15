// The element types the CUDA kernels handle, named without torch headers so that the plain-CUDA
// kernel files (*.cu) and the torch-facing bindings (*.cpp) can share launch parameter structs.
#pragma once

namespace swinir_kernels {
namespace cuda {

enum class ElementType { kFloat32, kFloat64, kFloat16, kBFloat16 };

}  // namespace cuda
}  // namespace swinir_kernels
