"""Which compiled kernel a call runs (its specialization key), and a small input that runs the same one.

A call's kernel is chosen by:

* what the kernels are compiled or templated on: the dtypes (the CUDA kernels' ``T``/``Acc`` templates,
  Triton's pointer types), head_dim, num_heads, tokens per window, the window size and shift, the layout
  (window or image), the mask (none, a tensor of some dtype, or the shift mask computed in-kernel), the
  fp32 dot precision (ieee or tf32), pixel_shuffle's factor, memory format, scale/bias presence and its
  tile width (Triton constexprs ``NUM_HEADS``, ``HEAD_DIM``, ``N``, ``WINDOW_H``, ``WINDOW_W``, ``IMAGE_LAYOUT``,
  ``HAS_MASK``, ``HAS_SHIFT``, ``DOT_PRECISION``, ``BLOCK_*``, ``R``, ``HAS_SCALE``, ``CHANNELS_LAST``...):
  these form the key (each op's ``key`` in its description, built from the helpers here);
* what Triton additionally specializes every integer argument on (equal to 1; divisible by 16; 32 or
  64 bits) and every pointer on (16-byte aligned): binaries that differ only in these alignment hints
  share a kernel program, so they share the key; the small input (each op's ``small_input``) reproduces them
  (sizes with the same power of two up to 16 and the same "is 1", a tensor with the same alignment), so
  that it runs the binary the call itself compiled. Not reproduced: 64-bit integer arguments (more than
  2**31 elements) and unusual strides (neither contiguous nor channels_last), whose binaries the small
  input cannot reach (docs/verification.md#what-a-small-check-cannot-reach).

The shared helpers of the ops' keys and small inputs. Arguments are the reference's positional ones
(:mod:`swinir_kernels.reference`).
"""

import torch

from ..triton.limits import tile_width


def dtype_name(t) -> str | None:
    return None if t is None else str(t.dtype).removeprefix("torch.")


def per_axis(pair: tuple[int, int]):
    """A window size or shift in a key: one int when both axes agree (the square windows' keys, and
    the verification cache entries made with them, stay what they were), else the (H, W) pair."""
    return pair[0] if pair[0] == pair[1] else tuple(pair)


def memory_format(t: torch.Tensor) -> str:
    if t.is_contiguous():
        return "contiguous"
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return "channels_last"
    return "strided"


def describe(spec: tuple) -> str:
    """'window_attention float32 num_heads=6 head_dim=30 ...' for messages."""
    fields = dict(spec)
    return " ".join([f"{fields.pop('op')} {fields.pop('dtype')}"] + [f"{k}={v}" for k, v in fields.items() if v is not None])


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


def bucket_floor(extent: int) -> int:
    """The smallest extent with the same tile width (the width's constexpr block)."""
    width = tile_width(extent)
    return 1 if width == 1 else width // 2 + 1


def grid_counts(batch: int, rows: int, cols: int, window_size: tuple[int, int]) -> tuple[int, int, int]:
    """(batch, window rows, window columns) of a small image whose H = rows*wh, W = cols*ww, B*H*W and
    window count B*rows*cols have the real ones' integer specialization. window_size: (wh, ww)."""

    def small_count(count: int, extent: int) -> int:
        extent_twos = _alignment_class(extent)[0]
        if extent_twos == 0:
            return small_size(count)
        return 2 ** min(_alignment_class(count)[0], max(0, 4 - extent_twos))

    small_rows, small_cols = small_count(rows, window_size[0]), small_count(cols, window_size[1])
    windows = batch * rows * cols
    target_twos = _alignment_class(windows)[0]
    grid_twos = _alignment_class(small_rows)[0] + _alignment_class(small_cols)[0]
    small_batch = 2 ** max(0, target_twos - grid_twos)
    if windows != 1 and small_batch * small_rows * small_cols == 1:
        small_batch = 3
    return small_batch, small_rows, small_cols


def like(real: torch.Tensor, shape: tuple, generator: torch.Generator, *, dtype=None, scale: float = 1.0):
    """Random values of `shape` with real's dtype, device, memory format and 16-byte alignment."""
    dtype = dtype or real.dtype
    values = (torch.randn(shape, generator=generator, dtype=torch.float64) * scale).to(dtype)
    layout = torch.channels_last if memory_format(real) == "channels_last" else torch.contiguous_format
    laid_out = values.to(real.device).contiguous(memory_format=layout)
    if real.data_ptr() % 16 == 0 or real.numel() == 0:
        return laid_out
    # The real tensor starts past a 16-byte boundary (a view): start the small one as far past it.
    offset = (real.data_ptr() % 16) // real.element_size() or 1
    storage = torch.empty(values.numel() + offset, dtype=dtype, device=real.device)
    out = storage.as_strided(shape, laid_out.stride(), offset)
    out.copy_(laid_out)
    return out


def example_tensor(shape: tuple, dtype: torch.dtype, device: str, *, scale: float = 1.0, seed: int = 0) -> torch.Tensor:
    """Random values for selftest's calls (drawn on the CPU, so the same on every device)."""
    values = torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * scale
    return values.to(dtype=dtype, device=device)
