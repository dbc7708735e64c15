"""swinir.load: wrappers, prefixes, file formats, hyper-parameter inference for every preset, errors."""

import re
import warnings

import pytest
import torch
from safetensors.torch import save_file
from tests.helpers import randomize
from tests.support.official_swinir import SwinIR as OfficialSwinIR

import swinir
from swinir.checkpoint import AssumptionWarning, CheckpointError
from swinir_kernels.tolerances import tolerance

FP32 = tolerance(torch.float32)  # our model vs the official one: the same maths in another order

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


@pytest.mark.parametrize("name", ["classical_sr_x2", "lightweight_sr_x3", "real_sr_x4", "real_sr_large_x4",
                                  "color_dn_25", "gray_jpeg_10"])
def test_round_trip_into_the_official_model_and_back(name):
    """Every tensor survives ours -> official -> swinir.load unchanged (random values everywhere, so a
    parameter left at its initial value or swapped with another would show), and the reloaded model
    computes what the official one computes."""
    config = small_preset_config(name)
    ours = swinir.SwinIR(**config)
    official = OfficialSwinIR(**config).eval()
    randomize(ours, seed=7)
    official.load_state_dict(ours.state_dict(), strict=True)
    reloaded = swinir.load(official.state_dict(), img_range=config["img_range"])
    original = ours.state_dict()
    assert list(reloaded.state_dict()) == list(original)
    for key, value in reloaded.state_dict().items():
        assert value.dtype == original[key].dtype and torch.equal(value, original[key]), key
    x = torch.rand(1, config["in_chans"], 11, 13)
    with torch.no_grad():
        expected = official(x)
        torch.testing.assert_close(reloaded(x), expected, rtol=FP32["rtol"],
                                   atol=FP32["atol"] * expected.abs().max().item())


def test_missing_buffers_are_tolerated():
    """Files re-saved without the deterministic buffers (some converters drop them) still load: with
    every parameter from the file, the index buffers rebuilt equal to the dropped ones, the official output."""
    official = OfficialSwinIR(**small_preset_config("color_dn_15")).eval()
    randomize(official, seed=3)
    full = official.state_dict()
    dropped = [k for k in full if k.endswith(("attn_mask", "relative_position_index"))]
    assert dropped
    model = swinir.load({k: v for k, v in full.items() if k not in dropped}, img_range=1.0)
    loaded = model.state_dict()
    assert list(loaded) == list(full)
    for key, value in full.items():
        if not key.endswith("attn_mask"):  # without buffers the img_size is assumed (64), so the mask's shape differs
            assert torch.equal(loaded[key], value), key
    x = torch.rand(1, 3, 16, 16)  # the official model's img_size: its shifted blocks use its mask buffer
    with torch.no_grad():
        expected = official(x)
        torch.testing.assert_close(model(x), expected, rtol=FP32["rtol"],
                                   atol=FP32["atol"] * expected.abs().max().item())


def test_not_a_swinir_checkpoint():
    with pytest.raises(ValueError, match="missing keys .*relative_position_bias_table"):
        swinir.load({"conv_first.weight": torch.zeros(4, 3, 3, 3), "conv_last.weight": torch.zeros(3, 4, 3, 3)})
    with pytest.raises(ValueError, match="wrapper keys"):
        swinir.load({"epoch": 3, "optimizer": {"lr": 0.1}})
    with pytest.raises(FileNotFoundError, match="not found: /nonexistent/weights.pth"):
        swinir.load("/nonexistent/weights.pth")


def test_unexpected_keys_fail_strict_loading():
    state = OfficialSwinIR(**small_preset_config("classical_sr_x2")).state_dict()
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="does not have: extra.weight"):
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


# --- unusable files: one line saying what the file is and what we expected ------------------------


def _official_state(**config):
    return OfficialSwinIR(**{**small_preset_config("classical_sr_x2"), **config}).state_dict()


def _write_bad_files(folder):
    """name -> (path, words the error must contain)"""
    state = _official_state()
    torch.save(state, folder / "good.pth")
    good = (folder / "good.pth").read_bytes()
    torch.save(state, folder / "legacy.pth", _use_new_zipfile_serialization=False)
    legacy = (folder / "legacy.pth").read_bytes()
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "good.safetensors"))
    files = {
        "empty.pth": (b"", "the file is empty"),
        "truncated.pth": (good[: len(good) // 2], "truncated or corrupt zip-format PyTorch checkpoint (its end is missing)"),
        "truncated_legacy.pth": (legacy[: len(legacy) // 2], "truncated or corrupt pickle-format"),
        "page.pth": (b"<!DOCTYPE html><html><body>Not Found</body></html>", "an HTML page"),
        "notes.pth": (b"these are not weights\n", "a text file (starts with 'these are not weights')"),
        "lfs.pth": (b"version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 9\n", "a Git LFS pointer"),
        "truncated.safetensors": ((folder / "good.safetensors").read_bytes()[:300], "corrupt .safetensors"),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    torch.save(OfficialSwinIR(**small_preset_config("classical_sr_x2")), folder / "whole_model.pth")
    files["whole_model.pth"] = (None, f"holds a pickled Python object ({OfficialSwinIR.__module__}.SwinIR")
    return {name: (str(folder / name), words) for name, (_, words) in files.items()}


def test_unusable_files_say_what_they_are(tmp_path):
    for name, (path, words) in _write_bad_files(tmp_path).items():
        with pytest.raises(CheckpointError) as raised:
            swinir.load(path)
        message = str(raised.value)
        assert words in message and "expected a SwinIR state dict" in message, (name, message)
        assert "\n" not in message and "\x1b" not in message and len(message) < 400, (name, message)


def _quoted_reason(message: str) -> str:
    """The underlying error quoted in a CheckpointError: "...: a truncated ... of N bytes (REASON); expected ..."."""
    match = re.search(r" bytes \((.*)\); expected a SwinIR", message)
    assert match, message
    return match.group(1)


def test_a_truncated_checkpoint_quotes_the_first_sentence_of_the_error_whole(tmp_path):
    """Issue 23 item 11: torch's zip error was cut at 100 characters, mid-word ("This is an interna")."""
    torch.save(_official_state(), tmp_path / "good.pth")
    data = (tmp_path / "good.pth").read_bytes()
    for fraction in (0.25, 0.5, 0.9):
        path = tmp_path / f"truncated_{fraction}.pth"
        path.write_bytes(data[: int(len(data) * fraction)])
        with pytest.raises(RuntimeError) as raw:
            torch.load(path, weights_only=True)
        first_sentence = re.match(r"(.+?\.)(?=\s|$)", str(raw.value)).group(1)
        with pytest.raises(CheckpointError) as raised:
            swinir.load(path)
        assert _quoted_reason(str(raised.value)) == first_sentence == (
            "PytorchStreamReader failed reading zip archive: failed finding central directory.")


def test_a_long_underlying_error_is_cut_at_a_word_boundary(tmp_path, monkeypatch):
    torch.save(_official_state(), tmp_path / "good.pth")
    words = " ".join(f"word{i:03d}" for i in range(60))  # one 479-character sentence without a full stop

    def broken_load(*args, **kwargs):
        raise RuntimeError(words)

    monkeypatch.setattr(torch, "load", broken_load)
    with pytest.raises(CheckpointError) as raised:
        swinir.load(tmp_path / "good.pth")
    message = str(raised.value)
    reason = _quoted_reason(message)
    assert reason.endswith("...") and 40 < len(reason) < 200, reason
    kept = reason[:-3].split(" ")
    assert kept == words.split(" ")[: len(kept)], "cut inside a word"
    assert "\n" not in message and len(message) - len(str(tmp_path / "good.pth")) < 400


def test_a_foreign_state_dict_names_its_file(tmp_path):
    """Issue 23 item 12: a file holding another network's weights said "state dict: not a SwinIR checkpoint"."""
    foreign = {"encoder.0.weight": torch.zeros(8, 3, 3, 3), "encoder.0.bias": torch.zeros(8)}
    torch.save(foreign, tmp_path / "resnet.pth")
    save_file(foreign, str(tmp_path / "resnet.safetensors"))
    torch.save({"params": foreign}, tmp_path / "wrapped.pth")
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}}, tmp_path / "no_tensors.pth")
    state = _official_state()
    torch.save({k: v for k, v in state.items() if not k.startswith("layers.1.")} | {
        k: v for k, v in state.items() if k.startswith("layers.1.residual_group.blocks.1.")}, tmp_path / "incomplete.pth")
    torch.save({**state, "extra.weight": torch.zeros(1)}, tmp_path / "extra.pth")
    cases = {
        "resnet.pth": "not a SwinIR checkpoint, missing keys",
        "resnet.safetensors": "not a SwinIR checkpoint, missing keys",
        "wrapped.pth": "not a SwinIR checkpoint, missing keys",
        "no_tensors.pth": "found no tensors and none of the wrapper keys",
        "incomplete.pth": "incomplete SwinIR state dict",
        "extra.pth": "does not have: extra.weight",
    }
    for name, words in cases.items():
        path = str(tmp_path / name)
        with pytest.raises(CheckpointError) as raised:
            swinir.load(path)
        message = str(raised.value)
        assert message.startswith(f"{path}: ") and words in message, (name, message)
    with pytest.raises(CheckpointError, match=r"^state dict: not a SwinIR checkpoint"):  # a dict has no file name
        swinir.infer_config(foreign)


def test_incomplete_state_dicts_name_the_missing_keys():
    state = _official_state()
    group_missing = {k: v for k, v in state.items() if not k.startswith("layers.1.residual_group.blocks.0.norm1")}
    with pytest.raises(CheckpointError, match=r"incomplete SwinIR state dict: missing layers\.1\.residual_group"):
        swinir.load(group_missing)
    half = {k: v for i, (k, v) in enumerate(state.items()) if i % 2 == 0 or k.startswith(REQUIRED_PREFIXES)}
    with pytest.raises(CheckpointError, match=r"incomplete SwinIR state dict: \d+ of the \d+ keys .* missing: "):
        swinir.load(half)


REQUIRED_PREFIXES = ("conv_first", "layers.0.residual_group.blocks.0.", "layers.1.residual_group.blocks.0.")


# --- inference of the architecture -----------------------------------------------------------------


@pytest.mark.parametrize("img_size,window_size", [(8, 8), (7, 7), (6, 8)])
def test_models_trained_at_img_size_up_to_the_window_run_unshifted(img_size, window_size):
    """The official block neither shifts nor stores a mask when img_size <= window_size (and shrinks
    the window to img_size below it)."""
    torch.manual_seed(0)
    config = dict(small_preset_config("classical_sr_x2"), img_size=img_size, window_size=window_size)
    official = OfficialSwinIR(**config).eval()
    from tests.helpers import randomize

    randomize(official)
    state = official.state_dict()
    assert not any(key.endswith("attn_mask") for key in state)
    inferred = swinir.infer_config(state)
    assert inferred["window_size"] == min(img_size, window_size) and inferred["img_size"] <= window_size
    model = swinir.load(state, img_range=1.0)
    # the official model pads to a multiple of window_size but partitions by the shrunk window (6 < 8),
    # so the input is a multiple of both
    x = torch.rand(1, 3, 14, 21) if window_size == 7 else torch.rand(1, 3, 24, 48)
    with torch.no_grad():
        torch.testing.assert_close(model(x), official(x), rtol=1e-4, atol=1e-4)


def test_img_range_assumption_is_said_unless_known():
    state = _official_state()
    with pytest.warns(AssumptionWarning, match=r"does not store img_range; assumed 1 .*img_range= to swinir.load"):
        swinir.load(state)
    jpeg = OfficialSwinIR(**small_preset_config("color_jpeg_10")).state_dict()
    with pytest.warns(AssumptionWarning, match=r"assumed 255 \(window 7"):
        assert swinir.load(jpeg).img_range == 255.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", AssumptionWarning)
        assert swinir.load(jpeg, img_range=1.0).img_range == 1.0


def test_a_file_with_an_official_name_gets_the_presets_img_range(tmp_path):
    preset = swinir.PRESETS["classical_sr_x2"]
    path = tmp_path / preset.checkpoint
    torch.save({"params": _official_state()}, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AssumptionWarning)
        assert swinir.load(path).img_range == 1.0
    torch.save({"params": OfficialSwinIR(**small_preset_config("classical_sr_x3")).state_dict()}, path)
    with pytest.raises(CheckpointError, match="holds a different model than classical_sr_x2 \\(upscale 3, expected 2\\)"):
        swinir.load(path)


def test_a_training_checkpoints_recorded_img_range_is_used(tmp_path):
    """`swinir train` writes {"params", "params_ema", "config"}; the config's img_range is the model's
    (a window-8 model trained at 255 would otherwise be assumed 1)."""
    state = _official_state()
    path = tmp_path / "step_00000010.pth"
    torch.save({"params_ema": state, "config": {"img_range": 255.0}}, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AssumptionWarning)
        assert swinir.load(path).img_range == 255.0
        assert swinir.load(path, img_range=1.0).img_range == 1.0  # an explicit override still wins
