// Stand-in for <cuda_bf16.h> in the SIMT harness build (tests/simt).
#pragma once
#include "simt_half.h"
