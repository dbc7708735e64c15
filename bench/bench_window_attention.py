"""Benchmark of shifted-window attention (image layout, ws=8, shift=4: the masked SwinIR layer).

Providers (each computes reference.shifted_window_attention's result):
  reference            roll + partition + attention (+ mask tensor) + reverse + roll, eager PyTorch
  reference-compiled   torch.compile of that chain
  cpu                  the fused C++ CPU kernel (swinir_kernels backend "cpu")
  cuda, triton         the fused GPU kernels, when built / registered          [GPU: UNVERIFIED here]
  sdpa-folded-bias     partition + F.scaled_dot_product_attention with rel_bias + shift mask folded
                       into attn_mask + reverse (any device; checked against the fp64 reference first)

Modes: ``forward`` (under no_grad) and ``forward+backward`` (grads of qkv and rel_bias).
GB/s counts the bytes a fused kernel must move: forward 4*C*s per token (read q, k, v, write o),
backward 7*C*s per token (read q, k, v, dO, write dq, dk, dv), so forward+backward counts 11*C*s.
Peak memory of one call is measured on CUDA (the caching allocator's peak); not on CPU.

    python bench/bench_window_attention.py                 # CPU, 2 threads, fp32; appends bench/results/<device>.csv
    python bench/bench_window_attention.py --device cuda --dtype bfloat16
"""

import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout, not an installed copy

import swinir_kernels  # noqa: E402
from swinir_kernels import _backend, reference  # noqa: E402

from utils import append_csv, compare_providers, keep_freed_memory_mapped, print_table  # noqa: E402

WINDOW_SIZE, SHIFT = 8, 4
# (B, H, W, C, num_heads): SwinIR lightweight (C=60, head_dim 10) and classical (C=180, head_dim 30).
SHAPES = [(1, 64, 64, 60, 6), (1, 128, 128, 60, 6), (1, 64, 64, 180, 6), (1, 128, 128, 180, 6)]
MODES = ("forward", "forward+backward")


def sdpa_folded_bias(qkv, rel_bias, num_heads, window_size, shift, scale=None):
    """Partition, SDPA with the relative bias and the shift mask added into one attn_mask, reverse.
    The GPU baseline of kernel-physics.md; its correctness is checked against the reference below."""
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
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    return reference.window_reverse(out.transpose(1, 2).reshape(Bw, N, C), window_size, H, W, shift)


def backend_provider(name):
    def run(qkv, rel_bias, num_heads, window_size, shift):
        with swinir_kernels.use_backend(name):
            return swinir_kernels.shifted_window_attention(
                qkv, rel_bias, num_heads=num_heads, window_size=window_size, shift=shift
            )

    return run


def providers(device: str, sample_qkv: torch.Tensor) -> dict:
    """name -> fn(qkv, rel_bias, num_heads, window_size, shift); the reference first."""
    chosen = {
        "reference": reference.shifted_window_attention,
        "reference-compiled": torch.compile(reference.shifted_window_attention),
    }
    # Fused kernels: only those the backend chooser says can run here.
    for name in ("cpu",) if device == "cpu" else ("cuda", "triton"):
        why_not = _backend._cannot_run(name, "shifted_window_attention", sample_qkv)
        if why_not is None:
            chosen[name] = backend_provider(name)
        else:
            print(f"skipping provider {name}: {why_not}")
    chosen["sdpa-folded-bias"] = sdpa_folded_bias
    return chosen


def bench_shape(shape, dtype, device, mode_names, provider_fns) -> list[dict]:
    B, H, W, C, num_heads = shape
    N = WINDOW_SIZE * WINDOW_SIZE
    qkv = torch.randn(B, H, W, 3 * C, device=device, dtype=dtype)
    rel_bias = torch.randn(num_heads, N, N, device=device, dtype=dtype)
    grad_out = torch.randn(B, H, W, C, device=device, dtype=dtype)
    expected = reference.shifted_window_attention(qkv.double(), rel_bias.double(), num_heads, WINDOW_SIZE, SHIFT)
    tolerance = 1e-4 if dtype == torch.float32 else 5e-2
    with torch.no_grad():
        for name, fn in provider_fns.items():
            error = (fn(qkv, rel_bias, num_heads, WINDOW_SIZE, SHIFT).double() - expected).abs().max().item()
            if error > tolerance:
                raise AssertionError(f"{name} disagrees with the fp64 reference at {shape}: max error {error}")

    qkv_grad = qkv.detach().requires_grad_()
    bias_grad = rel_bias.detach().requires_grad_()
    tokens, element = B * H * W, qkv.element_size()
    shape_label = f"B{B}xH{H}xW{W}xC{C}xnH{num_heads}xws{WINDOW_SIZE}xs{SHIFT}"
    rows = []
    for mode in mode_names:
        if mode == "forward":
            bytes_moved = 4 * C * element * tokens

            def timed(fn):
                def call():
                    with torch.no_grad():
                        fn(qkv, rel_bias, num_heads, WINDOW_SIZE, SHIFT)

                return call
        else:
            bytes_moved = 11 * C * element * tokens

            def timed(fn):
                def call():
                    out = fn(qkv_grad, bias_grad, num_heads, WINDOW_SIZE, SHIFT)
                    torch.autograd.grad(out, (qkv_grad, bias_grad), grad_out)

                return call

        calls = {name: timed(fn) for name, fn in provider_fns.items()}
        rows += compare_providers("shifted_window_attention", mode, dtype, shape_label, bytes_moved, calls, device)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--no-csv", action="store_true", help="print only, do not append to bench/results")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    keep_freed_memory_mapped()
    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    provider_fns = providers(args.device, torch.empty(1, device=args.device, dtype=dtype))
    rows = []
    for shape in SHAPES:
        torch._dynamo.reset()  # reference-compiled: compile each shape fresh, no dynamic-shape recompiles
        rows += bench_shape(shape, dtype, args.device, args.modes, provider_fns)
    print_table(rows)
    if not args.no_csv:
        print("appended to", append_csv(rows, args.device))


if __name__ == "__main__":
    main()
