"""torch.library.opcheck of every operator on every available backend: schema, fake kernel, autograd
registration and AOT dispatch. Ops join through SAMPLES; an entry is skipped where the backend has no
kernel for it yet (e.g. the attention ops before their kernels land)."""

from collections.abc import Callable
from typing import NamedTuple

import pytest
import torch

from tests.helpers import needs_cuda, skip_unless_runs

BACKENDS = [
    pytest.param("cpu", "cpu", id="cpu"),
    pytest.param("triton", "cpu", id="triton-interpreter"),
    pytest.param("cuda", "cuda", id="cuda", marks=needs_cuda),
    pytest.param("triton", "cuda", id="triton-cuda", marks=needs_cuda),
]


class Sample(NamedTuple):
    op: str  # the C++ op name; the Triton custom op is "<op>_triton"
    public_op: str  # the public function it serves (what the backend chooser is asked about)
    name: str
    make: Callable[[str, bool], tuple]  # (device, requires_grad) -> positional arguments


def _t(shape, device, requires_grad, dtype=torch.float32, memory_format=torch.contiguous_format):
    t = torch.randn(shape, dtype=dtype, device=device).contiguous(memory_format=memory_format)
    return t.requires_grad_(requires_grad)


def _mask(num_windows, tokens, device):
    return torch.where(torch.rand(num_windows, tokens, tokens, device=device) < 0.3, -100.0, 0.0)


SAMPLES = [
    Sample("window_partition", "window_partition", "shift", lambda d, g: (_t((2, 16, 24, 5), d, g), 8, 4)),
    Sample("window_partition", "window_partition", "negative-shift", lambda d, g: (_t((1, 14, 7, 3), d, g), 7, -3)),
    Sample(
        "window_partition",
        "window_partition",
        "transposed-input",
        lambda d, g: (_t((2, 24, 16, 5), d, False).transpose(1, 2).requires_grad_(g), 8, 0),
    ),
    Sample("window_partition", "window_partition", "rectangle-per-axis-shift", lambda d, g: (_t((2, 8, 32, 5), d, g), [4, 16], [2, -5])),
    Sample("window_reverse", "window_reverse", "shift", lambda d, g: (_t((12, 64, 5), d, g), 8, 16, 48, 4)),
    Sample("window_reverse", "window_reverse", "rectangle-per-axis-shift", lambda d, g: (_t((8, 64, 3), d, g), [4, 16], 8, 64, [0, 8])),
    Sample("window_reverse", "window_reverse", "fp16", lambda d, g: (_t((3, 49, 4), d, g, torch.float16), 7, 21, 7, 3)),
    Sample(
        "pixel_shuffle",
        "pixel_shuffle",
        "affine-crop",
        lambda d, g: (_t((2, 12, 5, 7), d, g), 2, _t(3, d, g), _t(3, d, g), 9, 13),
    ),
    Sample(
        "pixel_shuffle",
        "pixel_shuffle",
        "channels-last-scalar-scale",
        lambda d, g: (_t((1, 27, 4, 3), d, g, memory_format=torch.channels_last), 3, _t(1, d, g), None, 12, 9),
    ),
    Sample("pixel_shuffle", "pixel_shuffle", "plain", lambda d, g: (_t((2, 12, 5, 7), d, g), 2, None, None, 10, 14)),
    Sample(
        "_pixel_shuffle_backward", "pixel_shuffle", "scale-crop", lambda d, g: (_t((2, 3, 9, 13), d, False), 2, _t(3, d, False), 5, 7)
    ),
    Sample(
        "_pixel_shuffle_backward",
        "pixel_shuffle",
        "channels-last",
        lambda d, g: (_t((1, 3, 12, 9), d, False, memory_format=torch.channels_last), 3, None, 4, 3),
    ),
    # Attention: window layout (B*nW=4, N=16, 3C=60; 2 heads of 10) and image layout (1, 8, 8, 60), ws 4.
    Sample(
        "window_attention",
        "window_attention",
        "mask",
        lambda d, g: (_t((4, 16, 60), d, g), _t((2, 16, 16), d, g), _mask(2, 16, d), 2, 10**-0.5),
    ),
    Sample("window_attention", "window_attention", "no-mask", lambda d, g: (_t((2, 16, 90), d, g), _t((1, 16, 16), d, g), None, 1, 30**-0.5)),
    Sample(
        "_window_attention_backward",
        "window_attention",
        "mask",
        lambda d, g: (_t((4, 16, 20), d, False), _t((4, 16, 60), d, False), _t((2, 16, 16), d, False), _mask(2, 16, d), 2, 0.3),
    ),
    Sample(
        "shifted_window_attention",
        "shifted_window_attention",
        "shift",
        lambda d, g: (_t((1, 8, 8, 60), d, g), _t((2, 16, 16), d, g), 2, 4, 2, 10**-0.5),
    ),
    # DAT's rectangles: 4 x 8 windows shifted (2, 4) over an 8 x 16 image.
    Sample(
        "shifted_window_attention",
        "shifted_window_attention",
        "rectangle",
        lambda d, g: (_t((1, 8, 16, 60), d, g), _t((2, 32, 32), d, g), 2, [4, 8], [2, 4], 10**-0.5),
    ),
    Sample(
        "_shifted_window_attention_backward",
        "shifted_window_attention",
        "rectangle",
        lambda d, g: (_t((1, 8, 16, 20), d, False), _t((1, 8, 16, 60), d, False), _t((2, 32, 32), d, False), 2, [4, 8], [0, 4], 0.3),
    ),
    Sample(
        "_shifted_window_attention_backward",
        "shifted_window_attention",
        "shift",
        lambda d, g: (_t((1, 8, 8, 20), d, False), _t((1, 8, 8, 60), d, False), _t((2, 16, 16), d, False), 2, 4, 2, 0.3),
    ),
]


def _resolve(backend: str, sample: Sample, device: str):
    """The op object this backend uses for `sample`, or pytest.skip when it has none here."""
    skip_unless_runs(backend, sample.public_op, torch.empty(1, device=device))
    name = f"{sample.op}_triton" if backend == "triton" else sample.op
    if not hasattr(torch.ops.swinir_kernels, name):
        pytest.skip(f"{backend} has no op swinir_kernels::{name}")
    if backend != "triton" and not torch._C._dispatch_has_kernel_for_dispatch_key(
        f"swinir_kernels::{name}", backend.upper()
    ):
        pytest.skip(f"_C has no {backend} kernel for {name}")
    return getattr(torch.ops.swinir_kernels, name).default


# Backward ops take no gradients: their "grad" variants are not generated (rather than skipped).
SAMPLE_GRAD_PARAMS = [
    pytest.param(sample, requires_grad, id=f"{sample.op}-{sample.name}-{'grad' if requires_grad else 'no-grad'}")
    for sample in SAMPLES
    for requires_grad in (False, True)
    if not (requires_grad and sample.op.startswith("_"))
]


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("sample, requires_grad", SAMPLE_GRAD_PARAMS)
def test_opcheck(backend, device, sample, requires_grad):
    op = _resolve(backend, sample, device)
    torch.library.opcheck(op, sample.make(device, requires_grad))
