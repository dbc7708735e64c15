"""The Triton kernels' limits and the shape rules that code outside the kernels reads (the op registry's
declarations, the specialization keys), stated once and importable without Triton."""

# Tokens per window (N = ws*ws) and channels per head of the attention kernels: a (window, head) keeps
# its (N, N) scores and (N, head_dim) tiles in registers, padded to powers of two.
MAX_TOKENS = 64
MAX_HEAD_DIM = 64
# The permutation and pixel-shuffle tiles' widest inner extent (wider extents loop over tiles).
MAX_TILE_WIDTH = 256


def tile_width(inner: int) -> int:
    """The inner width of a permutation or pixel-shuffle tile: a power of two >= `inner`, at most
    MAX_TILE_WIDTH. A constexpr of those kernels, so part of their specialization."""
    return min(1 << max(int(inner) - 1, 0).bit_length(), MAX_TILE_WIDTH)
