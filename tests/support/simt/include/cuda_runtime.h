// Stand-in for <cuda_runtime.h> in the SIMT harness build (tests/support/simt): the device runtime emulated
// on the CPU, plus the project's launch helpers when compiling csrc/cuda with SWINIR_SIMT_HARNESS.
#pragma once
#include "simt_runtime.h"
#ifdef SWINIR_SIMT_HARNESS
#include "simt_project_launch.h"
#endif
