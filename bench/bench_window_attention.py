"""Benchmark of shifted-window attention in the image layout: SwinIR's masked layer (window 8, shift 4)
and the Swin family's windows (HAT's 16 x 16 shifted by 8, DAT's 8 x 32 shifted by (4, 16), DRCT's
head_dim 122, SRFormer's 22 x 22), each shape its own pytest-benchmark group named after the model.

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
    python -m pytest bench/bench_window_attention.py --benchmark-only -k "HAT or DAT or DRCT or SRFormer"
"""

import os

import pytest
import torch
import torch.nn.functional as F
from bench.utils import skip_unless_ours_can_run

import swinir_kernels
from swinir_kernels import reference

OP = "shifted_window_attention"
# (model, B, H, W, C, num_heads, (wh, ww), (sh, sw)): SwinIR lightweight (C=60, head_dim 10) and classical
# (C=180, head_dim 30); HAT (C 180, 6 heads, 16 x 16 windows: 256 tokens); DAT (one branch of its split
# attention: 3 heads of 30 in 8 x 32 windows); DRCT (a dense layer's head_dim 122); SRFormer (22 x 22:
# 484 tokens).
SHAPES = {
    "cuda": [("SwinIR-light", 1, 256, 256, 60, 6, (8, 8), (4, 4)), ("SwinIR", 1, 256, 256, 180, 6, (8, 8), (4, 4)),
             ("SwinIR", 32, 64, 64, 180, 6, (8, 8), (4, 4)),  # qkv >= 23 MB, o >= 7.8 MB
             ("HAT", 4, 128, 128, 180, 6, (16, 16), (8, 8)), ("DAT", 4, 128, 128, 90, 3, (8, 32), (4, 16)),
             ("DRCT", 4, 128, 128, 366, 3, (16, 16), (8, 8)), ("SRFormer", 4, 132, 132, 180, 6, (22, 22), (11, 11))],
    "cpu": [("SwinIR-light", 1, 64, 64, 60, 6, (8, 8), (4, 4)), ("SwinIR-light", 1, 128, 128, 60, 6, (8, 8), (4, 4)),
            ("SwinIR", 1, 64, 64, 180, 6, (8, 8), (4, 4)), ("SwinIR", 1, 128, 128, 180, 6, (8, 8), (4, 4)),
            ("HAT", 1, 64, 64, 180, 6, (16, 16), (8, 8)), ("DAT", 1, 64, 64, 90, 3, (8, 32), (4, 16)),
            ("DRCT", 1, 64, 64, 366, 3, (16, 16), (8, 8)), ("SRFormer", 1, 66, 66, 180, 6, (22, 22), (11, 11))],
}  # fmt: skip
# Square and rectangular: 2 x 3 windows of 8 x 8 (head_dim 10, batch 2) and 2 x 1 of 8 x 16 shifted (4, 8).
SMOKE_SHAPES = [("SwinIR", 2, 16, 24, 20, 2, (8, 8), (4, 4)), ("DAT-S", 1, 16, 16, 20, 2, (8, 16), (4, 8))]
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
    """'B1xH64xW64xC180xnH6xws8xs4' (SwinIR's, as in the recorded rows), 'HAT-B1x...xws16xs8' and
    'DAT-B1x...xws8x32xs4x16' (a window or shift that differs per axis as HxW)."""
    model, B, H, W, C, num_heads, window, shift = shape
    per_axis = lambda pair: str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"  # noqa: E731
    prefix = "" if model.startswith("SwinIR") else f"{model}-"
    return f"{prefix}B{B}xH{H}xW{W}xC{C}xnH{num_heads}xws{per_axis(window)}xs{per_axis(shift)}"


def sdpa_folded_bias(qkv, rel_bias, num_heads, window_size, shift):
    """Partition, SDPA with the relative bias and the shift mask added into one attn_mask, reverse."""
    B, H, W, C3 = qkv.shape
    C = C3 // 3
    windows = reference.window_partition(qkv, window_size, shift)  # (B*nW, N, 3C)
    Bw, N, _ = windows.shape
    q, k, v = windows.reshape(Bw, N, 3, num_heads, C // num_heads).permute(2, 0, 3, 1, 4)
    mask = rel_bias.to(qkv.dtype).unsqueeze(0)  # (1, nH, N, N)
    if any(reference.pair(shift)):
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
    _, B, H, W, C, num_heads, (wh, ww), _ = shape
    qkv = torch.randn(B, H, W, 3 * C, device=device, dtype=dtype)
    rel_bias = torch.randn(num_heads, wh * ww, wh * ww, device=device, dtype=dtype)
    return qkv, rel_bias


def check_forward(fn, qkv, rel_bias, shape, provider):
    """The provider's output against the float64 reference (also its first, untimed, call)."""
    num_heads, window, shift = shape[5:]
    expected = reference.shifted_window_attention(qkv.double(), rel_bias.double(), num_heads, window, shift)
    try:
        with torch.no_grad():
            out = fn(qkv, rel_bias, num_heads, window, shift)
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
    _, B, H, W, C, num_heads, (wh, ww), shift = shape
    check_forward(fn, qkv, rel_bias, shape, provider)

    def call():
        with torch.no_grad():
            return fn(qkv, rel_bias, num_heads, (wh, ww), shift)

    tokens, N = B * H * W, wh * ww
    measure(call, op=OP, provider=provider, mode="forward", dtype=dtype, shape=shape_label(shape),
            bytes_moved=4 * C * qkv.element_size() * tokens, flops=4 * N * C * tokens,
            fp32_on_tensor_cores=fp32_on_tensor_cores())


def test_forward_backward(measure, settings, provider, shape, dtype):
    fn = provider_function(provider, settings, dtype)
    qkv, rel_bias = tensors(shape, dtype, settings.device)
    _, B, H, W, C, num_heads, (wh, ww), shift = shape
    check_forward(fn, qkv, rel_bias, shape, provider)
    qkv.requires_grad_()
    rel_bias.requires_grad_()
    grad_out = torch.randn(B, H, W, C, device=settings.device, dtype=dtype)

    def call():
        out = fn(qkv, rel_bias, num_heads, (wh, ww), shift)
        return torch.autograd.grad(out, (qkv, rel_bias), grad_out)

    if provider == "flex":
        try:
            call()
        except Exception as error:
            pytest.skip(f"flex: the installed torch has no backward for it here: {str(error).splitlines()[0][:200]}")
    tokens, N = B * H * W, wh * ww
    measure(call, op=OP, provider=provider, mode="forward+backward", dtype=dtype, shape=shape_label(shape),
            bytes_moved=11 * C * qkv.element_size() * tokens, flops=14 * N * C * tokens,
            fp32_on_tensor_cores=fp32_on_tensor_cores())
