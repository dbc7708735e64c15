// The SIMT harness executable: `simt_kernels <command> <case directory>`. The schedule comes from the
// environment: SIMT_ORDER=forward|reversed|shuffled|warp-major|warp-major-reversed (default forward), SIMT_SEED=<integer> (default 0).
// Exit codes: 0 ok, 2 bad case, 3 a launch error, 86 a SIMT error (see tests/support/simt/README.md).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "drivers.h"

namespace simt_driver {

void check_launch(cudaError_t status, const char* what) {
  if (status == cudaSuccess) return;
  std::fprintf(stderr, "launch error: %s returned %d (%s)\n", what, static_cast<int>(status), cudaGetErrorString(status));
  std::exit(3);
}

}  // namespace simt_driver

int main(int argc, char** argv) {
  using namespace simt_driver;
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s <command> <case directory>\n", argv[0]);
    return 2;
  }
  const char* order = std::getenv("SIMT_ORDER");
  const char* seed = std::getenv("SIMT_SEED");
  simt::Order schedule = simt::Order::kForward;
  if (order != nullptr && std::strcmp(order, "reversed") == 0) schedule = simt::Order::kReversed;
  else if (order != nullptr && std::strcmp(order, "shuffled") == 0) schedule = simt::Order::kShuffled;
  else if (order != nullptr && std::strcmp(order, "warp-major") == 0) schedule = simt::Order::kWarpMajor;
  else if (order != nullptr && std::strcmp(order, "warp-major-reversed") == 0) schedule = simt::Order::kWarpMajorReversed;
  else if (order != nullptr && std::strcmp(order, "forward") != 0)
    fail(std::string("SIMT_ORDER: expected forward, reversed, shuffled, warp-major or warp-major-reversed, got ") + order);
  simt::configure(schedule, seed == nullptr ? 0 : std::strtoull(seed, nullptr, 10));

  const Case c(argv[2]);
  const std::string command = argv[1];
  if (command == "window_permute") run_window_permute(c);
  else if (command == "pixel_shuffle") run_pixel_shuffle(c);
  else if (command == "attention") run_attention(c);
  else if (command == "wmma_check") run_wmma_check(c);
  else if (command == "harness_check") run_harness_check(c);
  else if (command == "conversions") run_conversions(c);
  else fail("unknown command " + command);
  return 0;
}
