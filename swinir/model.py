"""SwinIR (Liang et al., 2021) on the fused ops of :mod:`swinir_kernels`, weight-compatible with the
official ``models/network_swinir.py`` (same constructor, module tree and state-dict keys).

What differs from the official forward, deliberately:

* Tokens stay in image order, ``(B, H, W, C)``, through every Swin Transformer layer; one
  :func:`swinir_kernels.shifted_window_attention` call does roll, window partition, the -100 shift
  mask, attention with the relative position bias, window reverse and roll back. No mask tensor is
  built per forward; the ``attn_mask`` buffers only exist so that state dicts load both ways.
* Any input size: reflect padding to a window multiple as the official ``check_image_size``, with a
  replicate fallback where reflect is impossible (pad >= size, e.g. a 3-pixel image), and an exact crop.
* The output affine ``x / img_range + mean`` and the crop are fused into the last pixel shuffle
  (:func:`swinir_kernels.pixel_shuffle`, with r = 1 for the tails that do not end in one).
* No Python branch on tensor values and no attribute mutation in ``forward``:
  ``torch.compile(fullgraph=True)`` traces the whole model.

Precision (fp16 safety). The residual stream of SwinIR grows across the residual groups (official
issues #103, #180): in float16 it overflows. Here the *stream* is always float32 whatever the weights'
dtype: the input is promoted to fp32, every LayerNorm takes the fp32 stream and fp32 copies of its
affine, and every residual sum (block, RSTB, the long skip ``conv_after_body(.) + F0``, the global
residual of the restoration tail) adds a half-precision branch output into the fp32 stream. The heavy
ops (Linear, attention, conv) run in the compute dtype: the weights' dtype after ``model.half()`` /
``model.bfloat16()``, or the autocast dtype. Convolutions read the stream itself, so in float16 they
first divide it by a power of two >= its largest magnitude (a tensor op, no host sync) and multiply
the result back in fp32: conv and LeakyReLU are positively homogeneous, so this is exact up to fp16
rounding, and nothing can exceed the fp16 range. The output comes back in the input's dtype.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

import swinir_kernels
from swinir_kernels import reference

__all__ = [
    "SwinIR",
    "RSTB",
    "BasicLayer",
    "SwinTransformerBlock",
    "WindowAttention",
    "Mlp",
    "DropPath",
    "PatchEmbed",
    "PatchUnEmbed",
    "Upsample",
    "UpsampleOneStep",
    "swin_block_forward",
]

NUM_FEAT = 64  # channels of the reconstruction tails, hard-coded in the official model
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)
UPSAMPLERS = ("pixelshuffle", "pixelshuffledirect", "nearest+conv", "")
RESI_CONNECTIONS = ("1conv", "3conv")


# ----------------------------------------------------------------------------------------------
# Precision helpers: an fp32 residual stream around half-precision heavy ops (module docstring).


def _compute_dtype(weight: torch.Tensor, device_type: str) -> torch.dtype:
    """The dtype a Linear/conv with this weight computes in: autocast's dtype if enabled, else the weight's."""
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return weight.dtype


def layer_norm_fp32(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)`` computed in fp32 from the fp32 stream, whatever dtype the LayerNorm's affine has."""
    weight = None if norm.weight is None else norm.weight.float()
    bias = None if norm.bias is None else norm.bias.float()
    return F.layer_norm(x.float(), norm.normalized_shape, weight, bias, norm.eps)


def linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` in the layer's compute dtype (x cast to the weight's dtype; autocast may recast)."""
    return layer(x.to(layer.weight.dtype))


def _homogeneous_layers(module: nn.Module) -> list[nn.Module]:
    """A conv or a Sequential of convs and LeakyReLUs (the official resi_connection / tail blocks)."""
    layers = list(module) if isinstance(module, nn.Sequential) else [module]
    for layer in layers:
        if not isinstance(layer, (nn.Conv2d, nn.LeakyReLU)):
            raise TypeError(f"expected Conv2d/LeakyReLU layers, got {type(layer).__name__}")
    return layers


def conv_from_stream(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` for a conv (or Sequential of convs and LeakyReLUs) reading the fp32 stream x.

    In fp32/bf16 this is the module in its compute dtype. In fp16, x is divided by a power of two
    ``s >= max|x|`` and every conv bias by s, and the result is multiplied by s in fp32: convs and
    LeakyReLU are positively homogeneous, so the value is unchanged while no fp16 intermediate can
    overflow (official issues #103/#180).
    """
    layers = _homogeneous_layers(module)
    first_conv = next(layer for layer in layers if isinstance(layer, nn.Conv2d))
    if _compute_dtype(first_conv.weight, x.device.type) != torch.float16:
        return module(x.to(first_conv.weight.dtype))
    x = x.float()
    # (max(), not amax(): the ONNX exporter has no full-tensor amax)
    scale = torch.exp2(torch.ceil(torch.log2(x.detach().abs().max().clamp(min=1.0))))
    h = (x / scale).to(first_conv.weight.dtype)
    for layer in layers:
        if isinstance(layer, nn.Conv2d):
            bias = None if layer.bias is None else (layer.bias.float() / scale).to(layer.weight.dtype)
            h = layer._conv_forward(h.to(layer.weight.dtype), layer.weight, bias)
        else:
            h = layer(h)
    return h.float() * scale


# ----------------------------------------------------------------------------------------------
# Modules with the official names, arguments and parameters.


class DropPath(nn.Module):
    """Stochastic depth: in training, zeroes a sample's residual branch with probability drop_prob and
    rescales the kept ones by 1/(1-drop_prob); the identity in eval mode."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


class Mlp(nn.Module):
    """fc1 -> GELU (exact) -> dropout -> fc2 -> dropout."""

    def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=nn.GELU, drop=0.0):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        x = self.drop(self.act(linear(self.fc1, x)))
        return self.drop(linear(self.fc2, x))


class WindowAttention(nn.Module):
    """Parameters of one window attention: qkv and proj Linears, the relative position bias table
    ((2ws-1)^2, nH) and its (N, N) int64 index (a persistent buffer, as official). The attention itself
    runs in :func:`swin_block_forward` through the fused op."""

    def __init__(self, dim, window_size, num_heads, qkv_bias=True, qk_scale=None, attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        self.dim = dim
        self.window_size = tuple(window_size)  # (Wh, Ww), square in SwinIR
        if self.window_size[0] != self.window_size[1]:
            raise ValueError(f"window_size: expected a square window, got {self.window_size}")
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = qk_scale or head_dim**-0.5
        ws = self.window_size[0]
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", reference.relative_position_index(ws))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(attn_drop)  # the fused op has none: training refuses p > 0 (see below)
        self.proj_drop = nn.Dropout(proj_drop)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def relative_position_bias(self) -> torch.Tensor:
        """(nH, N, N), gathered per call so the gradient reaches the table (tiny: nH*N*N values)."""
        return reference.relative_position_bias(self.relative_position_bias_table, self.relative_position_index)

    def forward(self, x: torch.Tensor, shift: int = 0) -> torch.Tensor:
        """x (B, H, W, C), H and W multiples of the window size -> proj(attention) (B, H, W, C)."""
        return _window_attention_branch(self, x, self.window_size[0], shift)


def _window_attention_branch(attn: nn.Module, x: torch.Tensor, window_size: int, shift: int) -> torch.Tensor:
    """The attention branch of a block for any module with the official WindowAttention attributes.

    Dropout on the attention weights (``attn_drop``) does not exist in the fused op. It is the identity
    in eval mode, so such models run for inference; training them here would silently drop it, so
    that raises instead (ours and accelerated official blocks alike)."""
    dropout = getattr(attn, "attn_drop", None)
    if attn.training and isinstance(dropout, nn.Dropout) and dropout.p > 0:
        raise ValueError(
            f"attn_drop: the fused window attention has no dropout on the attention weights, so a model with "
            f"attn_drop={dropout.p} cannot train on it; build it with attn_drop_rate=0 (inference in eval mode is fine)"
        )
    qkv = linear(attn.qkv, x)
    rel_bias = reference.relative_position_bias(attn.relative_position_bias_table, attn.relative_position_index)
    out = swinir_kernels.shifted_window_attention(
        qkv, rel_bias, num_heads=attn.num_heads, window_size=window_size, shift=shift, scale=attn.scale
    )
    return attn.proj_drop(linear(attn.proj, out))


def swin_block_forward(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One Swin Transformer layer on the image-order stream x (B, H, W, C), fp32:
    ``x + drop_path(WMSA(LN1(x)))``, then ``x + drop_path(MLP(LN2(x)))``.

    Works for any module with the official SwinTransformerBlock attributes (``norm1``, ``attn`` with
    ``qkv``/``proj``/``relative_position_bias_table``/``relative_position_index``/``num_heads``/``scale``,
    ``norm2``, ``mlp``, ``drop_path``, ``window_size``, ``shift_size``): ours and the official code's
    copies (see :func:`swinir.accelerate`)."""
    attn_out = _window_attention_branch(block.attn, layer_norm_fp32(block.norm1, x), block.window_size, block.shift_size)
    x = x + block.drop_path(attn_out)
    mlp_in = layer_norm_fp32(block.norm2, x)
    return x + block.drop_path(block.mlp(mlp_in.to(block.mlp.fc1.weight.dtype)))


class SwinTransformerBlock(nn.Module):
    """Pre-norm Swin Transformer layer. As official: when ``min(input_resolution) <= window_size`` the
    shift is forced to 0 and the window shrunk to ``min(input_resolution)``; shifted blocks register
    the shift mask for input_resolution as the persistent ``attn_mask`` buffer (state-dict
    compatibility only: the fused op applies the mask by index arithmetic, for any size)."""

    def __init__(
        self,
        dim,
        input_resolution,
        num_heads,
        window_size=7,
        shift_size=0,
        mlp_ratio=4.0,
        qkv_bias=True,
        qk_scale=None,
        drop=0.0,
        attn_drop=0.0,
        drop_path=0.0,
        act_layer=nn.GELU,
        norm_layer=nn.LayerNorm,
    ):
        super().__init__()
        self.dim = dim
        self.input_resolution = tuple(input_resolution)
        self.num_heads = num_heads
        self.window_size = window_size
        self.shift_size = shift_size
        self.mlp_ratio = mlp_ratio
        if min(self.input_resolution) <= self.window_size:
            self.shift_size = 0
            self.window_size = min(self.input_resolution)
        if not 0 <= self.shift_size < self.window_size:
            raise ValueError(f"shift_size: expected 0 <= shift_size < window_size={self.window_size}, got {shift_size}")
        self.norm1 = norm_layer(dim)
        self.attn = WindowAttention(
            dim, (self.window_size, self.window_size), num_heads, qkv_bias, qk_scale, attn_drop, proj_drop=drop
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=drop)
        if self.shift_size > 0:
            H, W = self.input_resolution
            if H % self.window_size or W % self.window_size:
                raise ValueError(
                    f"img_size: expected a multiple of window_size={self.window_size} (the official shift mask "
                    f"buffer is built for it), got {self.input_resolution}"
                )
            mask = reference.shift_attention_mask(H, W, self.window_size, self.shift_size)
        else:
            mask = None
        self.register_buffer("attn_mask", mask)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        # A released file's mask has the shape of *its* training img_size; the mask is not used by
        # forward, so take whatever shape the file has (official issue #129).
        key = prefix + "attn_mask"
        if self.attn_mask is not None and key in state_dict and state_dict[key].shape != self.attn_mask.shape:
            self.attn_mask = torch.empty(state_dict[key].shape, dtype=self.attn_mask.dtype, device=self.attn_mask.device)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, H, W, C) fp32 stream, H and W multiples of window_size -> (B, H, W, C) fp32."""
        return swin_block_forward(self, x)


class BasicLayer(nn.Module):
    """A stack of ``depth`` blocks alternating shift 0 and window_size // 2 (``downsample`` unused)."""

    def __init__(
        self,
        dim,
        input_resolution,
        depth,
        num_heads,
        window_size,
        mlp_ratio=4.0,
        qkv_bias=True,
        qk_scale=None,
        drop=0.0,
        attn_drop=0.0,
        drop_path=0.0,
        norm_layer=nn.LayerNorm,
        downsample=None,
        use_checkpoint=False,
    ):
        super().__init__()
        if downsample is not None:
            raise ValueError("downsample: SwinIR's residual groups keep the resolution; expected None")
        self.dim = dim
        self.input_resolution = tuple(input_resolution)
        self.depth = depth
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(
                dim=dim,
                input_resolution=input_resolution,
                num_heads=num_heads,
                window_size=window_size,
                shift_size=0 if i % 2 == 0 else window_size // 2,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                qk_scale=qk_scale,
                drop=drop,
                attn_drop=attn_drop,
                drop_path=drop_path[i] if isinstance(drop_path, (list, tuple)) else drop_path,
                norm_layer=norm_layer,
            )
            for i in range(depth)
        )
        self.downsample = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            if self.use_checkpoint and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return x


class PatchEmbed(nn.Module):
    """Image to tokens (patch_size 1: a flatten; here the stream already is (B, H, W, C)) with an
    optional LayerNorm, kept for the official attributes and the ``patch_embed.norm`` keys."""

    def __init__(self, img_size=224, patch_size=4, in_chans=3, embed_dim=96, norm_layer=None):
        super().__init__()
        img_size, patch_size = _pair(img_size), _pair(patch_size)
        self.img_size = img_size
        self.patch_size = patch_size
        self.patches_resolution = [img_size[0] // patch_size[0], img_size[1] // patch_size[1]]
        self.num_patches = self.patches_resolution[0] * self.patches_resolution[1]
        self.in_chans = in_chans
        self.embed_dim = embed_dim
        self.norm = norm_layer(embed_dim) if norm_layer is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, H, W, C) fp32 stream, normalized if the norm exists."""
        x = x.permute(0, 2, 3, 1).float()
        return layer_norm_fp32(self.norm, x) if self.norm is not None else x


class PatchUnEmbed(nn.Module):
    """Tokens back to an image: (B, H, W, C) -> (B, C, H, W) (a view; no parameters)."""

    def __init__(self, img_size=224, patch_size=4, in_chans=3, embed_dim=96, norm_layer=None):
        super().__init__()
        img_size, patch_size = _pair(img_size), _pair(patch_size)
        self.img_size = img_size
        self.patch_size = patch_size
        self.patches_resolution = [img_size[0] // patch_size[0], img_size[1] // patch_size[1]]
        self.num_patches = self.patches_resolution[0] * self.patches_resolution[1]
        self.in_chans = in_chans
        self.embed_dim = embed_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2)


def _padding_indices(size, window_size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Source positions along an axis of `size` padded at the end to ceil(size / ws) * ws positions:
    (reflect, replicate), int64. reflect mirrors about the last position (``F.pad`` 'reflect') and
    goes negative where the padding is >= size, i.e. where reflection is impossible."""
    positions = torch.arange((size + window_size - 1) // window_size * window_size, device=device)
    last = size - 1
    reflect = torch.where(positions <= last, positions, 2 * last - positions)
    return reflect, positions.clamp(max=last)


def _pair(value):
    return tuple(value) if isinstance(value, (list, tuple)) else (value, value)


def _resi_connection(kind: str, dim: int) -> nn.Module:
    """'1conv': Conv3x3 C->C; '3conv': Conv3x3 C->C/4, LReLU(0.2), Conv1x1, LReLU(0.2), Conv3x3 C/4->C."""
    if kind == "1conv":
        return nn.Conv2d(dim, dim, 3, 1, 1)
    if kind == "3conv":
        return nn.Sequential(
            nn.Conv2d(dim, dim // 4, 3, 1, 1),
            nn.LeakyReLU(negative_slope=0.2, inplace=True),
            nn.Conv2d(dim // 4, dim // 4, 1, 1, 0),
            nn.LeakyReLU(negative_slope=0.2, inplace=True),
            nn.Conv2d(dim // 4, dim, 3, 1, 1),
        )
    raise ValueError(f"resi_connection: expected one of {RESI_CONNECTIONS}, got {kind!r}")


class RSTB(nn.Module):
    """Residual Swin Transformer Block: ``x + conv(residual_group(x))`` on the (B, H, W, C) stream."""

    def __init__(
        self,
        dim,
        input_resolution,
        depth,
        num_heads,
        window_size,
        mlp_ratio=4.0,
        qkv_bias=True,
        qk_scale=None,
        drop=0.0,
        attn_drop=0.0,
        drop_path=0.0,
        norm_layer=nn.LayerNorm,
        downsample=None,
        use_checkpoint=False,
        img_size=224,
        patch_size=4,
        resi_connection="1conv",
    ):
        super().__init__()
        self.dim = dim
        self.input_resolution = tuple(input_resolution)
        self.residual_group = BasicLayer(
            dim=dim,
            input_resolution=input_resolution,
            depth=depth,
            num_heads=num_heads,
            window_size=window_size,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            drop=drop,
            attn_drop=attn_drop,
            drop_path=drop_path,
            norm_layer=norm_layer,
            downsample=downsample,
            use_checkpoint=use_checkpoint,
        )
        self.conv = _resi_connection(resi_connection, dim)
        self.patch_embed = PatchEmbed(img_size, patch_size, 0, dim, norm_layer=None)
        self.patch_unembed = PatchUnEmbed(img_size, patch_size, 0, dim, norm_layer=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, H, W, C) fp32 -> (B, H, W, C) fp32."""
        feature = self.patch_unembed(self.residual_group(x))
        return x + conv_from_stream(self.conv, feature).permute(0, 2, 3, 1)


class Upsample(nn.Sequential):
    """2^n: n x [Conv3x3 nf->4nf, PixelShuffle(2)]; 3: [Conv3x3 nf->9nf, PixelShuffle(3)]."""

    def __init__(self, scale, num_feat):
        layers = []
        if scale & (scale - 1) == 0 and scale >= 2:
            for _ in range(int(math.log2(scale))):
                layers += [nn.Conv2d(num_feat, 4 * num_feat, 3, 1, 1), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [nn.Conv2d(num_feat, 9 * num_feat, 3, 1, 1), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"scale: expected 2^n or 3 for upsampler 'pixelshuffle', got {scale}")
        super().__init__(*layers)

    def forward(self, x):
        for layer in self:
            if isinstance(layer, nn.PixelShuffle):
                x = swinir_kernels.pixel_shuffle(x, layer.upscale_factor)
            else:
                x = conv_from_stream(layer, x)
        return x


class UpsampleOneStep(nn.Sequential):
    """[Conv3x3 num_feat -> scale^2 * num_out_ch, PixelShuffle(scale)] (the lightweight tail)."""

    def __init__(self, scale, num_feat, num_out_ch, input_resolution=None):
        self.num_feat = num_feat
        self.input_resolution = input_resolution
        super().__init__(nn.Conv2d(num_feat, scale**2 * num_out_ch, 3, 1, 1), nn.PixelShuffle(scale))


# ----------------------------------------------------------------------------------------------


class SwinIR(nn.Module):
    """SwinIR with the official constructor, module tree and state-dict keys, on fused ops.

    Args: as the official ``SwinIR`` (``models/network_swinir.py``: same names, order and defaults), plus
        backend (str): the :mod:`swinir_kernels` backend used inside forward ('auto' leaves the
            process-wide choice alone; 'reference' is the plain-PyTorch path used by benchmarks).

    forward(x): x (B, in_chans, H, W) in [0, 1], any H, W >= 1 -> (B, in_chans, H*upscale, W*upscale)
    in x's dtype. ``upscale`` is 1 for upsampler ''. ``config`` holds the hyper-parameters
    (``SwinIR(**model.config)`` rebuilds the architecture).
    """

    def __init__(
        self,
        img_size=64,
        patch_size=1,
        in_chans=3,
        embed_dim=96,
        depths=[6, 6, 6, 6],
        num_heads=[6, 6, 6, 6],
        window_size=7,
        mlp_ratio=4.0,
        qkv_bias=True,
        qk_scale=None,
        drop_rate=0.0,
        attn_drop_rate=0.0,
        drop_path_rate=0.1,
        norm_layer=nn.LayerNorm,
        ape=False,
        patch_norm=True,
        use_checkpoint=False,
        upscale=2,
        img_range=1.0,
        upsampler="",
        resi_connection="1conv",
        backend="auto",
        **kwargs,
    ):
        super().__init__()
        depths, num_heads = list(depths), list(num_heads)
        if len(depths) != len(num_heads):
            raise ValueError(f"num_heads: expected one entry per residual group ({len(depths)}), got {num_heads}")
        if upsampler not in UPSAMPLERS:
            raise ValueError(f"upsampler: expected one of {UPSAMPLERS}, got {upsampler!r}")
        if _pair(patch_size) != (1, 1):
            raise ValueError(f"patch_size: SwinIR works on pixels; expected 1, got {patch_size}")
        if resi_connection not in RESI_CONNECTIONS:
            raise ValueError(f"resi_connection: expected one of {RESI_CONNECTIONS}, got {resi_connection!r}")
        if backend not in swinir_kernels.BACKENDS:
            raise ValueError(f"backend: expected one of {swinir_kernels.BACKENDS}, got {backend!r}")
        if upsampler == "nearest+conv" and upscale not in (2, 4, 8):
            raise ValueError(f"upscale: upsampler 'nearest+conv' supports 2, 4 and 8, got {upscale}")
        self.config = dict(
            img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim, depths=depths,
            num_heads=num_heads, window_size=window_size, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, qk_scale=qk_scale,
            drop_rate=drop_rate, attn_drop_rate=attn_drop_rate, drop_path_rate=drop_path_rate, ape=ape,
            patch_norm=patch_norm, use_checkpoint=use_checkpoint, upscale=1 if upsampler == "" else upscale, img_range=img_range,
            upsampler=upsampler, resi_connection=resi_connection, backend=backend,
        )  # fmt: skip
        self.in_chans = in_chans
        self.img_range = float(img_range)
        self.upscale = 1 if upsampler == "" else int(upscale)
        self.upsampler = upsampler
        self.window_size = window_size
        self.backend = backend
        mean = DIV2K_RGB_MEAN if in_chans == 3 else (0.0,) * in_chans
        self.register_buffer("mean", torch.tensor(mean).view(1, in_chans, 1, 1), persistent=False)

        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)

        self.num_layers = len(depths)
        self.embed_dim = embed_dim
        self.ape = ape
        self.patch_norm = patch_norm
        self.num_features = embed_dim
        self.mlp_ratio = mlp_ratio
        self.patch_embed = PatchEmbed(img_size, patch_size, embed_dim, embed_dim, norm_layer if patch_norm else None)
        patches_resolution = self.patch_embed.patches_resolution
        self.patches_resolution = patches_resolution
        self.patch_unembed = PatchUnEmbed(img_size, patch_size, embed_dim, embed_dim, norm_layer if patch_norm else None)
        if ape:
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches, embed_dim))
            nn.init.trunc_normal_(self.absolute_pos_embed, std=0.02)
        self.pos_drop = nn.Dropout(p=drop_rate)

        total = sum(depths)  # stochastic depth, rising linearly from 0 to drop_path_rate over all blocks
        rates = [drop_path_rate * i / (total - 1) if total > 1 else 0.0 for i in range(total)]
        self.layers = nn.ModuleList(
            RSTB(
                dim=embed_dim,
                input_resolution=(patches_resolution[0], patches_resolution[1]),
                depth=depths[i],
                num_heads=num_heads[i],
                window_size=window_size,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                qk_scale=qk_scale,
                drop=drop_rate,
                attn_drop=attn_drop_rate,
                drop_path=rates[sum(depths[:i]) : sum(depths[: i + 1])],
                norm_layer=norm_layer,
                downsample=None,
                use_checkpoint=use_checkpoint,
                img_size=img_size,
                patch_size=patch_size,
                resi_connection=resi_connection,
            )
            for i in range(self.num_layers)
        )
        self.norm = norm_layer(self.num_features)
        self.conv_after_body = _resi_connection(resi_connection, embed_dim)

        if upsampler == "pixelshuffle":
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, NUM_FEAT, 3, 1, 1), nn.LeakyReLU(inplace=True))
            self.upsample = Upsample(upscale, NUM_FEAT)
            self.conv_last = nn.Conv2d(NUM_FEAT, in_chans, 3, 1, 1)
        elif upsampler == "pixelshuffledirect":
            self.upsample = UpsampleOneStep(upscale, embed_dim, in_chans, (patches_resolution[0], patches_resolution[1]))
        elif upsampler == "nearest+conv":
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, NUM_FEAT, 3, 1, 1), nn.LeakyReLU(inplace=True))
            self.conv_up1 = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
            if upscale >= 4:
                self.conv_up2 = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
            if upscale == 8:
                self.conv_up3 = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
            self.conv_hr = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
            self.conv_last = nn.Conv2d(NUM_FEAT, in_chans, 3, 1, 1)
            self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        else:
            self.conv_last = nn.Conv2d(embed_dim, in_chans, 3, 1, 1)

        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.constant_(module.bias, 0)
        elif isinstance(module, nn.LayerNorm):
            nn.init.constant_(module.bias, 0)
            nn.init.constant_(module.weight, 1.0)

    def no_weight_decay(self):
        return {"absolute_pos_embed"}

    def no_weight_decay_keywords(self):
        return {"relative_position_bias_table"}

    # -- forward ------------------------------------------------------------------------------

    def pad_to_window(self, x: torch.Tensor) -> torch.Tensor:
        """Right/bottom padding to a multiple of window_size: 'reflect' as the official model, or
        'replicate' where reflect is impossible (pad >= size along an axis).

        Written as two index gathers whose lengths come from x's shape, with the mode picked by a
        tensor ``where`` rather than a Python branch on the size: traced with symbolic sizes
        (torch.export, ONNX) the one graph then pads every size correctly, where a branch would
        freeze the example input's case (official issue #145)."""
        reflect_rows, replicate_rows = _padding_indices(x.shape[-2], self.window_size, x.device)
        reflect_cols, replicate_cols = _padding_indices(x.shape[-1], self.window_size, x.device)
        use_reflect = (reflect_rows.min() >= 0) & (reflect_cols.min() >= 0)
        rows = torch.where(use_reflect, reflect_rows, replicate_rows)
        cols = torch.where(use_reflect, reflect_cols, replicate_cols)
        return x.index_select(-2, rows).index_select(-1, cols)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) features -> (B, C, H, W) fp32: patch norm, residual groups, final norm."""
        x = self.patch_embed(x)  # (B, H, W, C) fp32
        if self.ape:
            x = x + self.absolute_pos_embed.float().reshape(1, x.shape[1], x.shape[2], -1)
        x = self.pos_drop(x)
        for layer in self.layers:
            x = layer(x)
        return self.patch_unembed(layer_norm_fp32(self.norm, x))

    def _body(self, x: torch.Tensor) -> torch.Tensor:
        """conv_after_body(features(F0)) + F0, the long skip, on the fp32 stream (B, C, H, W)."""
        shallow = self.conv_first(x.to(self.conv_first.weight.dtype)).float()
        return conv_from_stream(self.conv_after_body, self.forward_features(shallow)) + shallow

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.backend == "auto":
            return self._forward(x)
        with swinir_kernels.use_backend(self.backend):
            return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"x: expected a (B, {self.in_chans}, H, W) tensor, got shape {tuple(x.shape)}")
        H, W = x.shape[-2:]
        out_size = (H * self.upscale, W * self.upscale)
        mean = self.mean.float()
        normalized = (self.pad_to_window(x).float() - mean) * self.img_range

        if self.upsampler == "pixelshuffle":
            y = conv_from_stream(self.conv_before_upsample, self._body(normalized))
            y = conv_from_stream(self.conv_last, self.upsample(y))
            shuffle = 1
        elif self.upsampler == "pixelshuffledirect":
            y = conv_from_stream(self.upsample[0], self._body(normalized))
            shuffle = self.upsample[1].upscale_factor
        elif self.upsampler == "nearest+conv":
            y = conv_from_stream(self.conv_before_upsample, self._body(normalized))
            for name in ("conv_up1", "conv_up2", "conv_up3"):
                if hasattr(self, name):
                    y = self.lrelu(conv_from_stream(getattr(self, name), F.interpolate(y, scale_factor=2, mode="nearest")))
            y = conv_from_stream(self.conv_last, self.lrelu(conv_from_stream(self.conv_hr, y)))
            shuffle = 1
        else:
            y = normalized + conv_from_stream(self.conv_last, self._body(normalized))  # global residual, fp32
            shuffle = 1
        # (y / img_range + mean), cropped to the unpadded size, in one pass; in fp32 (y has only
        # in_chans * shuffle^2 channels here, so this costs little).
        inverse_range = torch.full((1,), 1.0 / self.img_range, device=y.device)
        y = swinir_kernels.pixel_shuffle(y.float(), shuffle, scale=inverse_range, bias=mean.reshape(-1), out_size=out_size)
        return y.to(x.dtype)
