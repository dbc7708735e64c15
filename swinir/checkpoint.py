"""Loading SwinIR weights: official/KAIR/BasicSR/spandrel files, hyper-parameters inferred from the keys.

Rules (as spandrel's detection, /work/shared/docs/swinir-reference.md §4):

* upsampler: ``conv_before_upsample.0.weight`` + ``conv_up1.weight`` -> 'nearest+conv';
  ``conv_before_upsample.0.weight`` alone -> 'pixelshuffle'; ``upsample.0.weight`` -> 'pixelshuffledirect'; else ''.
* upscale: nearest+conv: 2^(number of conv_up* convs); pixelshuffle: the product of the shuffle factors
  implied by ``upsample.{0,2,4..}.weight`` (4*64 out channels -> 2, 9*64 -> 3); pixelshuffledirect:
  sqrt(upsample.0 out channels / in_chans); '' -> 1.
* in_chans, embed_dim from ``conv_first.weight``; window_size from the (2ws-1)^2 rows of the bias table;
  num_heads from each group's bias table; depths by counting blocks; mlp_ratio = fc1 out / embed_dim;
  resi_connection '1conv' iff ``conv_after_body.weight`` exists; img_size = sqrt(nW) * window_size from
  the first shifted block's ``attn_mask`` (64, or the window multiple below it, without one); img_range 255 iff window_size == 7 (the JPEG
  models); qkv_bias from the presence of ``qkv.bias``; ape from ``absolute_pos_embed``; patch_norm from
  ``patch_embed.norm.weight``.
"""

import math
import os
import re
from collections.abc import Mapping

import torch

from .model import SwinIR

__all__ = ["load", "read_state_dict", "unwrap_state_dict", "infer_config"]

# Wrapper keys seen in the wild, first match wins (params_ema preferred over params, as spandrel).
WRAPPER_KEYS = ("params_ema", "params-ema", "params", "model_state_dict", "state_dict", "model", "net", "netG")
PREFIXES = ("module.", "netG.", "model.")
REQUIRED_KEYS = (
    "conv_first.weight",
    "layers.0.residual_group.blocks.0.norm1.weight",
    "layers.0.residual_group.blocks.0.mlp.fc1.bias",
    "layers.0.residual_group.blocks.0.attn.relative_position_bias_table",
)


def read_state_dict(path: str | os.PathLike) -> Mapping:
    """The raw object stored in a .pth/.pt/.ckpt (``torch.load(weights_only=True)``) or .safetensors file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: no such file {path!r}")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    return torch.load(path, map_location="cpu", weights_only=True)


def unwrap_state_dict(obj: Mapping) -> dict[str, torch.Tensor]:
    """The bare state dict inside a checkpoint: descends into the first wrapper key present
    (params_ema, params, state_dict, model, ...) and strips ``module.``-style prefixes."""
    if not isinstance(obj, Mapping):
        raise TypeError(f"checkpoint: expected a dict (a state dict or a wrapper of one), got {type(obj).__name__}")
    while not any(isinstance(value, torch.Tensor) for value in obj.values()):
        inner = next((obj[key] for key in WRAPPER_KEYS if isinstance(obj.get(key), Mapping)), None)
        if inner is None:
            raise ValueError(f"checkpoint: found no tensors and none of the wrapper keys {WRAPPER_KEYS}; keys: {list(obj)[:10]}")
        obj = inner
    state = {key: value for key, value in obj.items() if isinstance(value, torch.Tensor)}
    for prefix in PREFIXES:
        if state and all(key.startswith(prefix) for key in state):
            state = {key[len(prefix) :]: value for key, value in state.items()}
    return state


def _count(state: Mapping, pattern: str) -> int:
    regex = re.compile(pattern)
    return len({match.group(1) for key in state for match in [regex.match(key)] if match})


def infer_config(state: Mapping) -> dict:
    """SwinIR constructor kwargs from a bare state dict (see the module docstring).
    Raises ValueError naming the missing keys if it is not a SwinIR state dict."""
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise ValueError(f"state dict: not a SwinIR checkpoint, missing keys {missing} (has {len(state)} keys, e.g. {list(state)[:5]})")
    in_chans = state["conv_first.weight"].shape[1]
    embed_dim = state["conv_first.weight"].shape[0]
    num_groups = _count(state, r"layers\.(\d+)\.residual_group\.")
    depths = [_count(state, rf"layers\.{i}\.residual_group\.blocks\.(\d+)\.") for i in range(num_groups)]
    num_heads = [state[f"layers.{i}.residual_group.blocks.0.attn.relative_position_bias_table"].shape[1] for i in range(num_groups)]
    table_rows = state["layers.0.residual_group.blocks.0.attn.relative_position_bias_table"].shape[0]
    window_size = (math.isqrt(table_rows) + 1) // 2  # the table has (2ws-1)^2 rows
    mlp_ratio = state["layers.0.residual_group.blocks.0.mlp.fc1.bias"].shape[0] / embed_dim

    mask = state.get("layers.0.residual_group.blocks.1.attn_mask")
    # (without a mask: any window multiple, the buffer is unused by forward)
    img_size = math.isqrt(mask.shape[0]) * window_size if mask is not None else window_size * max(1, 64 // window_size)

    if "conv_before_upsample.0.weight" in state and "conv_up1.weight" in state:
        upsampler = "nearest+conv"
        upscale = 2 ** _count(state, r"conv_up(\d+)\.weight")
    elif "conv_before_upsample.0.weight" in state:
        upsampler = "pixelshuffle"
        upscale = 1
        for key in sorted(k for k in state if re.fullmatch(r"upsample\.\d+\.weight", k)):
            weight = state[key]
            upscale *= math.isqrt(weight.shape[0] // weight.shape[1])
    elif "upsample.0.weight" in state:
        upsampler = "pixelshuffledirect"
        upscale = math.isqrt(state["upsample.0.weight"].shape[0] // in_chans)
    else:
        upsampler = ""
        upscale = 1

    return dict(
        img_size=img_size,
        in_chans=in_chans,
        embed_dim=embed_dim,
        depths=depths,
        num_heads=num_heads,
        window_size=window_size,
        mlp_ratio=mlp_ratio,
        qkv_bias="layers.0.residual_group.blocks.0.attn.qkv.bias" in state,
        ape="absolute_pos_embed" in state,
        patch_norm="patch_embed.norm.weight" in state,
        upscale=upscale,
        img_range=255.0 if window_size == 7 else 1.0,
        upsampler=upsampler,
        resi_connection="1conv" if "conv_after_body.weight" in state else "3conv",
    )


def load(checkpoint, **overrides) -> SwinIR:
    """A :class:`SwinIR` in eval mode with the weights of `checkpoint`.

    Args:
        checkpoint: a path (.pth/.pt via ``torch.load(weights_only=True)``, or .safetensors) or an
            already loaded dict; wrappers (params_ema preferred, params, state_dict, model, ...) and
            ``module.`` prefixes are handled.
        **overrides: constructor kwargs that win over the inferred ones (e.g. ``img_range=255.``,
            ``backend='reference'``).

    The state dict is loaded with ``strict=True``. The ``attn_mask``/``relative_position_index``
    buffers are deterministic and unused by the forward: files lacking them still load (ours are
    kept), and a mask of any img_size is accepted.
    """
    obj = read_state_dict(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else checkpoint
    state = unwrap_state_dict(obj)
    config = infer_config(state)
    config.update(overrides)
    model = SwinIR(**config)
    own = model.state_dict()
    for key, value in own.items():
        if key.endswith(("attn_mask", "relative_position_index")) and key not in state:
            state[key] = value
    model.load_state_dict(state, strict=True)
    return model.eval()
