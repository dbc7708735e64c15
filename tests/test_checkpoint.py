"""swinir.load: wrappers, prefixes, file formats, hyper-parameter inference for every preset, errors."""

import pytest
import torch
from official_swinir import SwinIR as OfficialSwinIR
from safetensors.torch import save_file

import swinir

SMALL = dict(embed_dim=12, depths=[2, 2], num_heads=[2, 3], img_size=16)


def small_preset_config(name):
    """A preset's kwargs with a small body (upsampler, scale, channels, window, range unchanged)."""
    config = {**swinir.PRESETS[name].kwargs, **SMALL}
    if config["window_size"] == 7:
        config["img_size"] = 14
    if name == "real_sr_large_x4":
        config.update(embed_dim=16, num_heads=[2, 2])  # 3conv needs C divisible by 4
    return config


@pytest.mark.parametrize("name", sorted(swinir.PRESETS))
def test_infer_config_recovers_every_preset(name):
    config = small_preset_config(name)
    state = OfficialSwinIR(**config).state_dict()
    inferred = swinir.infer_config(state)
    for key, value in inferred.items():
        if key in config:
            assert value == config[key], key
    model = swinir.load(state)
    assert not model.training
    assert model.upscale == swinir.PRESETS[name].scale
    assert model.img_range == config["img_range"]


@pytest.mark.parametrize("name", ["classical_sr_x4", "real_sr_large_x4", "color_jpeg_10"])
def test_infer_config_on_full_size_presets(name):
    with torch.device("meta"):
        state = swinir.build(name).state_dict()
    inferred = swinir.infer_config(state)
    expected = swinir.PRESETS[name].kwargs
    assert {k: inferred[k] for k in expected} == expected


def test_loaded_model_reproduces_the_official_output():
    config = small_preset_config("classical_sr_x3")
    official = OfficialSwinIR(**config).eval()
    model = swinir.load(official.state_dict())
    x = torch.rand(1, 3, 13, 21)
    with torch.no_grad():
        torch.testing.assert_close(model(x), official(x), rtol=1e-5, atol=1e-5)


WRAPPERS = [
    pytest.param(lambda s: s, id="bare"),
    pytest.param(lambda s: {"params": s}, id="params"),
    pytest.param(lambda s: {"params_ema": s, "params": {k: torch.zeros_like(v) for k, v in s.items()}}, id="ema-preferred"),
    pytest.param(lambda s: {"state_dict": {"module." + k: v for k, v in s.items()}, "epoch": 3}, id="module-prefix"),
    pytest.param(lambda s: {"model": s}, id="model"),
]


def assert_loaded(model, state):
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


@pytest.mark.parametrize("wrap", WRAPPERS)
@pytest.mark.parametrize("saved", [True, False], ids=["pth-file", "dict"])
def test_load_wrappers(tmp_path, wrap, saved):
    state = OfficialSwinIR(**small_preset_config("lightweight_sr_x2")).state_dict()
    source = wrap(state)
    if saved:
        torch.save(source, tmp_path / "weights.pth")
        source = str(tmp_path / "weights.pth")
    assert_loaded(swinir.load(source), state)


@pytest.mark.parametrize("prefix", ["", "module."])
def test_load_safetensors(tmp_path, prefix):
    state = OfficialSwinIR(**small_preset_config("real_sr_x2")).state_dict()
    save_file({prefix + k: v.contiguous() for k, v in state.items()}, str(tmp_path / "weights.safetensors"))
    assert_loaded(swinir.load(tmp_path / "weights.safetensors"), state)


def test_overrides_win():
    state = OfficialSwinIR(**small_preset_config("gray_dn_15")).state_dict()
    model = swinir.load(state, img_range=255.0, backend="reference")
    assert model.img_range == 255.0 and model.backend == "reference"


def test_round_trip_into_the_official_model_and_back():
    for name in ("classical_sr_x2", "lightweight_sr_x3", "real_sr_x4", "real_sr_large_x4", "color_dn_25", "gray_jpeg_10"):
        config = small_preset_config(name)
        ours = swinir.SwinIR(**config)
        official = OfficialSwinIR(**config)
        official.load_state_dict(ours.state_dict(), strict=True)
        reloaded = swinir.load(official.state_dict())
        assert reloaded.state_dict().keys() == ours.state_dict().keys()


def test_missing_buffers_are_tolerated():
    """Files re-saved without the deterministic buffers (some converters drop them) still load."""
    state = OfficialSwinIR(**small_preset_config("color_dn_15")).state_dict()
    state = {k: v for k, v in state.items() if not k.endswith(("attn_mask", "relative_position_index"))}
    swinir.load(state)


def test_not_a_swinir_checkpoint():
    with pytest.raises(ValueError, match="missing keys .*relative_position_bias_table"):
        swinir.load({"conv_first.weight": torch.zeros(4, 3, 3, 3), "conv_last.weight": torch.zeros(3, 4, 3, 3)})
    with pytest.raises(ValueError, match="wrapper keys"):
        swinir.load({"epoch": 3, "optimizer": {"lr": 0.1}})
    with pytest.raises(FileNotFoundError, match="path"):
        swinir.load("/nonexistent/weights.pth")


def test_unexpected_keys_fail_strict_loading():
    state = OfficialSwinIR(**small_preset_config("classical_sr_x2")).state_dict()
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(RuntimeError, match="extra.weight"):
        swinir.load(state)


def test_preset_fields():
    preset = swinir.PRESETS["classical_sr_x4"]
    assert preset.task == "classical_sr" and preset.scale == 4
    assert preset.checkpoint == "001_classicalSR_DF2K_s64w8_SwinIR-M_x4.pth"
    assert preset.url.endswith("/v0.0/001_classicalSR_DF2K_s64w8_SwinIR-M_x4.pth")
    assert swinir.PRESETS["real_sr_x4"].param_key == "params_ema"
    assert {p.task for p in swinir.PRESETS.values()} == {
        "classical_sr", "lightweight_sr", "real_sr", "gray_dn", "color_dn", "gray_jpeg", "color_jpeg",
    }  # fmt: skip
    with pytest.raises(ValueError, match="name"):
        swinir.build("classical_sr_x5")
