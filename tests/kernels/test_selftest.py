"""``python -m swinir_kernels.selftest``, and the public ops on Triton under the plain interpreter, run
the way a user runs them: in a fresh process, without the tests' GPU-faithful interpreter mode (which
types float arguments as compiled code does, and so hid a failure of fp64 attention here)."""

import pytest

import swinir_kernels
from tests.helpers import HAS_C_EXTENSION, run_python

needs_triton = pytest.mark.skipif(swinir_kernels.triton.UNAVAILABLE is not None, reason="triton is not installed")


@needs_triton
@pytest.mark.skipif(not HAS_C_EXTENSION, reason="selftest --device cpu checks the C++ kernels")
def test_selftest_quick_passes_on_the_cpu_under_the_plain_interpreter():
    done = run_python(
        "import sys; from swinir_kernels import selftest; sys.exit(selftest.main(['--device', 'cpu', '--quick']))",
        timeout=600, TRITON_INTERPRET="1",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 5 * 2 * 4  # ops x (cpu, triton) x dtypes
    assert not [row for row in rows if "| FAIL |" in row]
    for op in ("window_attention", "shifted_window_attention"):
        assert f"| {op} | triton | float64 | pass |" in done.stdout
    assert "0 failed" in done.stdout and "not timed (--quick)" in done.stdout


PUBLIC_OPS_ON_TRITON = """
    import torch, swinir_kernels as sk
    from swinir_kernels import reference
    sk.use_backend("triton")
    torch.manual_seed(0)
    for dtype in (torch.float64, torch.float32):
        qkv, bias = torch.randn(2, 8, 8, 3 * 8, dtype=dtype), torch.randn(2, 16, 16, dtype=dtype)
        out = sk.shifted_window_attention(qkv, bias, num_heads=2, window_size=4, shift=2)
        torch.testing.assert_close(out, reference.shifted_window_attention(qkv, bias, 2, 4, 2, 0.5))
        windows = qkv.reshape(8, 16, 24)
        out = sk.window_attention(windows, bias, num_heads=2, scale=0.3)
        torch.testing.assert_close(out, reference.window_attention(windows, bias, None, 2, 0.3))
        x = torch.randn(1, 12, 3, 5, dtype=dtype)
        torch.testing.assert_close(sk.pixel_shuffle(x, 2, scale=torch.full((3,), 0.5, dtype=dtype), out_size=(5, 9)),
                                   reference.pixel_shuffle(x, 2, torch.full((3,), 0.5, dtype=dtype), None, 5, 9))
        image = torch.randn(1, 8, 12, 3, dtype=dtype)
        assert torch.equal(sk.window_partition(image, 4, 2), reference.window_partition(image, 4, 2))
        print(dtype, sk.backends_used()["window_attention"])
"""


@needs_triton
def test_public_ops_on_triton_under_the_plain_interpreter():
    done = run_python(PUBLIC_OPS_ON_TRITON, timeout=600, TRITON_INTERPRET="1")
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.splitlines() == [f"torch.{d} triton: backend 'triton' was requested" for d in ("float64", "float32")]
