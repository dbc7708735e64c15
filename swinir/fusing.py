"""`swinir.accelerate`: run the Swin Transformer layers of an existing SwinIR (official, KAIR, BasicSR,
spandrel copies) on the fused ops, with its own weights and without importing any of those packages.

The module is named `fusing` so that `swinir.accelerate` is plainly the function (a module of the same
name would shadow it as an attribute of the package).
"""

import math
import types

import torch
import torch.nn as nn

from .model import SwinTransformerBlock, swin_block_forward

__all__ = ["accelerate", "is_swin_block"]

_BLOCK_ATTRIBUTES = ("norm1", "norm2", "mlp", "attn", "shift_size", "window_size", "drop_path")
_ATTENTION_ATTRIBUTES = ("qkv", "proj", "num_heads", "scale", "relative_position_bias_table", "relative_position_index")


def is_swin_block(module: nn.Module) -> bool:
    """Duck-typed: a module shaped like the official ``SwinTransformerBlock`` (a WindowAttention with
    a bias table *and* its index buffer; HAT's blocks keep the index elsewhere and do not match)."""
    return all(hasattr(module, name) for name in _BLOCK_ATTRIBUTES) and all(
        hasattr(module.attn, name) for name in _ATTENTION_ATTRIBUTES
    )


def _fused_official_forward(block: nn.Module, x: torch.Tensor, x_size=None) -> torch.Tensor:
    """The official block signature: x (B, H*W, C) tokens, x_size (H, W) -> (B, H*W, C) in x's dtype.
    BasicSR's SwinIR with ``use_checkpoint=True`` calls ``checkpoint(blk, x)`` and drops x_size (its
    own blocks then fail with a TypeError); only a square image can be recovered from L alone."""
    B, L, C = x.shape
    if x_size is None:
        side = math.isqrt(L)
        if side * side != L:
            raise ValueError(
                f"x_size: this Swin block was called without x_size, so the image shape of {L} tokens is unknown "
                "(only square grids can be recovered). BasicSR's SwinIR with use_checkpoint=True drops x_size "
                "when it checkpoints a block; build it with use_checkpoint=False, or use swinir.SwinIR, whose "
                "checkpointing keeps the shape"
            )
        x_size = (side, side)
    H, W = x_size
    out = swin_block_forward(block, x.reshape(B, H, W, C).float())
    return out.reshape(B, L, C).to(x.dtype)


def accelerate(model: nn.Module) -> nn.Module:
    """Patches, in place, every official-style Swin Transformer block of `model` so that its forward
    runs :func:`swinir.model.swin_block_forward` (one fused shifted-window attention, no per-forward
    mask rebuild, fp32 residual stream) with the block's own parameters. Returns `model`.

    The module tree and state dict are unchanged (the blocks keep their ``attn_mask`` buffers), so
    checkpoints load and save as before. Blocks of :class:`swinir.SwinIR` are already fused and left alone.
    """
    patched = 0
    for module in model.modules():
        if isinstance(module, SwinTransformerBlock) or not is_swin_block(module):
            continue
        module.forward = types.MethodType(_fused_official_forward, module)
        patched += 1
    if patched == 0 and not any(isinstance(m, SwinTransformerBlock) for m in model.modules()):
        raise ValueError(f"model: found no SwinTransformerBlock-like module in {type(model).__name__}")
    return model
