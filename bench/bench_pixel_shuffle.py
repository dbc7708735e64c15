"""Benchmark pixel_shuffle with its fused epilogue against eager PyTorch, its torch.compile, and a
plain copy of the input (the bandwidth ceiling).

Two SwinIR cases:
* ``tail``: the lightweight model's tail, ``(F.pixel_shuffle(x, r) * (1/img_range) + mean)[..., :oh, :ow]``
  (r = 4, 3 output channels, cropped by a few pixels), fused into one pass by ours;
* ``upsample``: the classical model's ``PixelShuffle(2)`` (C=64 output channels), a plain shuffle.
Each in NCHW and channels_last, forward (``fwd_<format>``) and forward + backward (``fwd+bwd_<format>``,
the gradient of x). Bytes moved = x read + output written, twice that with the backward (grad_out
read, grad_x written); the copy provider copies x once or twice to match.

    python bench/bench_pixel_shuffle.py                  # CPU table, 2 threads
    python bench/bench_pixel_shuffle.py --device cuda    # SwinIR shapes on the GPU
"""

import torch
import torch.nn.functional as F

import swinir_kernels as sk

try:
    import utils
except ImportError:  # run as a module: python -m bench.bench_pixel_shuffle
    from bench import utils

# (case, (B, C*r*r, H, W), r, crop): crop pixels removed from the bottom and right of the output.
GPU_CASES = [("tail", (1, 48, 256, 256), 4, 8), ("upsample", (1, 256, 256, 256), 2, 0)]
GPU_DTYPES = [torch.float32, torch.float16]
CPU_CASES = [("tail", (1, 48, 128, 128), 4, 8), ("upsample", (1, 256, 64, 64), 2, 0)]
CPU_DTYPES = [torch.float32]
FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def eager_tail(x, r, scale, bias, out_h, out_w):
    """SwinIR's code: shuffle, then the affine as broadcast ops, then a crop (a view)."""
    y = F.pixel_shuffle(x, r)
    if scale is not None:
        y = y * scale.reshape(1, -1, 1, 1) + bias.reshape(1, -1, 1, 1)
    return y[:, :, :out_h, :out_w]


def run_case(rows, device, dtype, case, shape, r, crop, format_name, compile_baseline):
    x = torch.randn(shape, device=device, dtype=dtype).contiguous(memory_format=FORMATS[format_name])
    C = shape[1] // (r * r)
    out_h, out_w = shape[2] * r - crop, shape[3] * r - crop
    if case == "tail":  # img_range 1.0 would be a no-op; SwinIR's DIV2K mean per channel
        scale = torch.full((C,), 1 / 255.0, device=device, dtype=dtype)
        bias = torch.tensor([0.4488, 0.4371, 0.4040], device=device, dtype=dtype)
    else:
        scale = bias = None
    forward_bytes = (x.numel() + shape[0] * C * out_h * out_w) * x.element_size()
    copy_target = torch.empty_like(x)
    eager = {"reference": lambda x: eager_tail(x, r, scale, bias, out_h, out_w)}
    if compile_baseline:
        torch._dynamo.reset()
        compiled = torch.compile(eager_tail, dynamic=False)
        eager["compile"] = lambda x: compiled(x, r, scale, bias, out_h, out_w)
    ours = {}
    for backend in utils.kernel_providers("pixel_shuffle", device):

        def fused(x, backend=backend):
            with sk.use_backend(backend):
                return sk.pixel_shuffle(x, r, scale=scale, bias=bias, out_size=(out_h, out_w))

        torch.testing.assert_close(fused(x), eager["reference"](x), msg=f"{backend} differs from eager")
        ours[backend] = fused
    shape_label = "x".join(map(str, shape))
    x_grad = x.detach().requires_grad_()
    grad_out = torch.randn(shape[0], C, out_h, out_w, device=device, dtype=dtype)

    def with_backward(fn):
        return lambda: torch.autograd.grad(fn(x_grad), x_grad, grad_out)

    for mode, copies in (("fwd", 1), ("fwd+bwd", 2)):
        providers = {"copy": lambda copies=copies: [copy_target.copy_(x) for _ in range(copies)]}
        for name, fn in {**eager, **ours}.items():
            providers[name] = (lambda fn=fn: fn(x)) if mode == "fwd" else with_backward(fn)
        op = f"pixel_shuffle_{case}"
        case_rows = utils.compare_providers(
            op, f"{mode}_{format_name}", dtype, shape_label, copies * forward_bytes, providers, device,
            **utils.MEMORY_BOUND_TIMING,
        )
        utils.print_rows(case_rows)
        rows += case_rows


def main() -> None:
    args = utils.memory_bound_args(__doc__)
    on_gpu = args.device == "cuda"
    rows: list[dict] = []
    for dtype in GPU_DTYPES if on_gpu else CPU_DTYPES:
        for case, shape, r, crop in GPU_CASES if on_gpu else CPU_CASES:
            for format_name in FORMATS:
                run_case(rows, args.device, dtype, case, shape, r, crop, format_name, not args.no_compile)
    if not args.no_csv:
        print("appended to", utils.append_csv(rows, args.device))


if __name__ == "__main__":
    main()
