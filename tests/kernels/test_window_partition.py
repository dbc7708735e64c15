"""window_partition / window_reverse on every kernel backend, bit-exact against swinir_kernels.reference.

Inputs hold distinct values (arange, or for 16-bit types distinct finite bit patterns), so torch.equal
catches any misplaced element. The Triton backend runs under TRITON_INTERPRET=1 on CPU.
"""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import swinir_kernels as sk
from swinir_kernels import reference
from tests.helpers import needs_cuda, skip_unless_runs

# (backend, device): the kernel backends; CUDA ones are skipped without a GPU.
KERNEL_BACKENDS = [
    pytest.param("cpu", "cpu", id="cpu"),
    pytest.param("triton", "cpu", id="triton-interpreter"),
    pytest.param("cuda", "cuda", id="cuda", marks=needs_cuda),
    pytest.param("triton", "cuda", id="triton-cuda", marks=needs_cuda),
]
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]

# (B, H, W, C, ws): nH != nW, a single window row (nH = 1), a single column (nW = 1), square; ws 8 and 7.
SHAPES = [
    (2, 16, 24, 5, 8),
    (1, 8, 32, 3, 8),
    (2, 21, 7, 4, 7),
    (1, 14, 14, 6, 7),
]


def distinct(shape, dtype, device="cpu") -> torch.Tensor:
    """Pairwise distinct finite values: arange for fp32/fp64; for 16-bit floats, consecutive bit
    patterns from 0x3C00 (all positive, finite and exact: fp16 1.0 .. 65504, bf16 2**-7 .. ~1e38)."""
    n = torch.Size(shape).numel()
    if torch.finfo(dtype).bits == 16:
        assert n <= 16384, "more elements than distinct finite 16-bit patterns from 0x3C00"
        return (torch.arange(n, dtype=torch.int16, device=device) + 0x3C00).view(dtype).reshape(shape)
    return torch.arange(n, dtype=dtype, device=device).reshape(shape)


def shifts(ws):
    return [0, ws // 2, -(ws // 2)]


def run(backend, op, *args):
    skip_unless_runs(backend, op, args[0])
    with sk.use_backend(backend):
        return getattr(sk, op)(*args)


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("B,H,W,C,ws", SHAPES)
def test_partition_and_reverse_match_reference(backend, device, dtype, B, H, W, C, ws):
    x = distinct((B, H, W, C), dtype, device)
    for shift in shifts(ws):
        windows = run(backend, "window_partition", x, ws, shift)
        expected = reference.window_partition(x, ws, shift)
        assert windows.is_contiguous() and torch.equal(windows, expected), f"partition, shift={shift}"
        # Distinct values in window layout, so reverse is checked on its own, not only as a round trip.
        image = run(backend, "window_reverse", expected, ws, H, W, shift)
        assert torch.equal(image, reference.window_reverse(expected, ws, H, W, shift)), f"reverse, shift={shift}"
        assert torch.equal(run(backend, "window_reverse", windows, ws, H, W, shift), x), f"round trip, shift={shift}"


def test_triton_moves_bfloat16_bits_exactly():
    """The interpreter mishandles bfloat16 arithmetic, but the permutation kernels copy integer views:
    exact for bf16 even there, so the backend chooser lets them run it."""
    x = distinct((2, 16, 24, 5), torch.bfloat16)
    skip_unless_runs("triton", "window_partition", x)
    with sk.use_backend("triton"):
        windows = sk.window_partition(x, 8, 4)
        assert torch.equal(windows, reference.window_partition(x, 8, 4))
        assert torch.equal(sk.window_reverse(windows, 8, 16, 24, 4), x)


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
@pytest.mark.parametrize("layout", ["transposed", "channel-strided"])
def test_non_contiguous_inputs(backend, device, layout):
    B, H, W, C, ws, shift = 2, 16, 24, 3, 8, 4
    if layout == "transposed":  # (B, W, H, C) storage viewed as (B, H, W, C)
        x = distinct((B, W, H, C), torch.float32, device).transpose(1, 2)
    else:  # every other channel
        x = distinct((B, H, W, 2 * C), torch.float32, device)[..., ::2]
    assert not x.is_contiguous()
    windows = run(backend, "window_partition", x, ws, shift)
    assert torch.equal(windows, reference.window_partition(x, ws, shift))
    strided_windows = distinct((windows.shape[0], windows.shape[1], 2 * C), torch.float32, device)[..., 1::2]
    assert torch.equal(
        run(backend, "window_reverse", strided_windows, ws, H, W, shift),
        reference.window_reverse(strided_windows, ws, H, W, shift),
    )


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("B,H,W,C,ws", [SHAPES[0], SHAPES[2]])
def test_gradients_are_the_inverse_permutation(backend, device, dtype, B, H, W, C, ws):
    shift = ws // 2
    x = distinct((B, H, W, C), dtype, device).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    windows = run(backend, "window_partition", x, ws, shift)
    grad = distinct(windows.shape, dtype, device) + 0.5
    windows.backward(grad)
    reference.window_partition(x_ref, ws, shift).backward(grad)
    assert torch.equal(x.grad, x_ref.grad)

    w = distinct(windows.shape, dtype, device).requires_grad_()
    w_ref = w.detach().clone().requires_grad_()
    image_grad = distinct((B, H, W, C), dtype, device) - 7
    run(backend, "window_reverse", w, ws, H, W, shift).backward(image_grad)
    reference.window_reverse(w_ref, ws, H, W, shift).backward(image_grad)
    assert torch.equal(w.grad, w_ref.grad)


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
def test_more_than_65535_windows(backend, device):
    """A 1-D grid: CUDA's 65,535 limit on grid dims y/z must not cap the number of windows."""
    x = torch.arange(512 * 520, dtype=torch.float32, device=device).reshape(1, 512, 520, 1)
    windows = run(backend, "window_partition", x, 2, 1)
    assert windows.shape[0] == 66560
    assert torch.equal(windows, reference.window_partition(x, 2, 1))
    assert torch.equal(run(backend, "window_reverse", windows, 2, 512, 520, 1), x)


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
def test_torch_compile_fullgraph(backend, device):
    """The ops stay in the graph (fakes registered): partition -> scale -> reverse, with backward."""
    skip_unless_runs(backend, "window_partition", torch.empty(1, device=device))
    torch._dynamo.reset()

    def block(x):
        return sk.window_reverse(sk.window_partition(x, 8, 4) * 2.0, 8, 16, 24, 4)

    x = distinct((2, 16, 24, 5), torch.float32, device).requires_grad_()
    with sk.use_backend(backend):
        out = torch.compile(block, fullgraph=True)(x)
        out.backward(torch.ones_like(out))
    assert torch.equal(out, 2.0 * x.detach())
    assert torch.equal(x.grad, torch.full_like(x, 2.0))


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda: sk.window_partition(torch.zeros(16, 16, 3), 8), ValueError, "x: expected a 4-D"),
        (lambda: sk.window_partition([1, 2], 8), TypeError, "x: expected a torch.Tensor"),
        (lambda: sk.window_partition(torch.zeros(1, 12, 16, 3), 8), ValueError, r"x.shape\[1\] \(H\)"),
        (lambda: sk.window_partition(torch.zeros(1, 16, 12, 3), 8), ValueError, r"x.shape\[2\] \(W\)"),
        (lambda: sk.window_partition(torch.zeros(1, 16, 16, 3), 8.0), TypeError, "window_size: expected an int"),
        (lambda: sk.window_partition(torch.zeros(1, 16, 16, 3), 0), ValueError, "window_size: expected an int >= 1"),
        (lambda: sk.window_partition(torch.zeros(1, 16, 16, 3), 8, 0.5), TypeError, "shift: expected an int"),
        (lambda: sk.window_reverse(torch.zeros(4, 63, 3), 8, 16, 16), ValueError, r"windows.shape\[1\]"),
        (lambda: sk.window_reverse(torch.zeros(3, 64, 3), 8, 16, 16), ValueError, r"windows.shape\[0\]"),
        (lambda: sk.window_reverse(torch.zeros(4, 64, 3), 8, 16, 12), ValueError, "W: expected a multiple"),
        (lambda: sk.window_reverse(torch.zeros(4, 64), 8, 16, 16), ValueError, "windows: expected a 3-D"),
    ],
)
def test_bad_input_errors_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda op: op.window_partition_triton(torch.zeros(1, 12, 16, 3), 8, 0), r"x.shape\[1\] \(H\)"),
        (lambda op: op.window_reverse_triton(torch.zeros(3, 64, 3), 8, 16, 16, 0), r"windows.shape\[0\]"),
        (lambda op: op.window_reverse_triton(torch.zeros(4, 60, 3), 8, 16, 16, 0), r"windows.shape\[1\]"),
    ],
)
def test_triton_ops_check_their_arguments(call, match):
    """Called directly (bypassing the public checks), the custom ops still refuse before launching."""
    skip_unless_runs("triton", "window_partition", torch.empty(1))
    with pytest.raises(ValueError, match=match):
        call(torch.ops.swinir_kernels)


@pytest.mark.parametrize("op", ["window_partition", "window_reverse"])
def test_triton_channel_offsets_past_2_31(op):
    """A channel stride of 2**30 (C = 3): c * stride reaches 2**31 for c = 2, which 32-bit offsets
    wrap (the GPU-faithful interpreter types the stride i32, as a launch does). The strided view lies in
    a 4 GiB int8 allocation that is never touched beyond its few used pages, and starts 2**31 bytes in,
    so a wrapped offset reads valid (wrong) memory instead of crashing."""
    skip_unless_runs("triton", op, torch.empty(1))
    try:
        storage = torch.empty(2**32 + 4096, dtype=torch.int8)
    except RuntimeError as error:
        pytest.skip(f"cannot reserve 4 GiB of address space: {error}")
    values = (torch.arange(192) % 101 + 1).to(torch.int8)  # distinct per channel, never 0 (fresh memory)
    if op == "window_partition":
        x = storage.as_strided((1, 8, 8, 3), (64, 8, 1, 2**30), 2**31)
        x.copy_(values.reshape(1, 3, 8, 8).permute(0, 2, 3, 1))
        result = torch.ops.swinir_kernels.window_partition_triton(x, 8, 4)
        expected = reference.window_partition(x.contiguous(), 8, 4)
    else:
        windows = storage.as_strided((1, 64, 3), (64, 1, 2**30), 2**31)
        windows.copy_(values.reshape(1, 3, 64).transpose(1, 2))
        result = torch.ops.swinir_kernels.window_reverse_triton(windows, 8, 8, 8, 4)
        expected = reference.window_reverse(windows.contiguous(), 8, 8, 8, 4)
    assert torch.equal(result, expected)


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
@given(data=st.data())
def test_any_window_and_shift_is_the_reference_permutation(backend, device, data):
    """Hypothesis: rectangular and square windows (wh, ww), shifts of any sign and size on each axis
    (beyond the image too: the roll is modulo H and W), several windows per row and column, any dtype:
    partition is the reference's permutation bit for bit, and reverse undoes it."""
    skip_unless_runs(backend, "window_partition", torch.empty(0, device=device))
    wh, ww = data.draw(st.integers(1, 12), label="wh"), data.draw(st.integers(1, 12), label="ww")
    B, rows, cols = (data.draw(st.integers(1, 3), label=name) for name in ("B", "rows", "cols"))
    H, W = rows * wh, cols * ww
    shift = (data.draw(st.integers(-2 * H, 2 * H), label="sh"), data.draw(st.integers(-2 * W, 2 * W), label="sw"))
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    C = data.draw(st.integers(1, max(1, min(6, 16384 // (B * H * W)))), label="C")
    x = distinct((B, H, W, C), dtype, device)
    windows = run(backend, "window_partition", x, (wh, ww), shift)
    assert torch.equal(windows, reference.window_partition(x, (wh, ww), shift))
    assert torch.equal(run(backend, "window_reverse", windows, (wh, ww), H, W, shift), x)
