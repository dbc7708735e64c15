"""swinir.SwinIR against the official transcription (tests/support/official_swinir.py): module tree, state
dict, outputs and gradients; any input size; backends; torch.compile; checkpointing; precision."""

import glob
import math
import os

import numpy as np
import pytest
import torch
from tests.helpers import SHARED_TESTSETS, randomize, skip_unless_runs
from tests.support.official_swinir import SwinIR as OfficialSwinIR
from PIL import Image

import swinir
import swinir_kernels
from swinir_kernels.tolerances import tolerance

TINY = dict(img_size=16, embed_dim=12, depths=[2], num_heads=[2], window_size=8, mlp_ratio=2.0)

# (upsampler, upscale, resi_connection, window_size, in_chans, img_range, depths/heads, embed_dim)
VARIANTS = [
    pytest.param(dict(upsampler="pixelshuffle", upscale=2), id="pixelshuffle-x2"),
    pytest.param(dict(upsampler="pixelshuffle", upscale=3, resi_connection="3conv"), id="pixelshuffle-x3-3conv"),
    pytest.param(dict(upsampler="pixelshuffle", upscale=4, window_size=7, img_size=14), id="pixelshuffle-x4-ws7"),
    pytest.param(dict(upsampler="pixelshuffle", upscale=8, in_chans=1), id="pixelshuffle-x8-gray"),
    pytest.param(dict(upsampler="pixelshuffledirect", upscale=3, depths=[2, 2], num_heads=[2, 6], embed_dim=60), id="direct-x3-hd10"),
    pytest.param(dict(upsampler="pixelshuffledirect", upscale=2, resi_connection="3conv", in_chans=1), id="direct-x2-3conv-gray"),
    pytest.param(dict(upsampler="nearest+conv", upscale=2), id="nearest-x2"),
    pytest.param(dict(upsampler="nearest+conv", upscale=4, resi_connection="3conv", embed_dim=16), id="nearest-x4-3conv"),
    pytest.param(dict(upsampler="", upscale=1, img_range=255.0, window_size=7, img_size=21), id="restore-ws7-range255"),
    pytest.param(dict(upsampler="", upscale=1, in_chans=1, embed_dim=60, num_heads=[2]), id="restore-gray-hd30"),
]


def tiny_config(**overrides):
    return {**TINY, **overrides}


def pair(config, seed=0):
    """An official transcription and ours with the same weights, in eval mode."""
    official = OfficialSwinIR(**config).eval()
    ours = swinir.SwinIR(**config).eval()
    randomize(official, seed=seed)
    ours.load_state_dict(official.state_dict(), strict=True)
    return official, ours


# ------------------------------------------------------------------ structure


@pytest.mark.parametrize("variant", VARIANTS)
def test_state_dict_keys_shapes_and_order_match_official(variant):
    config = tiny_config(**variant)
    official, ours = OfficialSwinIR(**config), swinir.SwinIR(**config)
    official_state, our_state = official.state_dict(), ours.state_dict()
    assert list(our_state) == list(official_state)
    for key, value in official_state.items():
        assert our_state[key].shape == value.shape, key
        assert our_state[key].dtype == value.dtype, key
    for key in (k for k in official_state if k.endswith(("relative_position_index", "attn_mask"))):
        assert torch.equal(our_state[key], official_state[key]), key
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in official.named_parameters()]
    assert "mean" not in our_state
    assert ours.upscale == (1 if config["upsampler"] == "" else config["upscale"])
    assert swinir.SwinIR(**ours.config).state_dict().keys() == our_state.keys()


def test_small_img_size_shrinks_the_window_as_official():
    config = tiny_config(img_size=6, upsampler="", upscale=1)  # min(img_size) <= ws: no shift, ws 6
    official, ours = OfficialSwinIR(**config), swinir.SwinIR(**config)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in official.state_dict().items()}
    block = ours.layers[0].residual_group.blocks[1]
    assert (block.window_size, block.shift_size, block.attn_mask) == (6, 0, None)


# Exact counts from swinir-reference.md §1.7 (total, excluding the bias tables).
PARAM_COUNTS = {
    "classical_sr_x2": (11_752_487, 11_703_887),
    "classical_sr_x3": (11_937_127, 11_888_527),
    "classical_sr_x4": (11_900_199, 11_851_599),
    "classical_sr_x8": (12_047_911, 11_999_311),
    "lightweight_sr_x2": (910_152, 877_752),
    "lightweight_sr_x3": (918_267, 885_867),
    "lightweight_sr_x4": (929_628, 897_228),
    "real_sr_x2": (11_678_631, None),
    "real_sr_x4": (11_715_559, None),
    "real_sr_large_x4": (28_013_059, 27_915_859),
    "gray_dn_15": (11_497_681, None),
    "color_dn_25": (11_504_163, None),
    "gray_jpeg_10": (11_485_585, None),
    "color_jpeg_40": (11_492_067, None),
}


@pytest.mark.parametrize("name", sorted(PARAM_COUNTS))
def test_full_size_presets_have_the_official_parameter_counts(name):
    with torch.device("meta"):
        model = swinir.build(name)
    total = sum(p.numel() for p in model.parameters())
    without_tables = total - sum(p.numel() for n, p in model.named_parameters() if n.endswith("relative_position_bias_table"))
    expected_total, expected_without = PARAM_COUNTS[name]
    assert total == expected_total
    if expected_without is not None:
        assert without_tables == expected_without


def test_classical_x4_state_dict_layout():
    with torch.device("meta"):
        state = swinir.build("classical_sr_x4").state_dict()
    assert len(state) == 550
    assert sum(k.endswith("attn_mask") for k in state) == 18
    assert sum(k.endswith("relative_position_index") for k in state) == 36
    assert state["layers.0.residual_group.blocks.1.attn_mask"].shape == (64, 64, 64)
    assert state["upsample.2.weight"].shape == (256, 64, 3, 3)
    assert list(state)[4] == "layers.0.residual_group.blocks.0.norm1.weight"


# ------------------------------------------------------------------ numerics


@pytest.mark.parametrize("variant", VARIANTS)
def test_outputs_match_official(variant):
    config = tiny_config(**variant)
    official, ours = pair(config)
    ws, size = config["window_size"], config["img_size"]
    for shape in [(2, 13, 21), (1, size, size), (1, 2 * ws, ws + 1)]:  # odd; img_size (buffer mask); 2x1 windows
        x = torch.rand(shape[0], config.get("in_chans", 3), *shape[1:])
        with torch.no_grad():
            expected, actual = official(x), ours(x)
        # 1e-5 relative to the output's scale (randomized weights give outputs of ~10-30).
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


def test_outputs_depend_on_the_weights():
    """Guards the comparisons above: a perturbed table changes the output."""
    official, ours = pair(tiny_config(upsampler="pixelshuffledirect", upscale=2))
    x = torch.rand(1, 3, 13, 21)
    with torch.no_grad():
        before = ours(x)
        table = ours.layers[0].residual_group.blocks[1].attn.relative_position_bias_table
        table.add_(torch.randn_like(table))  # (a constant would cancel in the softmax)
        assert (ours(x) - before).abs().max() > 1e-4


@pytest.mark.parametrize("size,mode", [
    ((1, 1), "replicate"), ((3, 5), "replicate"), ((2, 17), "replicate"), ((9, 2), "replicate"),
    ((5, 12), "reflect"), ((13, 21), "reflect"), ((8, 3), "replicate"),
])  # fmt: skip
def test_padding_path_equals_pad_then_crop(size, mode):
    """Any size: the output equals padding the input explicitly to a window multiple (F.pad 'reflect',
    as the official check_image_size, or 'replicate' where the padding is >= the size along an axis
    and reflect is impossible), running the model on that, and cropping to the unpadded size."""
    model = swinir.SwinIR(**tiny_config(upsampler="pixelshuffledirect", upscale=2)).eval()
    randomize(model, seed=4)
    ws = model.window_size
    x = torch.rand(2, 3, *size)
    pad_rows, pad_cols = -size[0] % ws, -size[1] % ws
    assert (mode == "reflect") == (pad_rows < size[0] and pad_cols < size[1])
    padded = torch.nn.functional.pad(x, (0, pad_cols, 0, pad_rows), mode=mode)
    assert padded.shape[-2] % ws == 0 and padded.shape[-1] % ws == 0
    with torch.no_grad():
        y = model(x)
        expected = model(padded)[..., : 2 * size[0], : 2 * size[1]]  # a window multiple: no padding inside
    assert y.shape == (2, 3, 2 * size[0], 2 * size[1])
    fp32 = tolerance(torch.float32)
    torch.testing.assert_close(y, expected, rtol=fp32["rtol"], atol=fp32["atol"] * expected.abs().max().item())
    if mode == "reflect":  # and the official model, which pads with reflect only, agrees
        official = OfficialSwinIR(**tiny_config(upsampler="pixelshuffledirect", upscale=2)).eval()
        official.load_state_dict(model.state_dict(), strict=True)
        with torch.no_grad():
            torch.testing.assert_close(y, official(x), rtol=fp32["rtol"], atol=fp32["atol"] * expected.abs().max().item())


def test_batch_items_are_independent():
    _, ours = pair(tiny_config(upsampler="pixelshuffle", upscale=2))
    x = torch.rand(3, 3, 11, 19)
    with torch.no_grad():
        batched = ours(x)
        single = torch.cat([ours(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-5 * single.abs().max().item())


def test_gradients_match_official():
    config = tiny_config(upsampler="pixelshuffledirect", upscale=2, depths=[2, 2], num_heads=[2, 2], drop_path_rate=0.0)
    official, ours = pair(config)
    x = torch.rand(2, 3, 13, 21)
    target = torch.rand(2, 3, 26, 42)
    for model in (official, ours):
        model.train()
        swinir.l1_loss(model(x), target).backward()
    our_params = dict(ours.named_parameters())
    for name, p in official.named_parameters():
        torch.testing.assert_close(our_params[name].grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_use_checkpoint_gives_the_same_forward_and_backward():
    config = tiny_config(upsampler="", upscale=1, drop_path_rate=0.0)
    plain = swinir.SwinIR(**config)
    checkpointed = swinir.SwinIR(**config, use_checkpoint=True)
    randomize(plain, checkpointed)
    x = torch.rand(1, 3, 13, 21)
    outputs = []
    for model in (plain, checkpointed):
        y = model(x)
        y.square().mean().backward()
        outputs.append((y, {n: p.grad for n, p in model.named_parameters()}))
    torch.testing.assert_close(outputs[1][0], outputs[0][0])
    for name, grad in outputs[0][1].items():
        torch.testing.assert_close(outputs[1][1][name], grad, msg=name)


def test_attn_mask_of_any_img_size_loads_and_is_emitted_back():
    file_config = tiny_config(img_size=32, upsampler="", upscale=1)
    official = OfficialSwinIR(**file_config)
    ours = swinir.SwinIR(**tiny_config(img_size=16, upsampler="", upscale=1))  # different mask shape
    ours.load_state_dict(official.state_dict(), strict=True)
    key = "layers.0.residual_group.blocks.1.attn_mask"
    assert torch.equal(ours.state_dict()[key], official.state_dict()[key])
    OfficialSwinIR(**file_config).load_state_dict(ours.state_dict(), strict=True)


@pytest.mark.parametrize("backend", ["cpu", "triton"])
def test_backends_agree_with_the_reference_backend(backend):
    config = tiny_config(upsampler="pixelshuffledirect", upscale=2, depths=[2, 2], num_heads=[2, 2])
    x = torch.rand(2, 3, 13, 21)
    for op in ("shifted_window_attention", "pixel_shuffle"):
        skip_unless_runs(backend, op, x)
    reference_model = swinir.SwinIR(**config, backend="reference").eval()
    model = swinir.SwinIR(**config, backend=backend).eval()
    randomize(reference_model, model)
    x.requires_grad_(True)
    expected = reference_model(x)
    (expected_grad,) = torch.autograd.grad(expected.sum(), x)
    actual = model(x)
    (actual_grad,) = torch.autograd.grad(actual.sum(), x)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(actual_grad, expected_grad, rtol=1e-4, atol=1e-5)


def test_torch_compile_fullgraph():
    model = swinir.SwinIR(**tiny_config(upsampler="pixelshuffledirect", upscale=2)).eval()
    randomize(model)
    x = torch.rand(1, 3, 13, 21)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_torch_compile_fullgraph_inductor():
    model = swinir.SwinIR(**tiny_config(upsampler="pixelshuffle", upscale=2)).eval()
    x = torch.rand(1, 3, 13, 21)
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="upsampler"):
        swinir.SwinIR(upsampler="bilinear")
    with pytest.raises(ValueError, match="resi_connection"):
        swinir.SwinIR(resi_connection="2conv")
    with pytest.raises(ValueError, match="img_size: expected a multiple of window_size=7"):
        swinir.SwinIR(img_size=64, window_size=7)  # the official defaults: its mask construction crashes
    with pytest.raises(ValueError, match="num_heads"):
        swinir.SwinIR(depths=[2, 2], num_heads=[2])
    model = swinir.SwinIR(**tiny_config())
    with pytest.raises(ValueError, match="x: expected a \\(B, 3, H, W\\)"):
        model(torch.rand(1, 1, 8, 8))


# ------------------------------------------------------------------ precision


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.float().clamp(0, 1) - b.float().clamp(0, 1)).square().mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def real_crops(in_chans=3, size=40, count=2):
    paths = sorted(glob.glob(os.path.join(SHARED_TESTSETS, "Set5", "HR", "*.png")))
    if not paths:
        pytest.skip(f"no test images under {SHARED_TESTSETS} (set SWINIR_TESTSETS)")
    crops = []
    for path in paths[:count]:
        image = np.asarray(Image.open(path).convert("RGB" if in_chans == 3 else "L"), dtype=np.float32) / 255.0
        image = torch.from_numpy(image.reshape(image.shape[0], image.shape[1], -1)).permute(2, 0, 1)
        crops.append(image[:, 60 : 60 + size, 50 : 50 + size + 3])
    return torch.stack(crops)


def half_config(**overrides):
    return tiny_config(embed_dim=24, depths=[2, 2], num_heads=[2, 2], **overrides)


@pytest.mark.parametrize("variant", [dict(upsampler="pixelshuffle", upscale=2), dict(upsampler="", upscale=1, img_range=255.0)])
def test_bf16_autocast_and_bf16_weights_on_real_images(variant):
    x = real_crops()
    model = swinir.SwinIR(**half_config(**variant)).eval()
    with torch.no_grad():
        expected = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast_out = model(x)
        model.bfloat16()
        bf16_out = model(x.bfloat16())
    assert autocast_out.dtype == torch.float32 and bf16_out.dtype == torch.bfloat16
    assert psnr(autocast_out, expected) >= 45
    assert psnr(bf16_out, expected) >= 45


def test_fp16_weights_on_real_images():
    x = real_crops(size=24, count=1)
    model = swinir.SwinIR(**half_config(upsampler="pixelshuffledirect", upscale=2)).eval()
    with torch.no_grad():
        expected = model(x)
        out = model.half()(x.half())
    assert out.dtype == torch.float16
    assert psnr(out, expected) >= 45


def test_fp16_residual_stream_does_not_overflow():
    """A residual stream beyond the fp16 range (official issues #103/#180 report it for real
    checkpoints) while every single branch output fits: the official model in fp16 gives inf/nan,
    ours stays equal to fp32."""
    config = tiny_config(upsampler="", upscale=1, img_range=255.0)
    official, ours = pair(config)
    with torch.no_grad():
        for model in (official, ours):
            model.conv_first.weight.mul_(100.0)  # shallow features ~1e4
            for block in model.layers[0].residual_group.blocks:
                block.mlp.fc2.bias.fill_(3e4)  # each block adds 3e4: the stream reaches ~7e4 > 65504
            model.conv_last.weight.mul_(1e-4)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        expected = ours(x)
        assert not torch.isfinite(official.half()(x.half())).all()  # the failure being guarded against
        actual = ours.half()(x.half())
    assert torch.isfinite(actual).all()
    torch.testing.assert_close(actual.float(), expected, rtol=0, atol=2e-3)


def test_no_state_mutation_in_forward():
    model = swinir.SwinIR(**tiny_config()).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mean = model.mean.clone()
    with torch.no_grad():
        model(torch.rand(1, 3, 13, 21))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(model.mean, mean)


def test_backend_argument_selects_the_backend_inside_forward_only():
    x = torch.rand(1, 3, 9, 9)
    with torch.no_grad():
        swinir.SwinIR(**tiny_config()).eval()(x)  # auto first, so that the record below is the reference run's
        auto_used = swinir_kernels.backends_used()
        model = swinir.SwinIR(**tiny_config(), backend="reference").eval()
        model(x)
    used = swinir_kernels.backends_used()
    assert set(used) >= {"shifted_window_attention", "pixel_shuffle"}, used
    for op in ("shifted_window_attention", "pixel_shuffle"):
        assert used[op].startswith("reference: "), (op, used[op], auto_used.get(op))
    assert swinir_kernels._backend.current() == "auto"
    # after forward the setting is back to auto: a model without a backend chooses as before
    with torch.no_grad():
        swinir.SwinIR(**tiny_config()).eval()(x)
    assert swinir_kernels.backends_used() == auto_used
