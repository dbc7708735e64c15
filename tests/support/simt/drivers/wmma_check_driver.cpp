// Driver of the WMMA emulation's test kernels: case keys kind, warps, lda, ldb, ldc, a_tile, b_tile,
// c_tile, a_bytes, b_bytes, c_bytes, c_row_major, d_row_major, round_tf32, alpha; files a, b, c; writes d.
#include <memory>

#include "../kernels/wmma_check.h"
#include "case_io.h"
#include "drivers.h"

namespace simt_driver {

void run_wmma_check(const Case& c) {
  const auto a = c.read("a", c.integer("a_bytes"));
  const auto b = c.read("b", c.integer("b_bytes"));
  const auto accumulator = c.read("c", c.integer("c_bytes"));
  const auto d = Case::output(c.integer("c_bytes"));
  simt_tests::WmmaCheckParams p{};
  p.a = a->data();
  p.b = b->data();
  p.c = accumulator->data();
  p.d = d->data();
  p.a_tile = c.integer("a_tile");
  p.b_tile = c.integer("b_tile");
  p.c_tile = c.integer("c_tile");
  p.lda = static_cast<unsigned>(c.integer("lda"));
  p.ldb = static_cast<unsigned>(c.integer("ldb"));
  p.ldc = static_cast<unsigned>(c.integer("ldc"));
  p.c_row_major = c.integer("c_row_major") != 0;
  p.d_row_major = c.integer("d_row_major") != 0;
  p.round_tf32 = c.integer("round_tf32") != 0;
  p.alpha = static_cast<float>(c.real("alpha"));
  p.warps = static_cast<int>(c.integer("warps"));
  check_launch(simt_tests::launch_wmma_check(c.text("kind").c_str(), p), "launch_wmma_check");
  c.write("d", d->data(), d->size());
}

}  // namespace simt_driver
