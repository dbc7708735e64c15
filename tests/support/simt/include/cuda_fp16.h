// Stand-in for <cuda_fp16.h> in the SIMT harness build (tests/support/simt).
#pragma once
#include "simt_half.h"
