// Driver of the harness's self-test kernels: case keys check, blocks, threads, out_count; writes out
// (int32, initialised to -1).
#include "../kernels/harness_check.h"
#include "case_io.h"
#include "drivers.h"

namespace simt_driver {

void run_harness_check(const Case& c) {
  const auto out = Case::output(static_cast<size_t>(c.integer("out_count")) * sizeof(int));
  check_launch(simt_tests::launch_harness_check(c.text("check").c_str(), static_cast<int>(c.integer("blocks")),
                                                static_cast<int>(c.integer("threads")), static_cast<int*>(out->data())),
               "launch_harness_check");
  c.write("out", out->data(), out->size());
}

}  // namespace simt_driver
