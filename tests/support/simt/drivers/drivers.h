// The harness's commands (tests/support/simt/drivers/main.cpp): each reads a case directory, launches CUDA
// kernels through their launchers and writes the outputs.
#pragma once
#include <cuda_runtime.h>

#include "case_io.h"

namespace simt_driver {

void run_window_permute(const Case& c);
void run_pixel_shuffle(const Case& c);
void run_attention(const Case& c);
void run_wmma_check(const Case& c);
void run_harness_check(const Case& c);
void run_conversions(const Case& c);

// Exits with code 3 and the error's name when a launcher returns one (what the bindings' C10_CUDA_CHECK raises).
void check_launch(cudaError_t status, const char* what);

}  // namespace simt_driver
