"""swinir.accelerate on the official transcription: same outputs and gradients with fused blocks."""

import pytest
import torch
import torch.nn as nn
from tests.support.official_swinir import SwinIR as OfficialSwinIR
from tests.helpers import randomize

import swinir
from swinir.fusing import is_swin_block

CONFIGS = [
    dict(img_size=16, embed_dim=12, depths=[2, 2], num_heads=[2, 3], window_size=8, upsampler="pixelshuffle", upscale=2),
    dict(img_size=14, embed_dim=16, depths=[3], num_heads=[2], window_size=7, upsampler="", upscale=1, img_range=255.0,
         in_chans=1, resi_connection="3conv"),
]  # fmt: skip


@pytest.mark.parametrize("config", CONFIGS)
def test_accelerated_official_model_gives_the_same_output(config):
    official = OfficialSwinIR(**config).eval()
    randomize(official)
    accelerated = OfficialSwinIR(**config).eval()
    accelerated.load_state_dict(official.state_dict())
    state_before = {k: v.clone() for k, v in accelerated.state_dict().items()}
    assert swinir.accelerate(accelerated) is accelerated
    assert sum(is_swin_block(m) for m in accelerated.modules()) == sum(config["depths"])
    for size in [(13, 21), (config["img_size"], config["img_size"])]:
        x = torch.rand(2, config.get("in_chans", 3), *size)
        with torch.no_grad():
            expected, actual = official(x), accelerated(x)
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    assert all(torch.equal(v, state_before[k]) for k, v in accelerated.state_dict().items())


def test_accelerated_official_model_gradients():
    config = {**CONFIGS[0], "drop_path_rate": 0.0}
    official = OfficialSwinIR(**config)
    randomize(official)
    accelerated = swinir.accelerate(OfficialSwinIR(**config))
    accelerated.load_state_dict(official.state_dict())
    x = torch.rand(1, 3, 13, 21)
    for model in (official, accelerated):
        model(x).square().mean().backward()
    grads = dict(accelerated.named_parameters())
    for name, p in official.named_parameters():
        torch.testing.assert_close(grads[name].grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_accelerate_rejects_models_without_swin_blocks():
    with pytest.raises(ValueError, match="found no SwinTransformerBlock"):
        swinir.accelerate(nn.Sequential(nn.Conv2d(3, 3, 3)))
    ours = swinir.SwinIR(img_size=16, embed_dim=12, depths=[2], num_heads=[2], window_size=8)
    assert swinir.accelerate(ours) is ours  # already fused: left alone


def test_attention_dropout_is_refused_in_training_by_both():
    """Neither path has dropout on the attention weights: both build and run in eval mode, both refuse
    to train with it (before, accelerate dropped it silently while SwinIR refused to be built)."""
    config = {**CONFIGS[0], "attn_drop_rate": 0.1}
    x = torch.rand(1, 3, 16, 16)
    for model in (swinir.accelerate(OfficialSwinIR(**config)), swinir.SwinIR(**config)):
        with torch.no_grad():
            model.eval()(x)
        with pytest.raises(ValueError, match=r"attn_drop: .* attn_drop=0\.1 cannot train"):
            model.train()(x)


def test_missing_x_size_names_the_checkpointing_cause():
    model = swinir.accelerate(OfficialSwinIR(**CONFIGS[0]))
    block = model.layers[0].residual_group.blocks[0]
    tokens = torch.rand(1, 16 * 24, CONFIGS[0]["embed_dim"])
    with pytest.raises(ValueError, match="use_checkpoint=True drops x_size"):
        block(tokens)  # as BasicSR's checkpoint(blk, x)
    assert block(tokens[:, :256]).shape == (1, 256, CONFIGS[0]["embed_dim"])  # square: recovered
