"""Benchmark of shifted-window attention in the image layout (ws 8, shift 4: SwinIR's masked layer).

Providers (each computes reference.shifted_window_attention's result, checked against float64):
  cuda, triton, cpu    our fused kernels (swinir_kernels backends, each asked for by name)
  reference            roll + partition + attention (+ mask tensor) + reverse + roll, eager PyTorch
  reference-compiled   torch.compile of that chain
  sdpa-folded-bias     partition + F.scaled_dot_product_attention with rel_bias + shift mask folded
                       into one attn_mask + reverse
  flex                 torch.compile of partition + FlexAttention with a score_mod adding the bias and
                       the mask + reverse; on the CPU (torch 2.13) Inductor fails to lower this
                       score_mod and there is no backward, so only the smoke run's forward (dynamo with
                       the "eager" backend) runs there; skipped with torch's error where the installed
                       torch cannot run a direction

Tests: ``test_forward`` (under no_grad) and ``test_forward_backward`` (gradients of qkv and rel_bias).
Bytes a fused kernel must move: forward 4*C*s per token (read q, k, v, write o), backward 7*C*s (read
q, k, v, dO, write dq, dk, dv), so forward+backward counts 11*C*s. FLOPs: 4*N*C per token forward,
10*N*C backward (kernel-physics.md).

    python -m pytest bench/bench_window_attention.py --benchmark-only
    python -m pytest bench/bench_window_attention.py --benchmark-only --bench-dtypes float16 -k forward
"""

import os

import pytest
import torch
import torch.nn.functional as F
from bench.utils import skip_unless_ours_can_run

import swinir_kernels
from swinir_kernels import reference

OP = "shifted_window_attention"
WINDOW_SIZE, SHIFT = 8, 4
# (B, H, W, C, num_heads): SwinIR lightweight (C=60, head_dim 10) and classical (C=180, head_dim 30).
SHAPES = {
    "cuda": [(1, 256, 256, 60, 6), (1, 256, 256, 180, 6), (32, 64, 64, 180, 6)],  # qkv >= 23 MB, o >= 7.8 MB
    "cpu": [(1, 64, 64, 60, 6), (1, 128, 128, 60, 6), (1, 64, 64, 180, 6), (1, 128, 128, 180, 6)],
}
SMOKE_SHAPES = [(2, 16, 24, 20, 2)]  # 2 x 3 windows, head_dim 10, batch 2
DTYPES = {"cuda": ("bfloat16", "float32"), "cpu": ("float32", "bfloat16")}
PROVIDERS = {
    "cuda": ("cuda", "triton", "reference", "reference-compiled", "sdpa-folded-bias", "flex"),
    "cpu": ("cpu", "triton", "reference", "reference-compiled", "sdpa-folded-bias", "flex"),
}


def parameters(settings) -> dict:
    shapes = SMOKE_SHAPES if settings.smoke else SHAPES[settings.device]
    dtypes = settings.dtypes or (("float32",) if settings.smoke else DTYPES[settings.device])
    return {
        "shape": [pytest.param(shape, id=shape_label(shape)) for shape in shapes],
        "dtype": [pytest.param(getattr(torch, name), id=name) for name in dtypes],
        "provider": list(PROVIDERS[settings.device]),
    }


def shape_label(shape) -> str:
    B, H, W, C, num_heads = shape
    return f"B{B}xH{H}xW{W}xC{C}xnH{num_heads}xws{WINDOW_SIZE}xs{SHIFT}"


def sdpa_folded_bias(qkv, rel_bias, num_heads, window_size, shift):
    """Partition, SDPA with the relative bias and the shift mask added into one attn_mask, reverse."""
    B, H, W, C3 = qkv.shape
    C = C3 // 3
    windows = reference.window_partition(qkv, window_size, shift)  # (B*nW, N, 3C)
    Bw, N, _ = windows.shape
    q, k, v = windows.reshape(Bw, N, 3, num_heads, C // num_heads).permute(2, 0, 3, 1, 4)
    mask = rel_bias.to(qkv.dtype).unsqueeze(0)  # (1, nH, N, N)
    if shift:
        shift_mask = reference.shift_attention_mask(H, W, window_size, shift, device=qkv.device, dtype=qkv.dtype)
        nW = shift_mask.shape[0]
        mask = (mask.unsqueeze(0) + shift_mask.unsqueeze(1).unsqueeze(0)).expand(B, nW, num_heads, N, N)
        mask = mask.reshape(Bw, num_heads, N, N)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return reference.window_reverse(out.transpose(1, 2).reshape(Bw, N, C), window_size, H, W, shift)


def flex_attention_chain(qkv, rel_bias, num_heads, window_size, shift):
    """Partition, FlexAttention whose score_mod adds rel_bias[h, i, j] and the shift mask of window
    b mod nW, reverse (compiled as a whole by the caller)."""
    from torch.nn.attention.flex_attention import flex_attention

    B, H, W, C3 = qkv.shape
    C = C3 // 3
    windows = reference.window_partition(qkv, window_size, shift)
    Bw, N, _ = windows.shape
    q, k, v = windows.reshape(Bw, N, 3, num_heads, C // num_heads).permute(2, 0, 3, 1, 4)
    shift_mask = reference.shift_attention_mask(H, W, window_size, shift, device=qkv.device, dtype=qkv.dtype)
    windows_per_image = shift_mask.shape[0]

    def add_bias_and_mask(score, b, h, q_idx, kv_idx):
        return score + rel_bias[h, q_idx, kv_idx] + shift_mask[b % windows_per_image, q_idx, kv_idx]

    out = flex_attention(q, k, v, score_mod=add_bias_and_mask)
    return reference.window_reverse(out.transpose(1, 2).reshape(Bw, N, C), window_size, H, W, shift)


def provider_function(provider, settings, dtype):
    """fn(qkv, rel_bias, num_heads, window_size, shift) of `provider`, or pytest.skip saying why not here."""
    if provider in ("cuda", "triton", "cpu"):
        skip_unless_ours_can_run(provider, OP, settings.device, dtype, settings.smoke)

        def ours(qkv, rel_bias, num_heads, window_size, shift):
            with swinir_kernels.use_backend(provider):
                return swinir_kernels.shifted_window_attention(
                    qkv, rel_bias, num_heads=num_heads, window_size=window_size, shift=shift
                )

        return ours
    if provider == "reference":
        return reference.shifted_window_attention
    if provider == "reference-compiled":
        return settings.compile(reference.shifted_window_attention)
    if provider == "sdpa-folded-bias":
        return sdpa_folded_bias
    # On the CPU, torch 2.13's Inductor cannot lower this score_mod (NoValidChoicesError) and FlexAttention
    # has no backward: the timed run skips there with torch's error (check_forward, test_forward_backward),
    # while the smoke run's "eager" compile runs the forward, checked against the float64 reference.
    return settings.compile(flex_attention_chain)


def tensors(shape, dtype, device):
    torch.manual_seed(0)
    B, H, W, C, num_heads = shape
    N = WINDOW_SIZE * WINDOW_SIZE
    qkv = torch.randn(B, H, W, 3 * C, device=device, dtype=dtype)
    rel_bias = torch.randn(num_heads, N, N, device=device, dtype=dtype)
    return qkv, rel_bias


def check_forward(fn, qkv, rel_bias, num_heads, provider):
    """The provider's output against the float64 reference (also its first, untimed, call)."""
    expected = reference.shifted_window_attention(qkv.double(), rel_bias.double(), num_heads, WINDOW_SIZE, SHIFT)
    try:
        with torch.no_grad():
            out = fn(qkv, rel_bias, num_heads, WINDOW_SIZE, SHIFT)
    except Exception as error:  # FlexAttention: the installed torch may not support a direction/device
        if provider != "flex":
            raise
        pytest.skip(f"flex: the installed torch cannot run it here: {str(error).splitlines()[0][:200]}")
    tolerance = 1e-4 if qkv.dtype == torch.float32 else 5e-2
    error = (out.double() - expected).abs().max().item()
    assert error <= tolerance, f"{provider} disagrees with the float64 reference: max error {error}"


def fp32_on_tensor_cores() -> bool:
    return os.environ.get("SWINIR_KERNELS_FP32_PRECISION") == "tf32" or torch.backends.cuda.matmul.allow_tf32


def test_forward(measure, settings, provider, shape, dtype):
    fn = provider_function(provider, settings, dtype)
    qkv, rel_bias = tensors(shape, dtype, settings.device)
    B, H, W, C, num_heads = shape
    check_forward(fn, qkv, rel_bias, num_heads, provider)

    def call():
        with torch.no_grad():
            return fn(qkv, rel_bias, num_heads, WINDOW_SIZE, SHIFT)

    tokens, N = B * H * W, WINDOW_SIZE * WINDOW_SIZE
    measure(call, op=OP, provider=provider, mode="forward", dtype=dtype, shape=shape_label(shape),
            bytes_moved=4 * C * qkv.element_size() * tokens, flops=4 * N * C * tokens,
            fp32_on_tensor_cores=fp32_on_tensor_cores())


def test_forward_backward(measure, settings, provider, shape, dtype):
    fn = provider_function(provider, settings, dtype)
    qkv, rel_bias = tensors(shape, dtype, settings.device)
    B, H, W, C, num_heads = shape
    check_forward(fn, qkv, rel_bias, num_heads, provider)
    qkv.requires_grad_()
    rel_bias.requires_grad_()
    grad_out = torch.randn(B, H, W, C, device=settings.device, dtype=dtype)

    def call():
        out = fn(qkv, rel_bias, num_heads, WINDOW_SIZE, SHIFT)
        return torch.autograd.grad(out, (qkv, rel_bias), grad_out)

    if provider == "flex":
        try:
            call()
        except Exception as error:
            pytest.skip(f"flex: the installed torch has no backward for it here: {str(error).splitlines()[0][:200]}")
    tokens, N = B * H * W, WINDOW_SIZE * WINDOW_SIZE
    measure(call, op=OP, provider=provider, mode="forward+backward", dtype=dtype, shape=shape_label(shape),
            bytes_moved=11 * C * qkv.element_size() * tokens, flops=14 * N * C * tokens,
            fp32_on_tensor_cores=fp32_on_tensor_cores())
