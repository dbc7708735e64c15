"""Benchmark of pixel_shuffle with its fused epilogue, NCHW and channels_last.

Two SwinIR cases:
* ``tail``: the lightweight model's tail, ``(F.pixel_shuffle(x, r) * (1/img_range) + mean)[..., :oh, :ow]``
  (r = 4, 3 output channels, cropped by a few pixels), one pass in ours;
* ``upsample``: the classical model's ``PixelShuffle(2)`` (64 output channels), a plain shuffle.
Modes ``fwd_<format>`` and ``fwd+bwd_<format>`` (the gradient of x). Bytes moved = x read + output
written, twice that with the backward (grad_out read, grad_x written); the copy provider copies x
once or twice to match. Providers: cuda, triton, cpu (ours); reference (eager: shuffle, affine as
broadcast ops, crop as a view); reference-compiled; copy.

    python -m pytest bench/bench_pixel_shuffle.py --benchmark-only
"""

import pytest
import torch
import torch.nn.functional as F
from bench.utils import skip_unless_ours_can_run

import swinir_kernels

# (case, (B, C*r*r, H, W), r, crop): crop pixels removed from the bottom and right of the output.
CASES = {
    "cuda": [("tail", (8, 48, 256, 256), 4, 8), ("upsample", (1, 256, 256, 256), 2, 0)],  # >= 100 MB moved in fp16
    "cpu": [("tail", (1, 48, 128, 128), 4, 8), ("upsample", (1, 256, 64, 64), 2, 0)],
}
SMOKE_CASES = [("tail", (2, 48, 6, 5), 4, 3), ("upsample", (1, 16, 5, 6), 2, 0)]
DTYPES = {"cuda": ("float32", "float16"), "cpu": ("float32",)}
FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
PROVIDERS = {
    "cuda": ("cuda", "triton", "reference", "reference-compiled", "copy"),
    "cpu": ("cpu", "triton", "reference", "reference-compiled", "copy"),
}
DIV2K_MEAN = (0.4488, 0.4371, 0.4040)  # SwinIR's per-channel mean (img_range 1.0 would make a no-op affine)


def parameters(settings) -> dict:
    cases = SMOKE_CASES if settings.smoke else CASES[settings.device]
    dtypes = settings.dtypes or (("float32",) if settings.smoke else DTYPES[settings.device])
    return {
        "case": [pytest.param(case, id=f"{case[0]}-{'x'.join(map(str, case[1]))}") for case in cases],
        "memory_format": list(FORMATS),
        "dtype": [pytest.param(getattr(torch, name), id=name) for name in dtypes],
        "provider": list(PROVIDERS[settings.device]),
    }


def eager_tail(x, r, scale, bias, out_h, out_w):
    """SwinIR's code: shuffle, then the affine as broadcast ops, then a crop (a view)."""
    y = F.pixel_shuffle(x, r)
    if scale is not None:
        y = y * scale.reshape(1, -1, 1, 1) + bias.reshape(1, -1, 1, 1)
    return y[:, :, :out_h, :out_w]


def run(measure, settings, case, memory_format, dtype, provider, backward):
    name, shape, r, crop = case
    device = settings.device
    torch.manual_seed(0)
    x = torch.randn(shape, device=device, dtype=dtype).contiguous(memory_format=FORMATS[memory_format])
    C = shape[1] // (r * r)
    out_h, out_w = shape[2] * r - crop, shape[3] * r - crop
    if name == "tail":
        scale = torch.full((C,), 1 / 255.0, device=device, dtype=dtype)
        bias = torch.tensor(DIV2K_MEAN, device=device, dtype=dtype)
    else:
        scale = bias = None
    copies = 2 if backward else 1
    if provider == "copy":
        target = torch.empty_like(x)

        def timed():
            for _ in range(copies):
                target.copy_(x)
    else:
        if provider in ("cuda", "triton", "cpu"):
            skip_unless_ours_can_run(provider, "pixel_shuffle", device, dtype, settings.smoke)

            def fn(x):
                with swinir_kernels.use_backend(provider):
                    return swinir_kernels.pixel_shuffle(x, r, scale=scale, bias=bias, out_size=(out_h, out_w))
        else:
            eager = eager_tail if provider == "reference" else settings.compile(eager_tail)

            def fn(x):
                return eager(x, r, scale, bias, out_h, out_w)

        # Half precision: eager rounds after the multiply and after the add, a fused epilogue once.
        tolerance = {"rtol": 4e-3, "atol": 4e-3} if x.element_size() == 2 else {}
        torch.testing.assert_close(fn(x), eager_tail(x, r, scale, bias, out_h, out_w), **tolerance,
                                   msg=f"{provider} differs from eager")
        if backward:
            x_grad = x.detach().requires_grad_()
            grad_out = torch.randn(shape[0], C, out_h, out_w, device=device, dtype=dtype)
            timed = lambda: torch.autograd.grad(fn(x_grad), x_grad, grad_out)  # noqa: E731
        else:
            timed = lambda: fn(x)  # noqa: E731
    forward_bytes = (x.numel() + shape[0] * C * out_h * out_w) * x.element_size()
    measure(timed, op=f"pixel_shuffle_{name}", provider=provider,
            mode=f"{'fwd+bwd' if backward else 'fwd'}_{memory_format}", dtype=dtype,
            shape="x".join(map(str, shape)), bytes_moved=copies * forward_bytes)


def test_forward(measure, settings, case, memory_format, dtype, provider):
    run(measure, settings, case, memory_format, dtype, provider, backward=False)


def test_forward_backward(measure, settings, case, memory_format, dtype, provider):
    run(measure, settings, case, memory_format, dtype, provider, backward=True)
