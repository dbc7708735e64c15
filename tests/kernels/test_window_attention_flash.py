"""The flash Triton kernels for large windows (swinir_kernels/triton/window_attention_flash.py) against
swinir_kernels.reference: outputs and both gradients (qkv, rel_bias) for the Swin family's big windows
(HAT/DRCT 16x16, DAT/RGT 8x32 and 32x8 with per-axis shifts, one axis shifted, SRFormer 22x22, GRL 32x32)
and head_dims (DRCT's 53 and 122), both layouts, masked and unmasked, in fp64 (tight), fp32 (IEEE and
TF32 dots), fp16 and bf16; the bias gradient's window groups and its determinism; the shift regions
bit for bit; the routing of the public ops; and a run under the plain interpreter, as users run it.

Under TRITON_INTERPRET=1 the programs run in Python (the GPU-faithful mode, tests/support/triton_faithful.py),
a few seconds per (window, head) at 256 tokens, so the grids stay at one to four (window, head) pairs.
"""

import os

import pytest
import torch

import swinir_kernels
from swinir_kernels import reference, tolerances
from tests.helpers import HAS_CUDA, TRITON_INTERPRET, run_python

if swinir_kernels.triton.UNAVAILABLE is not None:
    pytest.skip(swinir_kernels.triton.UNAVAILABLE, allow_module_level=True)
if not (HAS_CUDA or TRITON_INTERPRET):
    pytest.skip("Triton runs CPU tensors only under TRITON_INTERPRET=1", allow_module_level=True)

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from swinir_kernels.triton import limits  # noqa: E402
from swinir_kernels.triton import window_attention as registers  # noqa: E402
from swinir_kernels.triton import window_attention_flash as flash  # noqa: E402

DEVICE = "cuda" if HAS_CUDA else "cpu"
PRECISION_ENV = "SWINIR_KERNELS_FP32_PRECISION"


class Case:
    """B images of (rows x cols) windows of wh x ww pixels, shifted by (sh, sw); num_heads heads of
    head_dim channels. layout: "image" (shifted_window_attention) or "window" (window_attention on the
    partitioned qkv, with mask "shift" (the official one), "random" (any additive mask, fp16) or None)."""

    def __init__(self, name, B, rows, cols, window, shift, head_dim, heads, layout, mask=None):
        self.name, self.B, self.rows, self.cols = name, B, rows, cols
        (self.wh, self.ww), (self.sh, self.sw) = window, shift
        self.head_dim, self.heads, self.layout, self.mask = head_dim, heads, layout, mask

    def __repr__(self):
        return self.name

    @property
    def tokens(self):
        return self.wh * self.ww

    def inputs(self, dtype, seed=0):
        """(qkv, rel_bias, mask, grad_out) in `dtype` (the mask in its own), drawn in fp64."""
        generator = torch.Generator().manual_seed(seed)
        H, W, C = self.rows * self.wh, self.cols * self.ww, self.head_dim * self.heads
        image = torch.randn(self.B, H, W, 3 * C, generator=generator, dtype=torch.float64)
        rel_bias = torch.randn(self.heads, self.tokens, self.tokens, generator=generator, dtype=torch.float64)
        mask = None
        if self.layout == "image":
            qkv = image
        else:
            qkv = reference.window_partition(image, (self.wh, self.ww), (self.sh, self.sw)).contiguous()
            if self.mask == "shift":
                mask = reference.shift_attention_mask(H, W, (self.wh, self.ww), (self.sh, self.sw), dtype=torch.float64)
            elif self.mask == "random":
                nW = self.rows * self.cols
                mask = (torch.randn(nW, self.tokens, self.tokens, generator=generator, dtype=torch.float64) * 3).half()
        grad_out = torch.randn(*qkv.shape[:-1], C, generator=generator, dtype=torch.float64)
        cast = lambda t: t.to(DEVICE, dtype)  # noqa: E731
        return cast(qkv), cast(rel_bias), None if mask is None else mask.to(DEVICE), cast(grad_out)

    def flash(self, qkv, rel_bias, mask, grad_out):
        """(out, grad_qkv, grad_rel_bias) of the flash launchers."""
        args = (rel_bias, mask, self.heads, self.head_dim**-0.5, (self.wh, self.ww), (self.sh, self.sw),
                self.layout == "image")  # fmt: skip
        out = flash.flash_forward(qkv, *args)
        return (out, *flash.flash_backward(grad_out, qkv, *args))

    def reference(self, qkv, rel_bias, mask, grad_out):
        """(out, grad_qkv, grad_rel_bias) of swinir_kernels.reference, in the inputs' dtypes."""
        qkv, rel_bias = qkv.detach().requires_grad_(), rel_bias.detach().requires_grad_()
        scale = self.head_dim**-0.5
        if self.layout == "image":
            out = reference.shifted_window_attention(qkv, rel_bias, self.heads, (self.wh, self.ww), (self.sh, self.sw), scale)
        else:
            out = reference.window_attention(qkv, rel_bias, mask, self.heads, scale)
        return (out.detach(), *torch.autograd.grad(out, (qkv, rel_bias), grad_out))


def wide(tensor):
    return None if tensor is None else tensor.double()


def max_error(actual, exact) -> float:
    return (actual.double() - exact.double()).abs().max().item()


NAMES = ("out", "grad_qkv", "grad_rel_bias")


def check(case, dtype, precision="ieee", seed=0):
    """The flash kernels' results for `case` in `dtype` against the reference, by tolerances.py's rules:
    fp64 and fp32 (IEEE) to TOLERANCES against the reference in that dtype; TF32 within twice the error
    of the reference computed in fp16 and above ten times fp32's (TF32 was used); fp16 and bf16 within
    twice the same-dtype reference's error from fp64 (plus HALF_ERROR_FLOOR)."""
    inputs = case.inputs(dtype, seed)
    os.environ[PRECISION_ENV] = precision
    try:
        actual = case.flash(*inputs)
    finally:
        os.environ.pop(PRECISION_ENV)
    for name, a in zip(NAMES, actual):
        assert a.dtype == dtype and torch.isfinite(a).all(), name
    if dtype in (torch.float64, torch.float32) and precision == "ieee":
        expected = case.reference(*inputs)
        for name, a, e in zip(NAMES, actual, expected):
            torch.testing.assert_close(a, e, **tolerances.TOLERANCES[dtype], msg=lambda m, name=name: f"{name}: {m}")
        return actual
    exact = case.reference(*[wide(t) for t in inputs])
    if precision == "tf32":
        fp16 = case.reference(*[None if t is None else t.half() for t in inputs])
        fp32 = case.reference(*inputs)
        for name, a, x, h, f in zip(NAMES, actual, exact, fp16, fp32):
            error, fp16_error, fp32_error = max_error(a, x), max_error(h, x), max_error(f, x)
            assert error <= 2 * fp16_error, f"{name}: TF32 error {error} vs the fp16 reference's {fp16_error}"
            assert error > 10 * fp32_error, f"{name}: TF32 error {error} as small as fp32's {fp32_error}: no TF32 dots?"
        return actual
    same = case.reference(*inputs)
    floor = tolerances.HALF_ERROR_FLOOR[dtype]
    for name, a, x, s in zip(NAMES, actual, exact, same):
        error, reference_error = max_error(a, x), max_error(s, x)
        assert error <= 2 * reference_error + floor, f"{name}: error {error} vs the {dtype} reference's {reference_error}"
    return actual


F64, F32, F16, BF16 = torch.float64, torch.float32, torch.float16, torch.bfloat16
# (case, dtype, fp32 dot precision). One to four (window, head) pairs each (see the module docstring).
CASES = [
    # HAT/DRCT/ATD 16x16 (256 tokens), shifted by 8, head_dim 30: two windows in a row.
    (Case("hat16-shift8-hd30", 1, 1, 2, (16, 16), (8, 8), 30, 1, "image"), F64, "ieee"),
    (Case("hat16-shift8-hd30-1win", 1, 1, 1, (16, 16), (8, 8), 30, 1, "image"), F32, "ieee"),
    (Case("hat16-shift8-hd30-1win", 1, 1, 1, (16, 16), (8, 8), 30, 1, "image"), F32, "tf32"),
    (Case("hat16-shift8-hd30-1win", 1, 1, 1, (16, 16), (8, 8), 30, 1, "image"), F16, "ieee"),
    (Case("hat16-shift8-hd30-1win", 1, 1, 1, (16, 16), (8, 8), 30, 1, "image"), BF16, "ieee"),
    # DAT/RGT rectangles with per-axis shifts, across a window boundary on both axes.
    (Case("dat8x32-shift4x16-hd16", 1, 1, 1, (8, 32), (4, 16), 16, 1, "image"), F64, "ieee"),
    (Case("dat32x8-shift16x4-hd16", 1, 1, 1, (32, 8), (16, 4), 16, 1, "image"), F64, "ieee"),
    (Case("dat8x32-shift4x16-hd30-2win", 1, 2, 1, (8, 32), (4, 16), 30, 1, "image"), BF16, "ieee"),
    (Case("dat32x8-shift16x4-hd30-2win", 1, 1, 2, (32, 8), (16, 4), 30, 1, "image"), F16, "ieee"),
    # One axis shifted: the other is not cut into regions (reference.shift_attention_mask).
    (Case("8x16-shift0x4-hd24-2heads", 1, 1, 2, (8, 16), (0, 4), 24, 2, "image"), F64, "ieee"),
    (Case("16x8-shift3x0-hd24", 1, 2, 1, (16, 8), (3, 0), 24, 1, "image"), F64, "ieee"),
    (Case("16x8-shift3x0-official-mask", 1, 2, 1, (16, 8), (3, 0), 24, 1, "window", "shift"), F64, "ieee"),
    # DRCT's head_dims (BLOCK_D 128 and 64, masked channels), window layout with the official mask.
    (Case("drct16-hd122-mask", 1, 1, 1, (16, 16), (8, 8), 122, 1, "window", "shift"), F64, "ieee"),
    (Case("drct16-hd122", 1, 1, 1, (16, 16), (0, 0), 122, 1, "window"), F16, "ieee"),
    (Case("drct16-hd122", 1, 1, 1, (16, 16), (0, 0), 122, 1, "window"), F32, "tf32"),
    (Case("drct16-hd53", 1, 1, 1, (16, 16), (0, 0), 53, 1, "window"), F64, "ieee"),
    # A head_dim beyond the register kernel at 64 tokens (8x8 windows): one key block.
    (Case("8x8-shift4-hd72-2heads", 1, 1, 2, (8, 8), (4, 4), 72, 2, "image"), F32, "ieee"),
    # Any additive mask shared by windows w % nW, batch 2 (4 windows, nW = 2).
    (Case("8x16-random-mask-B2", 2, 1, 2, (8, 16), (0, 0), 20, 1, "window", "random"), F64, "ieee"),
    # Batch > 1 in the image layout, two heads.
    (Case("8x16-shift4x8-B2-2heads", 2, 1, 1, (8, 16), (4, 8), 16, 2, "image"), F64, "ieee"),
    # SRFormer 22x22 (484 tokens: a partial last block of queries and keys), both layouts.
    (Case("srformer22-shift11-hd30", 1, 1, 1, (22, 22), (11, 11), 30, 1, "image"), F16, "ieee"),
    (Case("srformer22-hd30", 1, 1, 1, (22, 22), (0, 0), 30, 1, "window"), F32, "tf32"),
    # GRL 32x32 (1024 tokens, the limit): one window, one head.
    (Case("grl32-shift16-hd16", 1, 1, 1, (32, 32), (16, 16), 16, 1, "image"), F16, "ieee"),
]


@pytest.mark.parametrize(
    "case, dtype, precision", CASES, ids=[f"{c.name}-{str(d).removeprefix('torch.')}-{p}" for c, d, p in CASES]
)
def test_flash_matches_reference(case, dtype, precision):
    check(case, dtype, precision)


def test_fp32_bias_with_half_qkv():
    """A bias kept in fp32 with fp16 qkv (autocast): held in its own dtype, never rounded to fp16, so the
    results are at least as close to fp64 as the reference's (which rounds it); the bias gradient comes
    back in fp32."""
    case = Case("8x16-shift4x8-hd24", 1, 1, 1, (8, 16), (4, 8), 24, 1, "image")
    qkv, rel_bias, _, grad_out = case.inputs(F16)
    rel_bias = case.inputs(F64)[1].float()
    actual = case.flash(qkv, rel_bias, None, grad_out)
    assert [t.dtype for t in actual] == [F16, F16, F32]
    exact = case.reference(qkv.double(), rel_bias.double(), None, grad_out.double())
    same = case.reference(qkv, rel_bias, None, grad_out)
    for name, a, x, r in zip(NAMES, actual, exact, same):
        error, reference_error = max_error(a, x), max_error(r, x)
        assert error <= 2 * reference_error + tolerances.HALF_ERROR_FLOOR[F16], f"{name}: {error} vs {reference_error}"


def test_bias_gradient_window_groups_and_determinism(monkeypatch):
    """More windows than the bias-gradient groups: 3 windows, 2 key blocks (64 tokens in blocks of 32,
    fp32 IEEE) and a cap of 4 programs per head give 2 groups of 2 and 1 windows; the gradients are the
    reference's and bitwise the same on a second run."""
    monkeypatch.setattr(registers, "MAX_BIAS_PROGRAMS_PER_HEAD", 4)
    assert flash.flash_backward_windows_per_program(3, 2) == 2
    case = Case("8x8-hd72-3windows", 1, 1, 3, (8, 8), (4, 4), 72, 1, "image")
    first = check(case, F32)
    second = case.flash(*case.inputs(F32))
    assert torch.equal(first[1], second[1]) and torch.equal(first[2], second[2])


def test_bias_partials_stay_bounded():
    """The dK/dV kernel's window groups per head: about MAX_BIAS_PROGRAMS_PER_HEAD programs with the key
    blocks, at least one, at most one per window."""
    cap = registers.MAX_BIAS_PROGRAMS_PER_HEAD
    for windows, key_blocks, groups in ((1000, 4, cap // 4), (1000, 16, cap // 16), (1000, 64, 1), (3, 4, 3)):
        per_program = flash.flash_backward_windows_per_program(windows, key_blocks)
        assert triton.cdiv(windows, per_program) == groups, (windows, key_blocks)


@triton.jit
def _region_mask_kernel(out_ptr, H, W, shift_h, shift_w, N: tl.constexpr, WINDOW_H: tl.constexpr,
                        WINDOW_W: tl.constexpr, BLOCK: tl.constexpr):
    """out[w] = the flash kernels' shift mask of window w: -100 between tokens of different regions."""
    window = tl.program_id(0).to(tl.int64)
    tokens = tl.arange(0, BLOCK)
    _, row0, col0 = flash._window_origin(window, N, WINDOW_H, WINDOW_W, H, W, True)
    regions = flash._shift_regions(row0, col0, tokens, WINDOW_H, WINDOW_W, H, W, shift_h, shift_w)
    differ = regions[:, None] != regions[None, :]
    valid = (tokens < N)[:, None] & (tokens < N)[None, :]
    offsets = window * N * N + tokens[:, None] * N + tokens[None, :]
    tl.store(out_ptr + offsets, tl.where(differ, -100.0, 0.0), mask=valid)


@pytest.mark.parametrize(
    "H, W, window, shift",
    [(8, 16, (4, 8), (0, 4)), (8, 16, (4, 8), (2, 0)), (8, 16, (4, 8), (2, 4)), (8, 16, (4, 8), (0, 0)),
     (4, 24, (4, 8), (1, 3)), (12, 8, (4, 8), (3, 0)), (8, 8, (8, 8), (0, 5))],
)  # fmt: skip
def test_shift_regions_are_the_official_mask(H, W, window, shift):
    """The regions the kernels compute give reference.shift_attention_mask bit for bit, with one axis
    unshifted (its official slices degenerate: no cut) and with a single window along an axis."""
    (wh, ww), N = window, window[0] * window[1]
    nW = (H // wh) * (W // ww)
    out = torch.full((nW, N, N), 7.0, device=DEVICE)
    _region_mask_kernel[(nW,)](out, H, W, shift[0], shift[1], N=N, WINDOW_H=wh, WINDOW_W=ww,
                               BLOCK=triton.next_power_of_2(N))  # fmt: skip
    expected = reference.shift_attention_mask(H, W, window, shift, device=DEVICE)
    assert torch.equal(out, expected)


@pytest.mark.parametrize("layout", ["image", "window"])
def test_no_windows(layout):
    case = Case("empty", 0, 1, 1, (16, 16), (8, 8), 16, 1, layout)
    out, grad_qkv, grad_bias = case.flash(*case.inputs(F32))
    assert out.shape == (*grad_qkv.shape[:-1], 16) and out.numel() == 0
    assert torch.equal(grad_bias, torch.zeros_like(grad_bias))


def test_launch_configurations_are_functions_of_the_key(monkeypatch):
    """Every launch gets its kernel kind's rule's configuration for its key (the constexprs with its
    blocks, and the dtype), and its blocks are the kind's for the key; blocks are powers of two within
    the padded window, for every dtype, dot precision and head_dim bucket."""
    recorded = []
    original = flash.launch_config

    def record(kernel, key, rule):
        config = original(kernel, key, rule)
        recorded.append((kernel, dict(key), config))
        return config

    monkeypatch.setattr(flash, "launch_config", record)
    case = Case("8x8-hd72", 1, 1, 1, (8, 8), (4, 4), 72, 1, "image")
    case.flash(*case.inputs(F32))
    kinds = {"_flash_fwd_kernel": "rows", "_flash_bwd_preprocess_kernel": "rows", "_flash_bwd_dkdv_kernel": "dkdv",
             "_flash_bwd_dq_kernel": "dq"}  # fmt: skip
    assert [kernel for kernel, _, _ in recorded] == list(kinds)
    for kernel, key, config in recorded:
        kind = kinds[kernel]
        assert config == flash.flash_config(kind, key) == flash.flash_config(kind, dict(key)), kernel
        assert flash.flash_blocks(kind, key) == {"BLOCK_M": key["BLOCK_M"], "BLOCK_N": key["BLOCK_N"]}, kernel
    for dtype in ("float16", "bfloat16", "float32", "float64"):
        for precision in ("ieee", "tf32"):
            for tokens, block_d in ((49, 16), (77, 128), (256, 32), (484, 64), (1024, 128)):
                key = dict(N=tokens, BLOCK_D=block_d, dtype=dtype, DOT_PRECISION=precision)
                for kind in ("rows", "dq", "dkdv"):
                    blocks = flash.flash_blocks(kind, key)
                    assert all(16 <= b <= max(16, triton.next_power_of_2(tokens)) and b & (b - 1) == 0
                               for b in blocks.values()), (kind, key)  # fmt: skip
                    assert flash.flash_config(kind, dict(key, **blocks))["num_warps"] in (4, 8)


def test_limits():
    """The backend's limits are the flash kernels' (GRL's 1024 tokens, head_dim 128); the register
    kernel keeps its own (64, 64); one past the backend's limits, the launchers refuse."""
    assert (limits.MAX_TOKENS, limits.MAX_HEAD_DIM) == (1024, 128)
    assert (limits.REGISTER_KERNEL_MAX_TOKENS, limits.REGISTER_KERNEL_MAX_HEAD_DIM) == (64, 64)
    qkv = torch.zeros(1, 1025, 3 * 4, device=DEVICE)
    with pytest.raises(ValueError, match="tokens per window .*at most 1024, got 1025"):
        flash.flash_forward(qkv, torch.zeros(1, 1025, 1025, device=DEVICE), None, 1, 0.5, (1, 1), (0, 0), False)
    qkv = torch.zeros(1, 4, 3 * 129, device=DEVICE)
    with pytest.raises(ValueError, match="head_dim .*at most 128, got 129"):
        flash.flash_forward(qkv, torch.zeros(1, 4, 4, device=DEVICE), None, 1, 0.5, (1, 1), (0, 0), False)


def test_public_ops_route_large_windows_to_the_flash_kernels(monkeypatch):
    """The Triton ops send windows beyond the register kernel (more than 64 tokens, or head_dim above
    64) to the flash kernels and keep small ones on the register kernel; the public ops' results and
    gradients are the reference's."""
    calls = []
    for name in ("flash_forward", "flash_backward"):
        original = getattr(flash, name)
        monkeypatch.setattr(flash, name, lambda *a, original=original, name=name: calls.append(name) or original(*a))
    case = Case("8x16-shift4x8-hd16", 1, 1, 1, (8, 16), (4, 8), 16, 2, "image")
    qkv, rel_bias, _, grad_out = case.inputs(F64)
    expected = case.reference(qkv, rel_bias, None, grad_out)
    qkv, rel_bias = qkv.requires_grad_(), rel_bias.requires_grad_()
    with swinir_kernels.use_backend("triton"):
        out = swinir_kernels.shifted_window_attention(qkv, rel_bias, num_heads=2, window_size=(8, 16), shift=(4, 8))
        actual = (out, *torch.autograd.grad(out, (qkv, rel_bias), grad_out))
        assert calls == ["flash_forward", "flash_backward"]
        for name, a, e in zip(NAMES, actual, expected):
            torch.testing.assert_close(a, e, **tolerances.TOLERANCES[F64], msg=lambda m, name=name: f"{name}: {m}")
        # head_dim 72 at 16 tokens: the flash kernels too; head_dim 16 at 16 tokens: the register kernel.
        for head_dim, flash_calls in ((72, 1), (16, 0)):
            windows = torch.randn(2, 16, 3 * head_dim, device=DEVICE, dtype=F64)
            bias = torch.randn(1, 16, 16, device=DEVICE, dtype=F64)
            count = len(calls)
            out = swinir_kernels.window_attention(windows, bias, num_heads=1)
            assert len(calls) - count == flash_calls, head_dim
            torch.testing.assert_close(out, reference.window_attention(windows, bias, None, 1), **tolerances.TOLERANCES[F64])


PLAIN_INTERPRETER = """
    import torch, swinir_kernels as sk
    from swinir_kernels import reference
    from swinir_kernels.triton.window_attention_flash import flash_backward, flash_forward
    torch.manual_seed(0)
    qkv, bias = torch.randn(1, 8, 16, 3 * 20), torch.randn(1, 128, 128)
    grad_out = torch.randn(1, 8, 16, 20)
    args = (bias, None, 1, 0.3, (8, 16), (4, 8), True)
    out = flash_forward(qkv, *args)
    grad_qkv, grad_bias = flash_backward(grad_out, qkv, *args)
    q, b = qkv.clone().requires_grad_(), bias.clone().requires_grad_()
    expected = reference.shifted_window_attention(q, b, 1, (8, 16), (4, 8), 0.3)
    expected_grads = torch.autograd.grad(expected, (q, b), grad_out)
    for actual, wanted in zip((out, grad_qkv, grad_bias), (expected, *expected_grads)):
        torch.testing.assert_close(actual, wanted, atol=1e-5, rtol=1e-5)
    with sk.use_backend("triton"):
        out = sk.shifted_window_attention(qkv, bias, num_heads=1, window_size=(8, 16), shift=(4, 8), scale=0.3)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    print("ok")
"""


@pytest.mark.skipif(not TRITON_INTERPRET or HAS_CUDA, reason="the plain interpreter runs CPU tensors")
def test_fp32_under_the_plain_interpreter():
    """As a user runs it: a fresh process under TRITON_INTERPRET=1 without the tests' GPU-faithful mode
    (float arguments are Python floats there, integers unsized)."""
    done = run_python(PLAIN_INTERPRETER, timeout=300, TRITON_INTERPRET="1", PYTHONDONTWRITEBYTECODE="1")
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout[-2000:] + done.stderr[-4000:]
