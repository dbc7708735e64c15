// The harness's __half / __nv_bfloat16 conversions on a table of floats: case key count; file values
// (float32); writes half (float -> __half bits), bfloat16 (float -> __nv_bfloat16 bits), half_to_float and
// bfloat16_to_float (every 16-bit pattern back to float32).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <vector>

#include "case_io.h"
#include "drivers.h"

namespace simt_driver {

void run_conversions(const Case& c) {
  const size_t count = static_cast<size_t>(c.integer("count"));
  const auto values = c.read("values", count * sizeof(float));
  const float* source = static_cast<const float*>(values->data());
  std::vector<uint16_t> half_bits(count), bfloat16_bits(count);
  for (size_t i = 0; i < count; ++i) {
    half_bits[i] = __half_as_ushort(__float2half_rn(source[i]));
    bfloat16_bits[i] = __bfloat16_as_ushort(__float2bfloat16_rn(source[i]));
  }
  std::vector<float> half_to_float(65536), bfloat16_to_float(65536);
  for (uint32_t bits = 0; bits < 65536; ++bits) {
    half_to_float[bits] = __half2float(__ushort_as_half(static_cast<unsigned short>(bits)));
    bfloat16_to_float[bits] = __bfloat162float(__ushort_as_bfloat16(static_cast<unsigned short>(bits)));
  }
  c.write("half", half_bits.data(), count * sizeof(uint16_t));
  c.write("bfloat16", bfloat16_bits.data(), count * sizeof(uint16_t));
  c.write("half_to_float", half_to_float.data(), half_to_float.size() * sizeof(float));
  c.write("bfloat16_to_float", bfloat16_to_float.data(), bfloat16_to_float.size() * sizeof(float));
}

}  // namespace simt_driver
