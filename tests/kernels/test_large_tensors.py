"""Tensors of more than 2**31 elements: every kernel must address them with 64-bit offsets.

Each input is fp16, ~4.4 GB, left at zero except for a slice that the op maps independently of the
rest (the last channels for the permutations, the last head for attention, the last output channel for
pixel_shuffle); that slice, which sits past element 2**31 for the last pixels, is checked against the
reference run on the slice alone. A 32-bit offset would wrap and read or write the wrong place.
Peak memory ~9 GB (skipped on the CPU with less than 12 GiB free); a few seconds each on 2 cores. The Triton interpreter would take hours: not run.
"""

import pytest
import torch

import swinir_kernels as sk
from swinir_kernels import reference
from tests.helpers import needs_cuda, skip_unless_runs


def available_host_gib() -> float:
    """MemAvailable of /proc/meminfo in GiB (0 where there is no /proc)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


needs_host_memory = pytest.mark.skipif(available_host_gib() < 12, reason="needs 12 GiB of free host memory")
BACKENDS = [
    pytest.param("cpu", "cpu", id="cpu", marks=needs_host_memory),
    pytest.param("cuda", "cuda", id="cuda", marks=needs_cuda),
    pytest.param("triton", "cuda", id="triton-cuda", marks=needs_cuda),
]
BEYOND_INT32 = 2**31


def zeros_with_tail(shape, tail, device):
    """fp16 zeros of `shape` (more than 2**31 elements) whose last `tail` entries of the last dim are random."""
    x = torch.zeros(shape, dtype=torch.float16, device=device)
    assert x.numel() > BEYOND_INT32
    x[..., -tail:] = torch.randn(*shape[:-1], tail, device=device).half()
    return x


def run(backend, op, *args, **kwargs):
    skip_unless_runs(backend, op, args[0])
    with sk.use_backend(backend):
        return getattr(sk, op)(*args, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("backend,device", BACKENDS)
def test_window_partition_and_reverse(backend, device):
    H = W = 64
    C = 2**19 + 2**13  # 4096 pixels x C = 2**31 + 2**25 elements
    x = zeros_with_tail((1, H, W, C), 4, device)
    tail = x[..., -4:].clone()
    windows = run(backend, "window_partition", x, 8, 4)
    assert torch.equal(windows[..., -4:], reference.window_partition(tail, 8, 4))
    del x
    image = run(backend, "window_reverse", windows, 8, H, W, 4)
    assert torch.equal(image[..., -4:], tail)


@pytest.mark.slow
@pytest.mark.parametrize("backend,device", BACKENDS)
def test_shifted_window_attention_forward(backend, device):
    H = W = 64
    head_dim, num_heads = 64, 2736  # qkv: 4096 tokens x 3 x 175,104 channels = 2**31 + 4,194,304 elements
    C = head_dim * num_heads
    qkv = torch.zeros(1, H, W, 3 * C, dtype=torch.float16, device=device)
    assert qkv.numel() > BEYOND_INT32
    last_head = torch.randn(1, H, W, 3, head_dim, device=device).half()
    for part in range(3):  # the last head's q, k and v columns
        qkv[..., (part + 1) * C - head_dim : (part + 1) * C] = last_head[..., part, :]
    rel_bias = torch.randn(num_heads, 64, 64, device=device).half()
    out = run(backend, "shifted_window_attention", qkv, rel_bias, num_heads=num_heads, window_size=8, shift=4)
    expected = reference.shifted_window_attention(
        last_head.reshape(1, H, W, 3 * head_dim).float(), rel_bias[-1:].float(), 1, 8, 4, head_dim**-0.5
    )
    torch.testing.assert_close(out[..., -head_dim:].float(), expected, atol=2e-3, rtol=2e-3)


@pytest.mark.slow
@pytest.mark.parametrize("backend,device", BACKENDS)
def test_pixel_shuffle_with_epilogue(backend, device):
    r, C, H, W = 2, 8200, 256, 256  # 8200 x 4 x 65536 = 2**31 + 2,097,152 elements
    x = torch.zeros(1, C * r * r, H, W, dtype=torch.float16, device=device)
    assert x.numel() > BEYOND_INT32
    x[:, -r * r :] = torch.randn(1, r * r, H, W, device=device).half()
    scale = torch.rand(C, device=device).half()
    bias = torch.rand(C, device=device).half()
    out = run(backend, "pixel_shuffle", x, r, scale=scale, bias=bias, out_size=(H * r - 3, W * r - 1))
    tail = x[:, -r * r :].float()
    expected = reference.pixel_shuffle(tail, r, scale[-1:].float(), bias[-1:].float(), H * r - 3, W * r - 1).half()
    assert out.shape == (1, C, H * r - 3, W * r - 1)
    torch.testing.assert_close(out[:, -1:], expected, atol=2e-3, rtol=2e-3)
