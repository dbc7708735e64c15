"""The static GPU report (bench/static_report.py): every GPU kernel specialization compiles for sm_80 and
sm_90 here, without a GPU; on sm_90 none uses local memory (spills) and none exceeds the register
budget declared next to it; the committed report (bench/results/static-report.*) is the one the
current sources give.

The interpreter that runs the Triton tests on the CPU executes the kernels' Python semantics; it does
not check what only the GPU compiler checks (tl.dot shapes and dtypes, layouts, register allocation,
ptxas). The SIMT harness runs the CUDA kernels' semantics, not their register allocation. This file
covers what the GPU compiler decides.
"""

import os
import re
import sys

import pytest

from tests.helpers import ROOT, run_python

from bench import static_report

COMMITTED = os.path.join(ROOT, "bench", "results")
# What identifies a row; the numbers in the other columns come from the installed compilers.
ROW_KEY = ("backend", "kernel", "specialization", "sm")


def test_committed_report_matches_the_kernel_sources():
    """Any change to a kernel source must come with `python -m bench.static_report` rerun."""
    text = open(os.path.join(COMMITTED, "static-report.md")).read()
    digest = re.search(r"from kernel sources ([0-9a-f]{16})", text).group(1)
    assert digest == static_report.source_digest(), "kernel sources changed: rerun python -m bench.static_report"


def test_committed_report_has_no_problems():
    reports = static_report.read_reports(COMMITTED)
    assert static_report.problems(reports) == []
    # The attention kernels run their 16-bit and TF32 dots on tensor cores (fp32 IEEE dots cannot).
    for r in reports:
        tensor_core_kernel = r.kernel.startswith("_window_attention_") or r.specialization.startswith(
            "window_attention_tc_kernel.cu")
        if tensor_core_kernel and r.sm == 90 and "DOT_PRECISION=ieee" not in r.specialization and "fp64" not in r.specialization:
            assert r.tensor_core_instructions > 0, r


def test_static_report_regenerates_with_the_same_kernels(tmp_path):
    """Regenerates the report (every Triton launch of the ops compiled for sm_80 and sm_90, every CUDA
    file through nvcc, the CUDA launch geometry through the SIMT harness) with --check, and compares
    the kernels it lists with the committed report. ~3 minutes on 2 cores with a cold Triton cache."""
    pytest.importorskip("triton")
    result = run_python(
        f"import runpy, sys; sys.argv = ['static_report', '--check', '--out', {str(tmp_path)!r}]; "
        f"runpy.run_path({os.path.join(ROOT, 'bench', 'static_report.py')!r}, run_name='__main__')",
        timeout=1800, TRITON_INTERPRET=None,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    fresh = {tuple(getattr(r, k) for k in ROW_KEY) for r in static_report.read_reports(str(tmp_path))}
    committed = {tuple(getattr(r, k) for k in ROW_KEY) for r in static_report.read_reports(COMMITTED)}
    assert fresh == committed, f"new: {sorted(fresh - committed)[:5]}, gone: {sorted(committed - fresh)[:5]}"


def test_occupancy_follows_the_calculator():
    # 64 registers x 256 threads: 2048 registers a warp, 32 warps by registers -> 4 blocks.
    assert static_report.occupancy(90, 64, 256, 0) == "32/64 (4 blocks, registers)"
    # 82 KB of shared memory per block: two blocks fit in sm_90's 228 KB, one in sm_80's 164 KB.
    assert static_report.occupancy(90, 32, 256, 81664).startswith("16/64 (2 blocks, shared")
    # 255 registers x 256 threads: one block.
    assert static_report.occupancy(90, 255, 256, 0) == "8/64 (1 blocks, registers)"


def test_check_refuses_spills_missing_and_exceeded_budgets():
    def report(**changes):
        values = dict(backend="cuda", kernel="k", specialization="x.cu <float>", sm=90, registers=64,
                      register_budget=64, spill_store_bytes=0, spill_load_bytes=0, stack_bytes=0,
                      static_shared_bytes=0, launch_shared_bytes=0, threads=256, occupancy="-",
                      tensor_core_instructions=0, global_loads="-", async_copies="-", global_stores="-",
                      compile_seconds=0.0)  # fmt: skip
        return static_report.KernelReport(**{**values, **changes})

    assert static_report.problems([report()]) == []
    assert "local memory" in static_report.problems([report(stack_bytes=16, spill_store_bytes=16)])[0]
    assert "no register budget" in static_report.problems([report(register_budget=0)])[0]
    assert "over its budget" in static_report.problems([report(registers=65)])[0]
    assert static_report.problems([report(registers=65, sm=80)]) == []  # sm_80 is reported, not enforced


def test_budgets_are_read_from_the_comment_above_the_kernel(tmp_path):
    source = tmp_path / "k.cu"
    source.write_text(
        "// register budget: 96; <double> 128 (why)\n// more words\ntemplate <typename T>\n"
        "__global__ void kern(T* x) {}\n\n__global__ void bare(float* x) {}\n"
    )
    budgets = static_report.declared_budgets(str(source), re.compile(r"__global__\s+void\s+(\w+)\("))
    assert budgets == {"kern": (96, {"<double>": 128})}
    assert static_report.budget_for(budgets, "kern", "<float>") == 96
    assert static_report.budget_for(budgets, "kern", "<double>") == 128
    assert static_report.budget_for(budgets, "bare", "") == 0
