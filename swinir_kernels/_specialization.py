"""Which compiled kernel a call runs (its specialization key), and a small input that runs the same one.

A call's kernel is chosen by:

* what the kernels are compiled or templated on: the dtypes (the CUDA kernels' ``T``/``Acc`` templates,
  Triton's pointer types), head_dim, num_heads, tokens per window, the window size and shift, the layout
  (window or image), the mask (none, a tensor of some dtype, or the shift mask computed in-kernel), the
  fp32 dot precision (ieee or tf32), pixel_shuffle's factor, memory format, scale/bias presence and its
  tile width (Triton constexprs ``NUM_HEADS``, ``HEAD_DIM``, ``N``, ``WINDOW_SIZE``, ``IMAGE_LAYOUT``,
  ``HAS_MASK``, ``HAS_SHIFT``, ``DOT_PRECISION``, ``BLOCK_*``, ``R``, ``HAS_SCALE``, ``CHANNELS_LAST``...):
  these form the key (:func:`key`);
* what Triton additionally specializes every integer argument on (equal to 1; divisible by 16; 32 or
  64 bits) and every pointer on (16-byte aligned): binaries that differ only in these alignment hints
  share a kernel program, so they share the key; the small input (:func:`small_input`) reproduces them
  (sizes with the same power of two up to 16 and the same "is 1", a tensor with the same alignment), so
  that it runs the binary the call itself compiled. Not reproduced: 64-bit integer arguments (more than
  2**31 elements) and unusual strides (neither contiguous nor channels_last), whose binaries the small
  input cannot reach (README: "What the first-use check covers").

Arguments are the reference's positional ones (:mod:`swinir_kernels.reference`).
"""

import math
import os

import torch

FP32_PRECISION_ENV = "SWINIR_KERNELS_FP32_PRECISION"
ATTENTION_OPS = ("window_attention", "shifted_window_attention")
# The Triton attention backward runs min(windows, this) programs per head (an integer argument).
BIAS_PROGRAMS_PER_HEAD = 128
MAX_TILE_WIDTH = 256  # the Triton permutation/shuffle tiles' widest inner extent


def fp32_precision(tensor: torch.Tensor) -> str:
    """The dot precision of fp32 attention: ``SWINIR_KERNELS_FP32_PRECISION`` if set, else ``tf32`` on
    a GPU when ``torch.backends.cuda.matmul.allow_tf32`` is on, else ``ieee``."""
    choice = os.environ.get(FP32_PRECISION_ENV, "")
    if choice:
        return choice
    return "tf32" if tensor.device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32 else "ieee"


def _dtype(t) -> str | None:
    return None if t is None else str(t.dtype).removeprefix("torch.")


def _memory_format(t: torch.Tensor) -> str:
    if t.is_contiguous():
        return "contiguous"
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return "channels_last"
    return "strided"


def _tile_width(extent: int) -> int:
    return min(1 << max(int(extent) - 1, 0).bit_length(), MAX_TILE_WIDTH)


def attention_sizes(op: str, args: tuple | None) -> dict:
    """{"tokens", "head_dim"} of an attention call (tokens per window, channels per head: what the CUDA
    kernel is limited in), else {} (another op, or no arguments)."""
    if args is None or op not in ("window_attention", "shifted_window_attention"):
        return {}
    qkv = args[0]
    if op == "window_attention":
        num_heads, tokens = args[3], int(qkv.shape[1])
    else:
        num_heads, tokens = args[2], args[3] * args[3]
    return {"tokens": tokens, "head_dim": int(qkv.shape[-1]) // 3 // num_heads}


def key(op: str, args: tuple, *, static_only: bool = False) -> tuple:
    """The specialization of `op` called with `args`, as ((name, value), ...) of plain Python values.
    static_only leaves out what depends on the spatial size (pixel_shuffle's NCHW tile width), so that
    a traced call (whose sizes may be symbolic) can look it up without guarding on them."""
    first = args[0]
    fields = [("op", op), ("dtype", _dtype(first))]
    if op in ("window_partition", "window_reverse"):
        fields += [("channels", int(first.shape[-1])), ("window_size", args[1]), ("shift", args[-1] % args[1]),
                   ("layout", _memory_format(first))]
    elif op == "pixel_shuffle":
        x, r, scale, bias, out_h, out_w = args
        memory_format = _memory_format(x)
        fields += [("factor", r), ("memory_format", memory_format), ("scale", _dtype(scale)), ("bias", _dtype(bias))]
        if memory_format == "channels_last":
            fields.append(("tile_width", _tile_width(x.shape[1] // (r * r))))
        elif not static_only:
            fields.append(("tile_width", _tile_width(out_w)))
    else:
        qkv, rel_bias = args[0], args[1]
        num_heads = args[3] if op == "window_attention" else args[2]
        sizes = attention_sizes(op, args)
        head_dim, tokens = sizes["head_dim"], sizes["tokens"]
        if op == "window_attention":
            window_size, mask_kind = None, _dtype(args[2])
        else:
            window_size, shift = args[3], args[4]
            mask_kind = "shift" if shift else None
        fields += [("bias_dtype", _dtype(rel_bias)), ("num_heads", num_heads), ("head_dim", head_dim),
                   ("tokens", tokens), ("window_size", window_size), ("mask", mask_kind)]
        if qkv.dtype == torch.float32:
            fields.append(("fp32_precision", fp32_precision(qkv)))
    return tuple(fields)


def describe(spec: tuple) -> str:
    """'window_attention float32 num_heads=6 head_dim=30 ...' for messages."""
    fields = dict(spec)
    return " ".join([f"{fields.pop('op')} {fields.pop('dtype')}"] + [f"{k}={v}" for k, v in fields.items() if v is not None])


# --- small inputs of the same specialization


def _alignment_class(n: int) -> tuple[int, bool]:
    """What Triton specializes an integer on, here: its power of two up to 16, and whether it is 1."""
    twos = 0
    while n and n % 2 == 0 and twos < 4:
        n //= 2
        twos += 1
    return twos, n == 1 and twos == 0


def small_size(n: int, minimum: int = 1) -> int:
    """The smallest size >= minimum whose products with other such sizes keep Triton's integer
    specialization (divisible by 16, equal to 1) of the same products of the original sizes."""
    target = _alignment_class(n)
    candidate = max(1, minimum)
    while _alignment_class(candidate) != target:
        candidate += 1
    return candidate


def _bucket_floor(extent: int) -> int:
    """The smallest extent with the same tile width (the width's constexpr block)."""
    width = _tile_width(extent)
    return 1 if width == 1 else width // 2 + 1


def _grid_counts(batch: int, rows: int, cols: int, window_size: int) -> tuple[int, int, int]:
    """(batch, window rows, window columns) of a small image whose H = rows*ws, W = cols*ws, B*H*W and
    window count B*rows*cols have the real ones' integer specialization, and whose attention backward
    runs min(windows, 128) programs of the same specialization."""
    ws_twos = _alignment_class(window_size)[0]
    small_rows = small_size(rows) if ws_twos == 0 else 2 ** min(_alignment_class(rows)[0], max(0, 4 - ws_twos))
    small_cols = small_size(cols) if ws_twos == 0 else 2 ** min(_alignment_class(cols)[0], max(0, 4 - ws_twos))
    if window_size == 1:
        small_rows, small_cols = small_size(rows), small_size(cols)
    windows = batch * rows * cols
    target_twos = _alignment_class(windows)[0]
    grid_twos = _alignment_class(small_rows)[0] + _alignment_class(small_cols)[0]
    small_batch = 2 ** max(0, target_twos - grid_twos)
    if windows != 1 and small_batch * small_rows * small_cols == 1:
        small_batch = 3
    small_batch *= _odd_factor_for_programs(windows, small_batch * small_rows * small_cols)
    return small_batch, small_rows, small_cols


def _odd_factor_for_programs(windows: int, small_windows: int) -> int:
    """An odd factor m such that min(small_windows*m, 128) specializes like min(windows, 128)."""
    target = _alignment_class(min(windows, BIAS_PROGRAMS_PER_HEAD))
    factor = 1
    while _alignment_class(min(small_windows * factor, BIAS_PROGRAMS_PER_HEAD)) != target:
        factor += 2
    return factor


def _like(real: torch.Tensor, shape: tuple, generator: torch.Generator, *, dtype=None, scale: float = 1.0):
    """Random values of `shape` with real's dtype, device, memory format and 16-byte alignment."""
    dtype = dtype or real.dtype
    values = (torch.randn(shape, generator=generator, dtype=torch.float64) * scale).to(dtype)
    memory_format = torch.channels_last if _memory_format(real) == "channels_last" else torch.contiguous_format
    laid_out = values.to(real.device).contiguous(memory_format=memory_format)
    if real.data_ptr() % 16 == 0 or real.numel() == 0:
        return laid_out
    # The real tensor starts past a 16-byte boundary (a view): start the small one as far past it.
    offset = (real.data_ptr() % 16) // real.element_size() or 1
    storage = torch.empty(values.numel() + offset, dtype=dtype, device=real.device)
    out = storage.as_strided(shape, laid_out.stride(), offset)
    out.copy_(laid_out)
    return out


def small_input(op: str, args: tuple, seed: int = 0) -> tuple:
    """Positional arguments of `op` of the same specialization as `args`, on a few windows (attention
    and permutations) or a small image (pixel_shuffle); random values (on the CPU, so they are the same
    on every device), deterministic in `seed`."""
    generator = torch.Generator().manual_seed(seed)
    if op == "window_partition":
        x, ws, shift = args
        B, H, W, C = x.shape
        b, rows, cols = _grid_counts(B, H // ws, W // ws, ws)
        return (_like(x, (b, rows * ws, cols * ws, C), generator), ws, shift)
    if op == "window_reverse":
        windows, ws, H, W, shift = args
        per_image = (H // ws) * (W // ws)
        b, rows, cols = _grid_counts(windows.shape[0] // per_image, H // ws, W // ws, ws)
        small = _like(windows, (b * rows * cols, ws * ws, windows.shape[2]), generator)
        return (small, ws, rows * ws, cols * ws, shift)
    if op == "pixel_shuffle":
        return _small_pixel_shuffle(args, generator)
    if op == "shifted_window_attention":
        qkv, rel_bias, num_heads, ws, shift, scale = args
        B, H, W, C3 = qkv.shape
        b, rows, cols = _grid_counts(B, H // ws, W // ws, ws)
        small = _like(qkv, (b, rows * ws, cols * ws, C3), generator)
        return (small, _like(rel_bias, tuple(rel_bias.shape), generator), num_heads, ws, shift, scale)
    qkv, rel_bias, mask, num_heads, scale = args  # window_attention
    mask_windows = 1 if mask is None else mask.shape[0]
    small_mask_windows = small_size(mask_windows)
    b, _, _ = _grid_counts(qkv.shape[0] // mask_windows, 1, small_mask_windows, 1)
    b = b * small_mask_windows  # windows: a multiple of the mask's
    b *= _odd_factor_for_programs(qkv.shape[0], b)
    small_mask = None if mask is None else _like(mask, (small_mask_windows, *mask.shape[1:]), generator, scale=3.0)
    small = _like(qkv, (b, *qkv.shape[1:]), generator)
    return (small, _like(rel_bias, tuple(rel_bias.shape), generator), small_mask, num_heads, scale)


def _small_pixel_shuffle(args: tuple, generator: torch.Generator) -> tuple:
    x, r, scale, bias, out_h, out_w = args
    B, CRR, H, W = x.shape
    small_h = small_size(H)
    small_w = small_size(W, _bucket_floor(W))  # the backward's NCHW tile is the input's width
    cropped_h, cropped_w = out_h < H * r, out_w < W * r
    small_out_h = small_size(out_h) if cropped_h else small_h * r
    small_out_w = small_size(out_w, _bucket_floor(out_w)) if cropped_w else small_w * r
    small_h = small_size(H, math.ceil(small_out_h / r)) if small_out_h > small_h * r else small_h
    if small_out_w > small_w * r:
        small_w = small_size(W, max(_bucket_floor(W), math.ceil(small_out_w / r)))
    if _tile_width(small_w) != _tile_width(W):
        small_w, small_out_w = W, out_w  # no smaller width keeps the tile width: keep the real one
    if _tile_width(small_out_w) != _tile_width(out_w):
        small_w, small_out_w = W, out_w
    small_x = _like(x, (small_size(B), CRR, small_h, small_w), generator)
    per_channel = lambda t: None if t is None else _like(t, tuple(t.shape), generator, scale=0.5) + 1.0  # noqa: E731
    return (small_x, r, per_channel(scale), per_channel(bias), small_out_h, small_out_w)


def differentiable(op: str, args: tuple) -> tuple[int, ...]:
    """Indices of the arguments that get gradients (constants such as the mask excluded)."""
    if op in ATTENTION_OPS:
        return (0, 1)
    if op == "pixel_shuffle":
        return tuple(i for i in (0, 2, 3) if args[i] is not None)
    return (0,)
