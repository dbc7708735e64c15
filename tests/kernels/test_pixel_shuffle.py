"""pixel_shuffle (with its fused affine + crop epilogue) on every kernel backend.

The plain shuffle must equal F.pixel_shuffle exactly, values and memory format; the epilogue must be
within one rounding of eager ``(F.pixel_shuffle(x) * scale + bias)`` computed in fp32 (fp64 for fp64)
and cast once; gradients are checked against autograd of swinir_kernels.reference.
"""

import pytest
import torch
import torch.nn.functional as F

import swinir_kernels as sk
from swinir_kernels import reference
from swinir_kernels import triton as triton_backend
from tests.helpers import TRITON_INTERPRET, skip_unless_runs
from tests.kernels.test_window_partition import DTYPES, KERNEL_BACKENDS, distinct

# (B, C*r*r, H, W, r)
SHAPES = [(2, 12, 5, 7, 2), (1, 27, 4, 3, 3)]
FORMATS = [torch.contiguous_format, torch.channels_last]


def interpreted_bfloat16(backend, x) -> bool:
    """bf16 on the Triton interpreter: the backend chooser refuses it (the bare interpreter casts bf16
    wrongly), but the GPU-faithful mode (tests/support/triton_faithful.py) casts as a GPU does, so the
    tests call the Triton op directly there."""
    return (backend == "triton" and TRITON_INTERPRET and x.dtype == torch.bfloat16 and x.device.type == "cpu"
            and triton_backend.UNAVAILABLE is None)


def run(backend, x, upscale_factor, *, scale=None, bias=None, out_size=None):
    if interpreted_bfloat16(backend, x):
        out_h, out_w = out_size if out_size is not None else (x.shape[2] * upscale_factor, x.shape[3] * upscale_factor)
        return torch.ops.swinir_kernels.pixel_shuffle_triton(x, upscale_factor, scale, bias, out_h, out_w)
    skip_unless_runs(backend, "pixel_shuffle", x)
    with sk.use_backend(backend):
        return sk.pixel_shuffle(x, upscale_factor, scale=scale, bias=bias, out_size=out_size)


def eager_epilogue(x, r, scale, bias, out_h, out_w):
    """What the fused op must match within one rounding: the eager ops in the compute dtype, cast once."""
    compute = torch.promote_types(x.dtype, torch.float32)
    y = F.pixel_shuffle(x, r)[:, :, :out_h, :out_w].to(compute)
    y = y * (1 if scale is None else scale.to(compute).reshape(1, -1, 1, 1))
    return y + (0 if bias is None else bias.to(compute).reshape(1, -1, 1, 1))


def assert_within_one_rounding(actual, exact_in_compute, dtype):
    """|actual - exact| <= one ulp of `dtype` at |exact| (+ a compute-dtype ulp for values near 0)."""
    diff = (actual.double() - exact_in_compute.double()).abs()
    compute = exact_in_compute.dtype
    bound = torch.finfo(dtype).eps * exact_in_compute.double().abs() + torch.finfo(compute).eps * 4
    assert actual.dtype == dtype
    assert bool((diff <= bound).all()), f"max excess {(diff - bound).max().item()}"


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("memory_format", FORMATS, ids=["nchw", "channels_last"])
@pytest.mark.parametrize("B,CRR,H,W,r", SHAPES)
def test_plain_shuffle_equals_torch(backend, device, dtype, memory_format, B, CRR, H, W, r):
    x = distinct((B, CRR, H, W), dtype, device).contiguous(memory_format=memory_format)
    out = run(backend, x, r)
    expected = F.pixel_shuffle(x, r)
    assert torch.equal(out, expected)
    assert out.stride() == expected.stride(), "output memory format differs from F.pixel_shuffle's"


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
@pytest.mark.parametrize("memory_format", FORMATS, ids=["nchw", "channels_last"])
@pytest.mark.parametrize("out_size", [(1, 1), (10, 1), (1, 14), (3, 5), (0, 14)], ids=str)
def test_plain_crops_are_exact(backend, device, memory_format, out_size):
    x = distinct((2, 12, 5, 7), torch.float32, device).contiguous(memory_format=memory_format)
    out = run(backend, x, 2, out_size=out_size)
    assert torch.equal(out, F.pixel_shuffle(x, 2)[:, :, : out_size[0], : out_size[1]])
    assert out.is_contiguous(memory_format=memory_format)


@pytest.mark.parametrize("memory_format", FORMATS, ids=["nchw", "channels_last"])
def test_triton_plain_shuffle_moves_bfloat16_bits_exactly(memory_format):
    skip_unless_runs("triton", "pixel_shuffle", torch.empty(1))
    x = distinct((2, 12, 5, 7), torch.bfloat16).contiguous(memory_format=memory_format)
    out = torch.ops.swinir_kernels.pixel_shuffle_triton(x, 2, None, None, 9, 14)
    assert torch.equal(out, F.pixel_shuffle(x, 2)[:, :, :9, :14])


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("memory_format", FORMATS, ids=["nchw", "channels_last"])
@pytest.mark.parametrize("affine", ["scale+bias", "scale", "bias", "scalar"])
def test_epilogue_and_crop_within_one_rounding(backend, device, dtype, memory_format, affine):
    B, CRR, H, W, r = SHAPES[0]
    C = CRR // (r * r)
    x = torch.randn(B, CRR, H, W, device=device).to(dtype).contiguous(memory_format=memory_format)
    per_channel = 1 if affine == "scalar" else C
    scale = torch.rand(per_channel, device=device) + 0.5 if affine != "bias" else None
    bias = torch.randn(per_channel, device=device) if affine != "scale" else None
    out_h, out_w = H * r - 1, W * r - 3  # crop SwinIR-style (bottom rows, right columns)
    out = run(backend, x, r, scale=scale, bias=bias, out_size=(out_h, out_w))
    assert out.shape == (B, C, out_h, out_w)
    assert out.stride() == F.pixel_shuffle(x, r)[:, :, :out_h, :out_w].contiguous(memory_format=memory_format).stride()
    assert_within_one_rounding(out, eager_epilogue(x, r, scale, bias, out_h, out_w), dtype)


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("memory_format", FORMATS, ids=["nchw", "channels_last"])
@pytest.mark.parametrize("per_channel", [True, False], ids=["per-channel", "scalar"])
def test_gradients_of_x_scale_bias(backend, device, dtype, memory_format, per_channel):
    B, CRR, H, W, r = SHAPES[1]
    C = CRR // (r * r)
    n = C if per_channel else 1
    x = torch.randn(B, CRR, H, W, dtype=dtype, device=device).contiguous(memory_format=memory_format)
    scale = torch.rand(n, dtype=dtype, device=device) + 0.5
    bias = torch.randn(n, dtype=dtype, device=device)
    leaves = [t.requires_grad_() for t in (x, scale, bias)]
    ref_leaves = [t.detach().clone().requires_grad_() for t in leaves]
    out_h, out_w = H * r - 2, W * r - 1
    grad = torch.randn(B, C, out_h, out_w, dtype=dtype, device=device)
    out = run(backend, x, r, scale=scale, bias=bias, out_size=(out_h, out_w))
    grads = torch.autograd.grad(out, leaves, grad)
    expected = torch.autograd.grad(reference.pixel_shuffle(*ref_leaves[:1], r, *ref_leaves[1:], out_h, out_w), ref_leaves, grad)
    for name, got, want in zip(("x", "scale", "bias"), grads, expected):
        assert got.shape == want.shape, name
        torch.testing.assert_close(got, want, msg=name)
    # The cropped-away input pixels (last row block / column block) get exactly zero gradient.
    cropped_rows = F.pixel_unshuffle(F.pad(torch.zeros(B, C, out_h, out_w, device=device), (0, 1, 0, 2), value=1.0), r)
    assert bool((grads[0][cropped_rows.bool()] == 0).all())


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("affine_dtype", ["fp32", "same"])
@pytest.mark.parametrize("memory_format", FORMATS, ids=["nchw", "channels_last"])
def test_half_precision_gradient_values(backend, device, dtype, affine_dtype, memory_format):
    """fp16/bf16 backward values: grad_x within one rounding of the exact (fp64) inverse shuffle of
    grad * scale, zero where cropped; grad_scale and grad_bias (per-channel sums, accumulated in fp32)
    within one rounding of their dtype (fp32 parameters: fp32 sum tolerance) of the fp64 sums on the
    same rounded inputs."""
    B, CRR, H, W, r = SHAPES[1]
    C = CRR // (r * r)
    param_dtype = torch.float32 if affine_dtype == "fp32" else dtype
    x = torch.randn(B, CRR, H, W, device=device).to(dtype).contiguous(memory_format=memory_format)
    scale = (torch.rand(C, device=device) + 0.5).to(param_dtype)
    bias = torch.randn(C, device=device).to(param_dtype)
    out_h, out_w = H * r - 2, W * r - 1
    grad = torch.randn(B, C, out_h, out_w, device=device).to(dtype).contiguous(memory_format=memory_format)
    leaves = [t.detach().requires_grad_() for t in (x, scale, bias)]
    out = run(backend, leaves[0], r, scale=leaves[1], bias=leaves[2], out_size=(out_h, out_w))
    grads = torch.autograd.grad(out, leaves, grad)
    exact_leaves = [t.detach().double().requires_grad_() for t in (x, scale, bias)]
    exact = torch.autograd.grad(reference.pixel_shuffle(exact_leaves[0], r, *exact_leaves[1:], out_h, out_w),
                                exact_leaves, grad.double())
    assert [g.dtype for g in grads] == [dtype, param_dtype, param_dtype]
    assert_within_one_rounding(grads[0], exact[0], dtype)
    for name, got, want in zip(("scale", "bias"), grads[1:], exact[1:]):
        if param_dtype == torch.float32:  # a sum of B * out_h * out_w = 108 fp32 terms
            torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5, msg=name)
        else:  # accumulated in fp32, rounded once to the parameter's dtype
            assert_within_one_rounding(got, want, dtype)


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
def test_plain_gradient_is_exact_inverse_shuffle(backend, device):
    x = distinct((2, 12, 5, 7), torch.float32, device).requires_grad_()
    out = run(backend, x, 2)
    grad = distinct(out.shape, torch.float32, device)
    out.backward(grad)
    assert torch.equal(x.grad, F.pixel_unshuffle(grad, 2))


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
def test_torch_compile_fullgraph(backend, device):
    skip_unless_runs(backend, "pixel_shuffle", torch.empty(1, device=device))
    torch._dynamo.reset()
    scale = torch.tensor([0.5, 2.0, 1.0], device=device, requires_grad=True)
    bias = torch.tensor([0.25, -1.0, 0.0], device=device)

    def tail(x):
        return sk.pixel_shuffle(x, 2, scale=scale, bias=bias, out_size=(9, 13)).sum()

    x = torch.randn(2, 12, 5, 7, device=device, requires_grad=True)
    with sk.use_backend(backend):
        loss = torch.compile(tail, fullgraph=True)(x)
        loss.backward()
    x_ref, scale_ref = x.detach().clone().requires_grad_(), scale.detach().clone().requires_grad_()
    loss_ref = reference.pixel_shuffle(x_ref, 2, scale_ref, bias, 9, 13).sum()
    loss_ref.backward()
    torch.testing.assert_close(loss, loss_ref)
    torch.testing.assert_close(x.grad, x_ref.grad)
    torch.testing.assert_close(scale.grad, scale_ref.grad)


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda x: sk.pixel_shuffle(x[0], 2), ValueError, "x: expected a 4-D"),
        (lambda x: sk.pixel_shuffle(x.to(torch.int32), 2), TypeError, "x: expected dtype"),
        (lambda x: sk.pixel_shuffle(x, 3), ValueError, r"x.shape\[1\]: expected a multiple of upscale_factor\*\*2"),
        (lambda x: sk.pixel_shuffle(x, 2.0), TypeError, "upscale_factor: expected an int"),
        (lambda x: sk.pixel_shuffle(x, 0), ValueError, "upscale_factor: expected an int >= 1"),
        (lambda x: sk.pixel_shuffle(x, 2, scale=torch.ones(2)), ValueError, "scale: expected 3 values"),
        (lambda x: sk.pixel_shuffle(x, 2, bias=[0.0, 1.0, 2.0]), TypeError, "bias: expected a tensor"),
        (lambda x: sk.pixel_shuffle(x, 2, scale=torch.ones(3, dtype=torch.int64)), TypeError, "scale: expected dtype"),
        (lambda x: sk.pixel_shuffle(x, 2, out_size=(11, 14)), ValueError, "out_size: expected at most"),
        (lambda x: sk.pixel_shuffle(x, 2, out_size=(-1, 14)), ValueError, r"out_size\[0\]"),
    ],
)
def test_bad_input_errors_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call(torch.zeros(2, 12, 5, 7))


def test_triton_ops_check_their_arguments():
    skip_unless_runs("triton", "pixel_shuffle", torch.empty(1))
    ops = torch.ops.swinir_kernels
    with pytest.raises(ValueError, match="out_h, out_w"):
        ops.pixel_shuffle_triton(torch.zeros(2, 12, 5, 7), 2, None, None, 11, 14)
    with pytest.raises(ValueError, match="scale: expected 3 values"):
        ops.pixel_shuffle_triton(torch.zeros(2, 12, 5, 7), 2, torch.ones(2), None, 10, 14)
    with pytest.raises(ValueError, match="grad_out: spatial size"):
        ops._pixel_shuffle_backward_triton(torch.zeros(2, 3, 11, 14), 2, None, 5, 7)
