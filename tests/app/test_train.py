"""`swinir train` on one process: data = what `swinir degrade` makes, exact resume, the saved file loads
everywhere, validation = `swinir eval`, bad input gives one line and keeps earlier checkpoints."""

import errno
import os
import re

import numpy as np
import pytest
import torch
from tests.helpers import run_python
from tests.support.official_swinir import SwinIR as OfficialSwinIR

import swinir
from swinir import distributed, imageio
from swinir import train as training
from swinir.train.building import choose_degradation
from swinir.train.data import RankItems
from swinir.commands import main

# Tiny models: a shifted block (depth 2, window 4), SR x2 and x1 variants; no stochastic depth unless asked.
TINY = dict(embed_dim=12, depths=[2], num_heads=[2], window_size=4, img_size=8, mlp_ratio=2.0, drop_path_rate=0.0)
SR_X2 = dict(TINY, upscale=2, upsampler="pixelshuffledirect")
DENOISE = dict(TINY, upscale=1, upsampler="")


@pytest.fixture(autouse=True)
def _one_thread():
    """These models are tiny: on a shared 2-core machine two threads only add synchronisation (10x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _images(folder, sizes, channels=3, seed=0):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, (height, width) in enumerate(sizes):
        # smooth-ish content so that JPEG and bicubic do real work
        base = rng.random((height // 4 + 1, width // 4 + 1, channels)).astype(np.float32)
        pixels = np.repeat(np.repeat(base, 4, 0), 4, 1)[:height, :width] * 0.8 + rng.random((height, width, channels)) * 0.2
        imageio.write_image(os.path.join(folder, f"img{i}.png"), pixels.astype(np.float32), overwrite=True)
    return str(folder)


def _options(tmp_path, arch, **overrides):
    defaults = dict(out=str(tmp_path / "out"), hr=_images(tmp_path / "hr", [(40, 44), (36, 48)]), arch=dict(arch),
                    patch=8, batch=4, steps=6, save_every=3, workers=0, quiet=True)
    return training.TrainOptions(**{**defaults, **overrides})


def _run_cli(*args):
    return main(["train", *map(str, args), "-q"])


# ---------------------------------------------------------------------------------------------------
# Data


@pytest.mark.parametrize("kind, args, arch", [
    ("sr", ["--mode", "sr", "--scale", "2"], dict(SR_X2)),
    ("noise", ["--mode", "noise"], dict(DENOISE)),
    ("jpeg", ["--mode", "jpeg"], dict(DENOISE)),
    ("gray_jpeg", ["--mode", "jpeg", "--gray"], dict(DENOISE, in_chans=1)),
    ("gray_noise", ["--mode", "noise", "--gray"], dict(DENOISE, in_chans=1)),
])
def test_training_inputs_are_what_swinir_degrade_makes_of_the_patch(tmp_path, kind, args, arch):
    options = _options(tmp_path, arch, noise=(5.0, 50.0) if "noise" in kind else None,
                       jpeg=(10, 40) if "jpeg" in kind else None)
    model = swinir.SwinIR(**arch)
    sampler = training.PatchSampler(options.hr, None, choose_degradation(options, model), 8, 4, model.in_chans, 0)
    for step, index in [(1, 0), (7, 3)]:
        sample = sampler.sample(step, index)
        assert sample.hq.shape == (8 * model.upscale, 8 * model.upscale, model.in_chans)
        hq_dir, lq_dir = tmp_path / f"hq{step}", tmp_path / f"lq{step}"
        imageio.write_image(str(hq_dir / "patch.png"), sample.hq)  # exact: the patch holds 8-bit values
        level = []
        if sample.level is not None:
            level = ["--sigma", repr(sample.level), "--seed", str(sample.noise_seed)] if "noise" in kind \
                else ["--quality", str(sample.level)]
        assert main(["degrade", str(hq_dir), str(lq_dir), *args, *level, "-q"]) == 0
        expected = imageio.read_image(str(lq_dir / "patch.png")).pixels
        np.testing.assert_array_equal(sample.lq, expected)


def test_paired_patches_are_cut_at_the_same_place(tmp_path):
    """HR = nearest 2x upsampling of LR, so every aligned HR patch decimates to its LR patch, under any
    flip or rotation; the LR files use the official <name>x<scale> names."""
    lr_dir = _images(tmp_path / "lr", [(20, 22), (18, 24)])
    os.makedirs(tmp_path / "hr")
    for name in os.listdir(lr_dir):
        pixels = imageio.read_image(os.path.join(lr_dir, name)).pixels
        imageio.write_image(str(tmp_path / "hr" / name), np.repeat(np.repeat(pixels, 2, 0), 2, 1))
        os.rename(os.path.join(lr_dir, name), os.path.join(lr_dir, name.replace(".png", "x2.png")))
    sampler = training.PatchSampler(str(tmp_path / "hr"), lr_dir, training.Degradation("paired", 2), 8, 4, 3, 0)
    for index in range(8):
        sample = sampler.sample(3, index)
        np.testing.assert_array_equal(sample.lq, sample.hq[::2, ::2])


def test_the_global_batch_does_not_depend_on_the_number_of_processes():
    single = list(RankItems(2, 5, 8, distributed.Context()))
    split = [list(RankItems(2, 5, 8, distributed.Context(rank, 4))) for rank in range(4)]
    # rank r takes items [r*2, r*2+2) of every step's batch of 8: interleaving the ranks' batches of 2
    assert [item for step in range(3) for rank in range(4) for item in split[rank][2 * step:2 * step + 2]] == single
    assert single[0] == 3 * 8 and single[-1] == 5 * 8 + 7


def test_learning_rate_halves_at_50_80_90_95_percent():
    rates = [training.learning_rate(2e-4, step, 100) for step in range(1, 101)]
    assert rates[:50] == [2e-4] * 50
    assert rates[50] == rates[79] == 1e-4 and rates[80] == rates[89] == 5e-5
    assert rates[90] == rates[94] == 2.5e-5 and rates[95] == rates[99] == 1.25e-5


# ---------------------------------------------------------------------------------------------------
# Exact resume and the saved files


def _final_state(out):
    return torch.load(os.path.join(out, "step_00000006.pth"), weights_only=True)


def _assert_same_state(first, second):
    for key in ("params", "params_ema"):
        assert first[key].keys() == second[key].keys()
        for name in first[key]:
            assert torch.equal(first[key][name], second[key][name]), (key, name)
    optimizer_a, optimizer_b = first["trainer"]["optimizer"]["state"], second["trainer"]["optimizer"]["state"]
    for index in optimizer_a:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(optimizer_a[index][name], optimizer_b[index][name])
    assert first["trainer"]["scaler"] == second["trainer"]["scaler"]


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_an_interrupted_and_resumed_run_equals_an_uninterrupted_one_bit_for_bit(tmp_path, dtype):
    # denoising with a sigma range (random levels and noise seeds) and stochastic depth (torch RNG)
    arch = dict(DENOISE, drop_path_rate=0.2)
    whole = _options(tmp_path, arch, noise=(5.0, 30.0), dtype=dtype, out=str(tmp_path / "whole"))
    training.train(**vars(whole))
    split = dict(vars(whole), out=str(tmp_path / "split"))
    first = training.train(**dict(split, until=3))
    assert first.step == 3 and first.model is None
    second = training.train(**dict(split, resume="latest"))
    assert second.step == 6 and second.model.endswith("model.pth")
    _assert_same_state(_final_state(whole.out), _final_state(split["out"]))
    # and the schedule/EMA really moved: weights differ from the step-3 checkpoint
    middle = torch.load(os.path.join(split["out"], "step_00000003.pth"), weights_only=True)
    assert not torch.equal(middle["params"]["conv_first.weight"], _final_state(whole.out)["params"]["conv_first.weight"])


def test_data_loading_processes_give_the_same_run(tmp_path):
    in_process = training.train(**vars(_options(tmp_path, SR_X2, steps=3, out=str(tmp_path / "a"))))
    with_workers = training.train(**vars(_options(tmp_path, SR_X2, steps=3, out=str(tmp_path / "b"), workers=2)))
    _assert_same_state(torch.load(in_process.checkpoint, weights_only=True),
                       torch.load(with_workers.checkpoint, weights_only=True))


def test_the_saved_model_loads_in_swinir_load_and_the_official_class(tmp_path):
    options = _options(tmp_path, SR_X2, steps=3, ema_decay=0.5)
    result = training.train(**vars(options))
    saved = torch.load(result.model, weights_only=True)
    ours = swinir.load(result.model)  # prefers params_ema, as spandrel
    for name, value in saved["params_ema"].items():
        assert torch.equal(ours.state_dict()[name], value)
    assert any(not torch.equal(saved["params"][k], saved["params_ema"][k]) for k in saved["params"])
    official = OfficialSwinIR(**{k: v for k, v in saved["config"].items() if k != "backend"})
    official.load_state_dict(saved["params_ema"], strict=True)  # same keys and shapes (spandrel's layout too)
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), official.eval()(x), atol=1e-5, rtol=1e-5)


def test_validation_scores_equal_swinir_degrade_restore_eval(tmp_path):
    val = _images(tmp_path / "val", [(32, 36), (40, 28)], seed=5)
    options = _options(tmp_path, DENOISE, noise=(10.0, 20.0), steps=2, val=val, val_every=2)
    result = training.train(**vars(options))
    scores = result.validation[-1]
    assert main(["degrade", val, str(tmp_path / "noisy"), "--mode", "noise", "--sigma", "20", "-q"]) == 0
    assert main(["restore", str(tmp_path / "noisy"), "-m", result.model, "-o", str(tmp_path / "restored"), "-q"]) == 0
    with _captured_stdout() as output:
        assert main(["eval", val, str(tmp_path / "restored")]) == 0
    average = next(line for line in output.getvalue().splitlines() if line.startswith("average"))
    psnr, ssim, psnr_y, ssim_y = map(float, average.split()[2:6])
    assert scores["psnr"] == pytest.approx(psnr, abs=1e-4) and scores["psnr_y"] == pytest.approx(psnr_y, abs=1e-4)
    assert scores["ssim"] == pytest.approx(ssim, abs=1e-6) and scores["ssim_y"] == pytest.approx(ssim_y, abs=1e-6)
    assert open(os.path.join(options.out, "val.csv")).read().startswith("step,psnr,ssim,psnr_y,ssim_y")


class _captured_stdout:
    def __enter__(self):
        import contextlib
        import io

        self.buffer = io.StringIO()
        self.redirect = contextlib.redirect_stdout(self.buffer)
        self.redirect.__enter__()
        return self.buffer

    def __exit__(self, *exc):
        self.redirect.__exit__(*exc)


def test_bf16_and_activation_checkpointing_train(tmp_path):
    plain = training.Trainer(_options(tmp_path, SR_X2, out=str(tmp_path / "a")))
    recomputed = training.Trainer(_options(tmp_path, SR_X2, out=str(tmp_path / "b"), grad_checkpoint=True))
    assert all(layer.residual_group.use_checkpoint for layer in recomputed.model.layers)
    lq, hq = plain.data[1 * 4 + 0]
    for trainer in (plain, recomputed):
        trainer._train_step(lq[None], hq[None])
    for a, b in zip(plain.model.parameters(), recomputed.model.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    # A bf16 step from the same weights: the same loss within bf16's rounding (8-bit significands, a
    # few roundings deep), and the same update direction: every parameter moves as the fp32 step moved it.
    reference_step = training.Trainer(_options(tmp_path, SR_X2, out=str(tmp_path / "c")))
    half = training.Trainer(_options(tmp_path, SR_X2, out=str(tmp_path / "d"), dtype="bf16"))
    half.model.load_state_dict(reference_step.model.state_dict())
    before = [p.detach().clone() for p in half.model.parameters()]
    fp32_loss = float(reference_step._train_step(lq[None], hq[None]))
    bf16_loss = float(half._train_step(lq[None], hq[None]))
    assert abs(bf16_loss - fp32_loss) <= 8 * 2.0**-8 * abs(fp32_loss), (bf16_loss, fp32_loss)
    for start, a, b in zip(before, reference_step.model.parameters(), half.model.parameters()):
        assert a.dtype == b.dtype == torch.float32  # master weights stay fp32
        fp32_move, bf16_move = (a.detach() - start).flatten(), (b.detach() - start).flatten()
        if fp32_move.norm() > 0:
            assert torch.nn.functional.cosine_similarity(fp32_move, bf16_move, dim=0) > 0.9


def test_python_m_swinir_train_without_a_runpy_warning():
    result = run_python("import runpy, sys; sys.argv = ['swinir', 'train', '--help']; runpy.run_module('swinir', run_name='__main__')",
                        PYTHONWARNINGS="error::RuntimeWarning")
    assert result.returncode == 0, result.stderr
    assert "usage: swinir train" in result.stdout and "RuntimeWarning" not in result.stderr


# ---------------------------------------------------------------------------------------------------
# Bad input: one line, exit 1, earlier checkpoints kept


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("swinir: error: "), err
    return err[0]


RUN_ARGS = ["--patch", "8", "--batch", "2", "--workers", "0"]
ARCH_ARGS = ["--arch", "upscale=2", "upsampler=pixelshuffledirect", "embed_dim=12", "depths=[2]", "num_heads=[2]",
             "window_size=4", "img_size=8", "mlp_ratio=2.0", "drop_path_rate=0"]  # SR_X2
TINY_ARGS = [*ARCH_ARGS, *RUN_ARGS]


def test_no_images_and_images_smaller_than_a_patch(tmp_path, capsys):
    os.makedirs(tmp_path / "empty")
    assert _run_cli("--hr", tmp_path / "empty", "--out", tmp_path / "o", *TINY_ARGS) == 1
    line = _one_error_line(capsys)
    assert line.startswith(f"swinir: error: --hr {tmp_path / 'empty'}: no images")
    small = _images(tmp_path / "small", [(40, 40), (12, 30)])
    assert _run_cli("--hr", small, "--out", tmp_path / "o", *TINY_ARGS) == 1
    line = _one_error_line(capsys)
    assert "1 of 2 images are smaller than a 16x16 patch" in line and "img1.png 30x12" in line
    assert _run_cli("--hr", tmp_path / "missing", "--out", tmp_path / "o", *TINY_ARGS) == 1
    assert "no such folder" in _one_error_line(capsys)


def test_resuming_a_checkpoint_of_another_architecture(tmp_path, capsys):
    hr = _images(tmp_path / "hr", [(40, 40)])
    out = tmp_path / "o"
    assert _run_cli("--hr", hr, "--out", out, "--steps", "4", "--until", "2", *TINY_ARGS) == 0
    other = [arg.replace("embed_dim=12", "embed_dim=16") for arg in TINY_ARGS]
    assert _run_cli("--hr", hr, "--out", out, "--steps", "4", "--resume", *other) == 1
    line = _one_error_line(capsys)
    assert "another architecture" in line and "embed_dim 12 vs 16" in line
    assert _run_cli("--hr", hr, "--out", out, "--steps", "5", "--resume", *TINY_ARGS) == 1
    assert "steps 4 vs 5" in _one_error_line(capsys)
    assert _run_cli("--hr", hr, "--out", out, "--init", out / "step_00000002.pth", "--steps", "4", "--resume",
                    out / "nothing.pth", *RUN_ARGS) == 1
    assert "no such file" in _one_error_line(capsys)
    assert os.listdir(out) == ["step_00000002.pth"]


def test_a_full_disk_keeps_the_earlier_checkpoints(tmp_path, capsys, monkeypatch):
    hr = _images(tmp_path / "hr", [(40, 40)])
    out = tmp_path / "o"
    common = ["--hr", hr, "--out", out, "--steps", "8", "--save-every", "2", "--keep", "1", *TINY_ARGS]
    assert _run_cli(*common, "--until", "4") == 0
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}
    assert sorted(before) == ["step_00000004.pth"]
    assert oct(os.stat(out / "step_00000004.pth").st_mode & 0o777) == oct(0o666 & ~_umask())

    real_save = torch.save

    def save_then_fail(obj, handle, *args, **kwargs):
        real_save({"half": torch.zeros(1000)}, handle)  # some bytes reach the disk, then it is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", save_then_fail)
    assert _run_cli(*common, "--resume") == 1
    line = _one_error_line(capsys)
    assert re.search(r"step_00000006\.pth: cannot write \(No space left on device\); the earlier checkpoints are kept", line)
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before  # nothing new, nothing lost


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------------------------------------------
# Losses, and learning on real images


def test_charbonnier_loss():
    pred, target = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.5)
    torch.testing.assert_close(swinir.charbonnier_loss(pred, target), torch.tensor((0.25 + 1e-6) ** 0.5))
    assert swinir.charbonnier_loss(target, target, eps=1e-3).item() == pytest.approx(1e-3)
    pred.requires_grad_(True)
    swinir.charbonnier_loss(pred, target).backward()
    assert torch.all(pred.grad < 0)


def test_a_short_run_on_set5_lowers_the_loss(tmp_path):
    from tests.helpers import SHARED_TESTSETS

    folder = os.path.join(SHARED_TESTSETS, "Set5", "HR")
    if not os.path.isdir(folder):
        pytest.skip(f"no Set5 images under {folder} (set SWINIR_TESTSETS)")
    trainer = training.Trainer(training.TrainOptions(out=str(tmp_path), hr=folder, arch=SR_X2, patch=16, batch=4,
                                                     steps=40, learning_rate=2e-3, workers=0, quiet=True))
    losses = []
    for step in range(1, 41):
        lq, hq = zip(*(trainer.data[step * 4 + index] for index in range(4)))
        losses.append(float(trainer._train_step(torch.stack(lq), torch.stack(hq))))
    assert all(np.isfinite(losses))
    assert np.mean(losses[-8:]) < 0.8 * np.mean(losses[:8])


def test_options_that_cannot_work_are_usage_errors(tmp_path, capsys):
    hr = _images(tmp_path / "hr", [(40, 40)])
    assert _run_cli("--hr", hr, "--out", tmp_path / "o", "--steps", "5", "--until", "9", *TINY_ARGS) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "swinir train: error: --until: expected 1..5 (--steps), got 9"
    assert _run_cli("--hr", hr, "--out", tmp_path / "o", "--init", "x.pth", "--preset", "classical_sr_x2") == 2
    assert "--init and --preset: give one" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o")


def test_fine_tuning_keeps_the_img_range_the_file_stores(tmp_path):
    first = training.train(**vars(_options(tmp_path, dict(DENOISE, img_range=255.0), noise=(25.0, 25.0), steps=1,
                                           out=str(tmp_path / "a"))))
    assert torch.load(first.model, weights_only=True)["config"]["img_range"] == 255.0
    tuned = training.Trainer(_options(tmp_path, {}, init=first.model, noise=(25.0, 25.0), out=str(tmp_path / "b")))
    assert tuned.model.img_range == 255.0  # the weights alone would say 1 (window 4)


# ---------------------------------------------------------------------------------------------------
# The training curves (OUT/val.svg)


def test_the_plot_of_a_resumed_run_equals_the_uninterrupted_ones(tmp_path):
    """Stopped at step 5 (between validations, inside a loss window), resumed: the same points, the same
    file; val.csv too (no row for the stop)."""
    pytest.importorskip("matplotlib")
    from swinir import figures

    val = _images(tmp_path / "val", [(24, 28)], seed=3)
    whole = _options(tmp_path, SR_X2, steps=8, save_every=5, val=val, val_every=2, log_every=3,
                     out=str(tmp_path / "whole"))
    uninterrupted = training.Trainer(whole)
    uninterrupted.run()
    split = dict(vars(whole), out=str(tmp_path / "split"))
    training.train(**dict(split, until=5))
    resumed = training.Trainer(training.TrainOptions(**dict(split, resume="latest")))
    assert resumed.step == 5 and resumed._loss_window[1] == 2  # steps 4 and 5 of the window 4..6
    resumed.run()
    points = figures.curve_points(uninterrupted.history, uninterrupted.losses)
    assert points == figures.curve_points(resumed.history, resumed.losses)
    assert [step for step, _ in points["loss"]] == [3, 6, 8] and [step for step, _ in points["psnr"]] == [2, 4, 6, 8]
    for name in ("val.svg", "val.csv"):
        with open(os.path.join(whole.out, name), "rb") as a, open(os.path.join(split["out"], name), "rb") as b:
            assert a.read() == b.read(), name
    assert os.path.getsize(os.path.join(whole.out, "val.svg")) > 5000


def test_no_plot(tmp_path):
    pytest.importorskip("matplotlib")
    hr = _images(tmp_path / "hr", [(40, 44)])
    common = ["--hr", hr, "--val", hr, "--steps", "2", "--save-every", "2", "--val-every", "1", *TINY_ARGS]
    assert _run_cli(*common, "--out", tmp_path / "off", "--no-plot") == 0
    assert os.path.exists(tmp_path / "off" / "val.csv") and not os.path.exists(tmp_path / "off" / "val.svg")
    assert _run_cli(*common, "--out", tmp_path / "on") == 0
    assert os.path.getsize(tmp_path / "on" / "val.svg") > 3000
