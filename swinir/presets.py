"""The released SwinIR models (the table of the official ``main_test_swinir.py``):
one :class:`Preset` per checkpoint family, with the constructor kwargs and the official file name."""

from dataclasses import dataclass, field

__all__ = ["Preset", "PRESETS", "TASKS", "RELEASE_URL", "build"]

RELEASE_URL = "https://github.com/JingyunLiang/SwinIR/releases/download/v0.0/"
TASKS = ("classical_sr", "lightweight_sr", "real_sr", "gray_dn", "color_dn", "gray_jpeg", "color_jpeg")


@dataclass(frozen=True)
class Preset:
    """name: e.g. 'classical_sr_x4'; task: one of TASKS; scale: the upscale factor (1 for restoration);
    kwargs: SwinIR constructor kwargs; checkpoint: the official file name; param_key: the wrapper key
    main_test_swinir.py reads ('params', or 'params_ema' for real-SR); level: noise sigma (denoising)
    or JPEG quality (artifact removal), else None."""

    name: str
    task: str
    scale: int
    kwargs: dict = field(repr=False)
    checkpoint: str
    param_key: str = "params"
    level: int | None = None

    @property
    def url(self) -> str:
        return RELEASE_URL + self.checkpoint


def _medium(**kwargs) -> dict:
    """SwinIR-M: 6 groups x 6 blocks, C=180, 6 heads, mlp_ratio 2 (all releases: qkv_bias, patch 1)."""
    config = dict(
        in_chans=3, img_size=64, window_size=8, img_range=1.0, depths=[6] * 6, embed_dim=180, num_heads=[6] * 6,
        mlp_ratio=2.0, upsampler="", resi_connection="1conv", upscale=1,
    )  # fmt: skip
    config.update(kwargs)
    return config


def _presets() -> dict[str, Preset]:
    presets = []
    for scale in (2, 3, 4, 8):
        presets.append(Preset(
            f"classical_sr_x{scale}", "classical_sr", scale,
            _medium(upscale=scale, upsampler="pixelshuffle"),
            f"001_classicalSR_DF2K_s64w8_SwinIR-M_x{scale}.pth",
        ))  # fmt: skip
    for scale in (2, 3, 4):
        presets.append(Preset(
            f"lightweight_sr_x{scale}", "lightweight_sr", scale,
            _medium(upscale=scale, upsampler="pixelshuffledirect", depths=[6] * 4, embed_dim=60, num_heads=[6] * 4),
            f"002_lightweightSR_DIV2K_s64w8_SwinIR-S_x{scale}.pth",
        ))  # fmt: skip
    for scale in (2, 4):
        presets.append(Preset(
            f"real_sr_x{scale}", "real_sr", scale,
            _medium(upscale=scale, upsampler="nearest+conv"),
            f"003_realSR_BSRGAN_DFO_s64w8_SwinIR-M_x{scale}_GAN.pth", param_key="params_ema",
        ))  # fmt: skip
    presets.append(Preset(
        "real_sr_large_x4", "real_sr", 4,
        _medium(upscale=4, upsampler="nearest+conv", depths=[6] * 9, embed_dim=240, num_heads=[8] * 9,
                resi_connection="3conv"),
        "003_realSR_BSRGAN_DFOWMFC_s64w8_SwinIR-L_x4_GAN.pth", param_key="params_ema",
    ))  # fmt: skip
    for sigma in (15, 25, 50):
        presets.append(Preset(
            f"gray_dn_{sigma}", "gray_dn", 1, _medium(in_chans=1, img_size=128),
            f"004_grayDN_DFWB_s128w8_SwinIR-M_noise{sigma}.pth", level=sigma,
        ))  # fmt: skip
        presets.append(Preset(
            f"color_dn_{sigma}", "color_dn", 1, _medium(img_size=128),
            f"005_colorDN_DFWB_s128w8_SwinIR-M_noise{sigma}.pth", level=sigma,
        ))  # fmt: skip
    for quality in (10, 20, 30, 40):
        presets.append(Preset(
            f"gray_jpeg_{quality}", "gray_jpeg", 1, _medium(in_chans=1, img_size=126, window_size=7, img_range=255.0),
            f"006_CAR_DFWB_s126w7_SwinIR-M_jpeg{quality}.pth", level=quality,
        ))  # fmt: skip
        presets.append(Preset(
            f"color_jpeg_{quality}", "color_jpeg", 1, _medium(img_size=126, window_size=7, img_range=255.0),
            f"006_colorCAR_DFWB_s126w7_SwinIR-M_jpeg{quality}.pth", level=quality,
        ))  # fmt: skip
    return {preset.name: preset for preset in presets}


PRESETS: dict[str, Preset] = _presets()


def build(name: str, **overrides):
    """A SwinIR with a preset's architecture and random weights (benchmarks, training);
    ``overrides`` win over the preset's kwargs (e.g. ``embed_dim=24`` for a small model)."""
    from .model import SwinIR  # here, not at the top: the command reads PRESETS without importing torch

    if name not in PRESETS:
        raise ValueError(f"name: expected one of {sorted(PRESETS)}, got {name!r}")
    return SwinIR(**{**PRESETS[name].kwargs, **overrides})
