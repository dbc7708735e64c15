"""window_attention and shifted_window_attention as properties, for every Swin-style window: cases drawn
by Hypothesis (square and rectangular windows up to what each backend declares, any shift below the
window on each axis, heads, head_dims 1..128, batch, storage offsets and channel strides, every dtype),
each backend's forward and both gradients against swinir_kernels.reference; the released models'
shapes as explicit cases; DAT's zero padding (``padded_size``).

Profiles (tests/conftest.py): ``ci`` by default (a bounded, derandomized example count);
``SWINIR_HYPOTHESIS_PROFILE=long`` for ten times the examples. The Triton backend runs under the
GPU-faithful interpreter on CPU tensors, so its draws are kept to a small amount of work per example.
"""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, note
from hypothesis import strategies as st

import swinir_kernels
from swinir_kernels import reference, registry, tolerances
from tests.helpers import TRITON_INTERPRET, needs_cuda, skip_unless_runs
from tests.kernels.test_window_attention import (
    OPS,
    assert_all_close,
    assert_within_half_precision_error,
    device_for,
    forward_backward,
    require,
)

BACKENDS = ["cpu", "triton", pytest.param("cuda", marks=[needs_cuda, pytest.mark.cuda])]
DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)
# Head dims the family uses (SwinIR 10 and 30, HAT-S 24, ATD 35, DRCT 53, 77, 122) and the edges.
FAMILY_HEAD_DIMS = (1, 10, 24, 30, 35, 53, 64, 77, 122, 128)


def interpreted(backend: str) -> bool:
    return backend == "triton" and TRITON_INTERPRET


def work_budget(backend: str) -> int:
    """Tokens x windows x heads one example may compute: the interpreter runs Triton programs in Python
    (the flash kernels' cost grows with N^2: a 256-token window of one head takes about a second)."""
    return 256 if interpreted(backend) else 40000


@st.composite
def attention_cases(draw, backend: str):
    """(batch, (wh, ww), (sh, sw), grid rows, grid columns, channels, heads, dtype, storage) within what
    `backend` declares for shifted_window_attention (its Support's max_tokens and max_head_dim)."""
    support = registry.get("shifted_window_attention").backends.get(backend)
    max_tokens = min(getattr(support, "max_tokens", None) or 1024, 256 if interpreted(backend) else 1024)
    max_head_dim = min(getattr(support, "max_head_dim", None) or 128, 128)
    wh = draw(st.integers(1, 32))
    ww = draw(st.integers(1, max(1, min(32, max_tokens // wh))))
    shift = (draw(st.integers(0, wh - 1)), draw(st.integers(0, ww - 1)))
    rows, cols, batch = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
    heads = draw(st.integers(1, 3))
    head_dim = draw(st.one_of(st.sampled_from(FAMILY_HEAD_DIMS), st.integers(1, 128)).filter(lambda d: d <= max_head_dim))
    dtype = draw(st.sampled_from(DTYPES))
    storage = draw(st.sampled_from(("contiguous", "storage_offset", "channel_strided")))
    work = wh * ww * batch * rows * cols * heads
    if work > work_budget(backend):  # fewer windows first, then fewer heads
        rows = cols = batch = 1
        heads = max(1, min(heads, work_budget(backend) // (wh * ww)))
    return batch, (wh, ww), shift, rows, cols, heads * head_dim, heads, dtype, storage


def with_storage(t: torch.Tensor, storage: str) -> torch.Tensor:
    """t's values in another memory arrangement: starting one element into its storage (not 16-byte
    aligned), or rows strided past their channels (a slice of a wider tensor)."""
    if storage == "storage_offset":
        buffer = torch.empty(t.numel() + 1, dtype=t.dtype, device=t.device)
        view = buffer[1:].view(t.shape)
    elif storage == "channel_strided":
        view = torch.empty(*t.shape[:-1], t.shape[-1] + 5, dtype=t.dtype, device=t.device)[..., : t.shape[-1]]
    else:
        return t
    view.copy_(t)
    return view


def inputs(case, op: str, device: str):
    """qkv (image or window layout), rel_bias, mask (the official shift mask in the window layout), grad_out,
    and the op's keyword arguments, in the case's dtype and storage."""
    batch, (wh, ww), shift, rows, cols, C, heads, dtype, storage = case
    H, W, N = rows * wh, cols * ww, wh * ww
    image = torch.randn(batch, H, W, 3 * C, dtype=torch.float64)
    rel_bias = torch.randn(heads, N, N, dtype=torch.float64)
    if op == "shifted_window_attention":
        qkv, mask, kwargs = image, None, dict(num_heads=heads, window_size=(wh, ww), shift=shift)
    else:
        qkv = reference.window_partition(image, (wh, ww), shift)
        mask = reference.shift_attention_mask(H, W, (wh, ww), shift, dtype=torch.float64) if any(shift) else None
        kwargs = dict(num_heads=heads)
    grad_out = torch.randn(*qkv.shape[:-1], C, dtype=torch.float64)
    to = lambda t: None if t is None else t.to(device=device, dtype=dtype)  # noqa: E731
    return with_storage(to(qkv), storage), to(rel_bias), to(mask), to(grad_out), kwargs


def assert_matches_reference(backend, op, qkv, rel_bias, mask, grad_out, kwargs):
    actual = forward_backward(backend, op, qkv, rel_bias, mask, grad_out, kwargs)
    if qkv.dtype in (torch.float16, torch.bfloat16):
        assert_within_half_precision_error(actual, op, qkv, rel_bias, mask, grad_out, kwargs, qkv.dtype)
    else:
        expected = forward_backward("reference", op, qkv, rel_bias, mask, grad_out, kwargs)
        assert_all_close(actual, expected, **tolerances.TOLERANCES[qkv.dtype])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", OPS)
@given(data=st.data())
def test_any_window_matches_reference(backend, op, data):
    device = device_for(backend)
    probe = torch.empty(0, device=device)
    skip_unless_runs(backend, op, probe)
    case = data.draw(attention_cases(backend), label="case")
    qkv, rel_bias, mask, grad_out, kwargs = inputs(case, op, device)
    note(f"qkv {tuple(qkv.shape)} strides {qkv.stride()} offset {qkv.storage_offset()}")
    (wh, ww), head_dim = case[1], case[5] // case[6]
    require(backend, op, qkv, tokens=wh * ww, head_dim=head_dim)
    assert_matches_reference(backend, op, qkv, rel_bias, mask, grad_out, kwargs)


# The released models' windows (window (wh, ww), shift (sh, sw), channels, heads of one attention): the
# Swin family's attention as the models call it, each image a 2 x 1 grid of windows (the shifted
# windows of the last row hold several regions). Under the Triton interpreter one window of at most two
# of the heads (head_dim unchanged): the per-(window, head) programs are the same, only fewer of them.
RELEASED_MODELS = {
    "SwinIR": ((8, 8), (4, 4), 180, 6),
    "SwinIR-light": ((8, 8), (4, 4), 60, 6),
    "Swin2SR": ((8, 8), (4, 4), 180, 6),
    "HAT": ((16, 16), (8, 8), 180, 6),
    "HAT-S": ((16, 16), (8, 8), 144, 6),
    "DRCT": ((16, 16), (8, 8), 180, 6),
    "DRCT-dense-hd122": ((16, 16), (8, 8), 122, 1),
    "DRCT-dense-hd53": ((16, 16), (8, 8), 53, 1),
    "ATD": ((16, 16), (8, 8), 210, 6),
    "DAT-horizontal": ((8, 32), (4, 16), 90, 3),
    "DAT-vertical": ((32, 8), (16, 4), 90, 3),
    "DAT-S": ((8, 16), (4, 8), 90, 3),
    "RGT": ((8, 32), (4, 16), 90, 3),
    "SRFormer": ((22, 22), (11, 11), 180, 6),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("model", list(RELEASED_MODELS))
def test_released_model_shapes(backend, op, model):
    window, shift, channels, heads = RELEASED_MODELS[model]
    rows, dtypes = 2, (torch.float32, torch.bfloat16)
    if interpreted(backend):
        head_dim = channels // heads
        rows, dtypes, heads = 1, (torch.float32,), min(heads, 2 if window[0] * window[1] <= 256 else 1)
        channels = heads * head_dim
    for dtype in dtypes:
        case = (1, window, shift, rows, 1, channels, heads, dtype, "contiguous")
        qkv, rel_bias, mask, grad_out, kwargs = inputs(case, op, device_for(backend))
        require(backend, op, qkv, tokens=window[0] * window[1], head_dim=channels // heads)
        assert_matches_reference(backend, op, qkv, rel_bias, mask, grad_out, kwargs)


@pytest.mark.parametrize("backend", ["reference", *BACKENDS])
def test_dat_zero_padding(backend):
    """padded_size: a 13 x 21 image in DAT-S's 8 x 16 windows shifted (4, 8), zero-padded to 16 x 32 (a
    multiple of the larger window extent, 16, DAT's rule): equals padding qkv with zeros, attending over
    the padded image and cropping, forward and gradients (the padded rows get none)."""
    device = device_for(backend) if backend != "reference" else "cpu"
    qkv = torch.randn(2, 13, 21, 3 * 24, dtype=torch.float64, device=device)
    rel_bias = torch.randn(2, 128, 128, dtype=torch.float64, device=device)
    if backend != "reference":
        skip_unless_runs(backend, "shifted_window_attention", qkv, tokens=128, head_dim=12)
    kwargs = dict(num_heads=2, window_size=(8, 16), shift=(4, 8))
    leaves = [t.clone().requires_grad_() for t in (qkv, rel_bias)]
    with swinir_kernels.use_backend(backend):
        out = swinir_kernels.shifted_window_attention(*leaves, padded_size=(16, 32), **kwargs)
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, leaves, grad_out)
    expected_leaves = [t.clone().requires_grad_() for t in (qkv, rel_bias)]
    padded = F.pad(expected_leaves[0], (0, 0, 0, 32 - 21, 0, 16 - 13))
    expected = reference.shifted_window_attention(padded, expected_leaves[1], 2, (8, 16), (4, 8))[:, :13, :21]
    expected_grads = torch.autograd.grad(expected, expected_leaves, grad_out)
    assert out.shape == (2, 13, 21, 24)
    assert_all_close((out, *grads), (expected, *expected_grads), **tolerances.TOLERANCES[torch.float64])


@pytest.mark.parametrize(
    "padded_size, message",
    [((12, 64), r"padded_size: expected at least qkv's \(H, W\)=\(13, 37\), got \(12, 64\)"),
     ((16, 48), r"padded_size\[1\]: expected a multiple of window_size\[1\]=32, got 48"),
     ((16, 64, 1), r"padded_size: expected an int or 2 ints")],
)  # fmt: skip
def test_padded_size_errors_name_the_argument(padded_size, message):
    qkv, rel_bias = torch.randn(1, 13, 37, 9), torch.randn(1, 256, 256)
    with pytest.raises(ValueError, match=message):
        swinir_kernels.shifted_window_attention(
            qkv, rel_bias, num_heads=1, window_size=(8, 32), shift=(4, 16), padded_size=padded_size
        )


@pytest.mark.parametrize(
    "window_size, shift, message",
    [((8, 32), (4, 32), r"shift\[1\]: expected 0 <= shift\[1\] < window_size\[1\]=32, got 32"),
     ((8, 32), (-1, 0), r"shift\[0\]: expected an int >= 0, got -1"),
     ((8, 0), 0, r"window_size\[1\]: expected an int >= 1, got 0"),
     ((8, 32, 1), 0, r"window_size: expected an int or 2 ints")],
)  # fmt: skip
def test_rectangular_window_errors_name_the_argument(window_size, shift, message):
    qkv, rel_bias = torch.randn(1, 16, 64, 9), torch.randn(1, 256, 256)
    with pytest.raises(ValueError, match=message):
        swinir_kernels.shifted_window_attention(qkv, rel_bias, num_heads=1, window_size=window_size, shift=shift)


@pytest.mark.parametrize("backend", BACKENDS)
def test_compile_fullgraph_with_rectangles_and_padding(backend):
    """torch.compile(fullgraph=True) traces DAT's call (8 x 16 windows shifted (4, 8), zero-padded from
    13 x 21): one graph holding the op, equal to eager, forward and gradients (the fakes take int[2])."""
    import torch._dynamo.testing

    device = device_for(backend)
    qkv = torch.randn(1, 13, 21, 3 * 24, device=device, requires_grad=True)
    rel_bias = torch.randn(2, 128, 128, device=device, requires_grad=True)
    skip_unless_runs(backend, "shifted_window_attention", qkv, tokens=128, head_dim=12)

    def attention(q, b):
        return swinir_kernels.shifted_window_attention(
            q, b, num_heads=2, window_size=(8, 16), shift=(4, 8), padded_size=(16, 32)
        )

    counter = torch._dynamo.testing.CompileCounterWithBackend("eager")
    torch._dynamo.reset()
    with swinir_kernels.use_backend(backend):
        out = torch.compile(attention, backend=counter, fullgraph=True)(qkv, rel_bias)
        expected = attention(qkv, rel_bias)
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, (qkv, rel_bias), grad_out)
    expected_grads = torch.autograd.grad(expected, (qkv, rel_bias), grad_out)
    ops = [node.target for node in counter.graphs[0].graph.nodes if node.op == "call_function"]
    assert counter.frame_count == 1 and any("shifted_window_attention" in str(op) for op in ops), ops
    assert_all_close((out, *grads), (expected, *expected_grads), **tolerances.TOLERANCES[torch.float32])
