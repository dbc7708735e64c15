"""The Triton kernels' limits and the shape rules that code outside the kernels reads (the op registry's
declarations, the specialization keys), stated once and importable without Triton."""

# Tokens per window (N = wh*ww) and channels per head of the Triton attention backend: what the op
# registry declares. Windows within the register kernel's limits (below) run on it; larger windows or
# wider heads on the flash kernels (window_attention_flash.py: blocks of queries and keys with an online
# softmax), up to GRL's 32x32 windows and DRCT's head_dim 122 (BLOCK_D 128).
MAX_TOKENS = 1024
MAX_HEAD_DIM = 128
# The register kernel (window_attention.py): a (window, head) keeps its (N, N) scores and (N, head_dim)
# tiles in registers, padded to powers of two; SwinIR's 8x8 windows and head_dim <= 64.
REGISTER_KERNEL_MAX_TOKENS = 64
REGISTER_KERNEL_MAX_HEAD_DIM = 64
# The permutation and pixel-shuffle tiles' widest inner extent (wider extents loop over tiles).
MAX_TILE_WIDTH = 256


def tile_width(inner: int) -> int:
    """The inner width of a permutation or pixel-shuffle tile: a power of two >= `inner`, at most
    MAX_TILE_WIDTH. A constexpr of those kernels, so part of their specialization."""
    return min(1 << max(int(inner) - 1, 0).bit_length(), MAX_TILE_WIDTH)
