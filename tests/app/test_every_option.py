"""Every option of every `swinir` sub-command runs successfully at least once with its effect asserted
(issue 28, Deliver 4). :data:`OPTION_TESTS` names, per (command, option), the tests that do it (here or
elsewhere in tests/app); :data:`EXEMPT` lists options that cannot be run here, with why.
``test_every_option_is_in_the_table`` walks the parsers: a new option in neither fails CI.

Tiny models (embed 12, one RSTB of depth 2, window 4) and images of a few dozen pixels: seconds each."""

import argparse
import csv
import math
import os
import re

import numpy as np
import pytest
import torch
from PIL import Image

import swinir
from swinir import imageio
from swinir import train as training
from swinir.commands import build_parser, main
from tests.helpers import ROOT

TINY = dict(embed_dim=12, depths=[2], num_heads=[2], window_size=4, img_size=8, mlp_ratio=2.0, drop_path_rate=0.0)
SR_X2 = dict(TINY, upscale=2, upsampler="pixelshuffledirect")
TINY_ARGS = ["embed_dim=12", "depths=[2]", "num_heads=[2]", "window_size=4", "img_size=8", "mlp_ratio=2.0",
             "drop_path_rate=0"]
SR_ARGS = ["--arch", "upscale=2", "upsampler=pixelshuffledirect", *TINY_ARGS]
X1_ARGS = ["--arch", "upscale=1", "upsampler=", *TINY_ARGS]
RUN_ARGS = ["--patch", "8", "--batch", "2", "--workers", "0"]

# ---------------------------------------------------------------------------------------------------
# The table: (command, option) -> the tests that run it successfully and assert what it does. Options
# are named by their longest spelling, positionals by their metavar; "swinir" is the top-level parser.

HERE = "tests/app/test_every_option.py"
CLI, TRAIN, DEGRADE, EXPORT = "tests/app/test_cli.py", "tests/app/test_train.py", "tests/app/test_degrade.py", \
    "tests/app/test_export.py"
STRENGTH, NEWCOMER = "tests/app/test_app_strength_restore.py", "tests/app/test_newcomer.py"
COMPARE = "tests/app/test_compare.py"

OPTION_TESTS = {
    ("swinir", "--version"): [f"{NEWCOMER}::test_version_without_torch"],
    # restore
    ("restore", "INPUT"): [f"{CLI}::test_restore_each_task_kind", f"{CLI}::test_folder_batching_gives_the_same_images"],
    ("restore", "--model"): [f"{CLI}::test_restore_each_task_kind"],
    ("restore", "--output"): [f"{CLI}::test_restore_each_task_kind"],
    ("restore", "--recursive"): [f"{CLI}::test_folder_batching_gives_the_same_images"],
    ("restore", "--tile"): [f"{CLI}::test_tiled_matches_untiled_through_the_cli"],
    ("restore", "--max-memory"): [f"{CLI}::test_max_memory_picks_a_tile"],
    ("restore", "--tile-overlap"): [f"{STRENGTH}::test_tile_margin_covering_the_receptive_field_gives_the_untiled_output"],
    ("restore", "--tile-margin"): [f"{STRENGTH}::test_tile_margin_covering_the_receptive_field_gives_the_untiled_output"],
    ("restore", "--dtype"): [f"{CLI}::test_half_precision_close_to_fp32", f"{HERE}::test_restore_dtype_runs_in_that_dtype"],
    ("restore", "--backend"): [f"{HERE}::test_restore_backend_runs_the_ops_there"],
    ("restore", "--device"): [f"{STRENGTH}::test_device_cpu_runs_the_model_on_the_cpu"],
    ("restore", "--img-range"): [f"{CLI}::test_img_range_assumption_is_said_and_can_be_overridden"],
    ("restore", "--batch"): [f"{CLI}::test_folder_batching_gives_the_same_images"],
    ("restore", "--overwrite"): [f"{CLI}::test_overwrite_protection"],
    ("restore", "--skip-existing"): [f"{CLI}::test_skip_existing_resumes_an_interrupted_run"],
    ("restore", "--quiet"): [f"{HERE}::test_quiet_silences_the_notes"],
    # eval
    ("eval", "HR_DIR"): [f"{CLI}::test_eval_matches_hand_computed_psnr"],
    ("eval", "RESTORED_DIR"): [f"{CLI}::test_eval_matches_hand_computed_psnr"],
    ("eval", "--scale"): [f"{CLI}::test_eval_matches_hand_computed_psnr", f"{CLI}::test_eval_pairs_the_official_benchmark_names"],
    ("eval", "--task"): [f"{HERE}::test_eval_task_and_border_choose_the_crop"],
    ("eval", "--border"): [f"{HERE}::test_eval_task_and_border_choose_the_crop"],
    ("eval", "--compare"): [f"{COMPARE}::test_eval_compare_writes_the_picture_with_the_psnrs_eval_prints"],
    ("eval", "--lr"): [f"{COMPARE}::test_eval_compare_with_the_input_folder_and_bad_options"],
    ("eval", "--crop"): [f"{COMPARE}::test_eval_compare_writes_the_picture_with_the_psnrs_eval_prints"],
    ("eval", "--inset"): [f"{COMPARE}::test_eval_compare_writes_the_picture_with_the_psnrs_eval_prints"],
    # degrade
    ("degrade", "HR"): [f"{DEGRADE}::test_degrade_command", f"{CLI}::test_degrade_takes_a_file_and_never_replaces_its_inputs"],
    ("degrade", "OUT_DIR"): [f"{DEGRADE}::test_degrade_command"],
    ("degrade", "--mode"): [f"{DEGRADE}::test_degrade_command"],
    ("degrade", "--scale"): [f"{DEGRADE}::test_degrade_command"],
    ("degrade", "--sigma"): [f"{DEGRADE}::test_degrade_command"],
    ("degrade", "--seed"): [f"{DEGRADE}::test_degrade_command"],
    ("degrade", "--quality"): [f"{DEGRADE}::test_degrade_command"],
    ("degrade", "--gray"): [f"{DEGRADE}::test_degrade_command"],
    ("degrade", "--bit-depth"): [f"{DEGRADE}::test_degrade_command", f"{HERE}::test_degrade_bit_depth_sets_the_written_depth"],
    ("degrade", "--recursive"): [f"{HERE}::test_degrade_recursive_descends_into_sub_folders"],
    ("degrade", "--overwrite"): [f"{DEGRADE}::test_degrade_command"],
    ("degrade", "--skip-existing"): [f"{HERE}::test_degrade_skip_existing_leaves_existing_outputs_untouched"],
    ("degrade", "--quiet"): [f"{HERE}::test_quiet_silences_the_notes"],
    # bench
    ("bench", "--preset"): [f"{HERE}::test_bench_command_with_every_option"],
    ("bench", "--size"): [f"{HERE}::test_bench_command_with_every_option"],
    ("bench", "--device"): [f"{HERE}::test_bench_command_with_every_option"],
    ("bench", "--dtype"): [f"{HERE}::test_bench_command_with_every_option", f"{HERE}::test_benchmark_run_in_half_precision"],
    ("bench", "--repeats"): [f"{HERE}::test_bench_command_with_every_option"],
    ("bench", "--threads"): [f"{HERE}::test_bench_command_with_every_option"],
    # export
    ("export", "CHECKPOINT"): [f"{EXPORT}::test_cli_export_of_a_checkpoint_file"],
    ("export", "--output"): [f"{EXPORT}::test_cli_export_of_a_checkpoint_file"],
    ("export", "--dtype"): [f"{HERE}::test_export_dtype_static_opset_overwrite"],
    ("export", "--opset"): [f"{HERE}::test_export_dtype_static_opset_overwrite"],
    ("export", "--static"): [f"{HERE}::test_export_dtype_static_opset_overwrite"],
    ("export", "--verify"): [f"{NEWCOMER}::test_export_verify_times_as_swinir_bench_and_warns_on_noise"],
    ("export", "--overwrite"): [f"{HERE}::test_export_dtype_static_opset_overwrite"],
    ("export", "--quiet"): [f"{HERE}::test_export_dtype_static_opset_overwrite"],
    # train
    ("train", "--init"): [f"{HERE}::test_train_preset_then_init_from_the_command_line"],
    ("train", "--preset"): [f"{HERE}::test_train_preset_then_init_from_the_command_line"],
    ("train", "--arch"): [f"{HERE}::test_train_preset_then_init_from_the_command_line",
                          f"{HERE}::test_train_run_options_from_the_command_line"],
    ("train", "--hr"): [f"{HERE}::test_train_run_options_from_the_command_line"],
    ("train", "--lr"): [f"{HERE}::test_paired_training_end_to_end"],
    ("train", "--noise"): [f"{HERE}::test_train_noise_and_jpeg_from_the_command_line"],
    ("train", "--jpeg"): [f"{HERE}::test_train_noise_and_jpeg_from_the_command_line"],
    ("train", "--patch"): [f"{HERE}::test_train_run_options_from_the_command_line"],
    ("train", "--batch"): [f"{HERE}::test_train_run_options_from_the_command_line"],
    ("train", "--workers"): [f"{TRAIN}::test_data_loading_processes_give_the_same_run"],
    ("train", "--steps"): [f"{HERE}::test_train_run_options_from_the_command_line"],
    ("train", "--learning-rate"): [f"{HERE}::test_train_run_options_from_the_command_line",
                                   f"{HERE}::test_train_preset_then_init_from_the_command_line"],
    ("train", "--ema-decay"): [f"{HERE}::test_train_run_options_from_the_command_line"],
    ("train", "--seed"): [f"{HERE}::test_train_run_options_from_the_command_line"],
    ("train", "--dtype"): [f"{HERE}::test_train_dtype_from_the_command_line"],
    ("train", "--grad-checkpoint"): [f"{HERE}::test_train_grad_checkpoint_from_the_command_line"],
    ("train", "--device"): [f"{HERE}::test_train_run_options_from_the_command_line"],
    ("train", "--out"): [f"{HERE}::test_train_run_options_from_the_command_line"],
    ("train", "--val"): [f"{HERE}::test_train_run_options_from_the_command_line", f"{HERE}::test_paired_training_end_to_end"],
    ("train", "--val-lr"): [f"{HERE}::test_paired_training_end_to_end"],
    ("train", "--val-every"): [f"{HERE}::test_train_run_options_from_the_command_line"],
    ("train", "--save-every"): [f"{HERE}::test_train_run_options_from_the_command_line"],
    ("train", "--keep"): [f"{HERE}::test_train_run_options_from_the_command_line"],
    ("train", "--resume"): [f"{TRAIN}::test_an_interrupted_and_resumed_run_equals_an_uninterrupted_one_bit_for_bit",
                            "tests/app/test_distributed.py::test_two_processes_train_the_same_model_as_one_and_resume"],
    ("train", "--until"): [f"{TRAIN}::test_a_full_disk_keeps_the_earlier_checkpoints",
                           "tests/app/test_distributed.py::test_two_processes_train_the_same_model_as_one_and_resume"],
    ("train", "--dist-timeout"): [f"{HERE}::test_train_run_options_from_the_command_line",
                                  "tests/app/test_distributed.py::test_a_rank_that_dies_stops_the_others_with_a_clear_error"],
    ("train", "--no-plot"): [f"{HERE}::test_train_run_options_from_the_command_line"],
    ("train", "--quiet"): [f"{HERE}::test_train_run_options_from_the_command_line"],
}

# (command, option) -> why it is not run successfully by any test. Keep this empty unless there is no way.
EXEMPT: dict[tuple[str, str], str] = {}


def _every_option():
    """(command, option) for every argument of every parser: the longest option string, or a positional's metavar."""
    parser = build_parser()
    found = []
    for action in parser._actions:
        if action.option_strings and not isinstance(action, argparse._HelpAction):
            found.append(("swinir", max(action.option_strings, key=len)))
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in commands.choices.items():
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            found.append((name, max(action.option_strings, key=len) if action.option_strings else action.metavar or action.dest))
    return found


def test_every_option_is_in_the_table():
    options = _every_option()
    assert len(options) > 60  # the walk found the sub-commands' options
    missing = [key for key in options if key not in OPTION_TESTS and key not in EXEMPT]
    assert not missing, f"options without a test that runs them (add one to OPTION_TESTS, or a reason to EXEMPT): {missing}"
    stale = [key for key in [*OPTION_TESTS, *EXEMPT] if key not in options]
    assert not stale, f"table entries for options that no longer exist: {stale}"
    assert not set(OPTION_TESTS) & set(EXEMPT)
    assert all(reason.strip() for reason in EXEMPT.values())


def test_every_test_the_table_names_exists():
    sources = {}
    for key, tests in OPTION_TESTS.items():
        assert tests, key
        for reference in tests:
            path, _, name = reference.partition("::")
            if path not in sources:
                with open(os.path.join(ROOT, path)) as handle:
                    sources[path] = handle.read()
            assert re.search(rf"^def {re.escape(name)}\(", sources[path], re.M), f"{key}: no test {reference}"


# ---------------------------------------------------------------------------------------------------
# Helpers


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: on a shared 2-core machine two threads only add synchronisation."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _images(folder, sizes, channels=3, bit_depth=8, seed=0, names=None):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, (height, width) in enumerate(sizes):
        base = rng.random((height // 4 + 1, width // 4 + 1, channels)).astype(np.float32)
        pixels = np.repeat(np.repeat(base, 4, 0), 4, 1)[:height, :width] * 0.8 + rng.random((height, width, channels)) * 0.2
        name = names[i] if names else f"img{i}.png"
        imageio.write_image(os.path.join(folder, name), pixels.astype(np.float32), None, bit_depth, overwrite=True)
    return str(folder)


@pytest.fixture(scope="module")
def sr_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "sr_x2.pth"
    torch.save({"params": swinir.SwinIR(**SR_X2).state_dict()}, path)
    return str(path)


class _LinearOutputDtypes:
    """Records the dtype of every nn.Linear output while active (what autocast really ran)."""

    def __enter__(self):
        self.dtypes = set()

        def hook(module, inputs, output):
            if isinstance(module, torch.nn.Linear) and isinstance(output, torch.Tensor):
                self.dtypes.add(output.dtype)

        self.handle = torch.nn.modules.module.register_module_forward_hook(hook)
        return self.dtypes

    def __exit__(self, *exc):
        self.handle.remove()


HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}

# ---------------------------------------------------------------------------------------------------
# restore


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_restore_backend_runs_the_ops_there(sr_checkpoint, tmp_path, backend):
    import swinir_kernels

    _images(tmp_path / "in", [(12, 16)])
    assert main(["restore", str(tmp_path / "in"), "-m", sr_checkpoint, "-o", str(tmp_path / "o"), "--backend", backend,
                 "-q"]) == 0
    used = swinir_kernels.backends_used()
    assert used and all(choice.split(":")[0] == backend for choice in used.values()), used
    restored = imageio.read_image(str(tmp_path / "o" / "img0_SwinIR.png")).pixels
    model = swinir.load(sr_checkpoint, img_range=1.0)
    x = torch.from_numpy(imageio.read_image(str(tmp_path / "in" / "img0.png")).pixels.transpose(2, 0, 1).copy())[None]
    with torch.inference_mode(), swinir_kernels.use_backend("reference"):
        expected = model(x)[0].permute(1, 2, 0).numpy()
    assert np.abs(restored - np.clip(expected, 0, 1)).max() <= 0.5 / 255 + 1e-4


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_restore_dtype_runs_in_that_dtype(sr_checkpoint, tmp_path, dtype):
    _images(tmp_path / "in", [(12, 16)])
    with _LinearOutputDtypes() as dtypes:
        assert main(["restore", str(tmp_path / "in"), "-m", sr_checkpoint, "-o", str(tmp_path / "o"), "--dtype", dtype,
                     "-q"]) == 0
    assert HALF[dtype] in dtypes and torch.float32 not in dtypes, dtypes


def _degrade_argv(tmp_path):
    _images(tmp_path / "in", [(16, 16)])
    return ["degrade", str(tmp_path / "in"), str(tmp_path / "out"), "--mode", "sr", "--scale", "2"]


def _restore_argv(tmp_path, checkpoint):
    _images(tmp_path / "in", [(12, 16)])
    return ["restore", str(tmp_path / "in"), "-m", checkpoint, "-o", str(tmp_path / "out")]


@pytest.mark.parametrize("command", ["restore", "degrade"])
def test_quiet_silences_the_notes(sr_checkpoint, tmp_path, capsys, command):
    argv = _restore_argv(tmp_path, sr_checkpoint) if command == "restore" else _degrade_argv(tmp_path)
    assert main(argv) == 0
    assert "img0.png -> " in capsys.readouterr().err  # the note per image
    assert main([*argv, "--overwrite", "-q"]) == 0
    assert capsys.readouterr().err == ""
    assert os.listdir(tmp_path / "out")  # it still wrote


# ---------------------------------------------------------------------------------------------------
# eval: --task and --border choose the crop


def _psnr(a, b):
    return 10 * math.log10(255**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


EVAL_CASES = [
    *[(["--scale", "2", "--task", task], 2 if task in ("classical_sr", "lightweight_sr") else 0)
      for task in ("classical_sr", "lightweight_sr", "real_sr", "gray_dn", "color_dn", "gray_jpeg", "color_jpeg")],
    (["--scale", "2"], 2),  # no --task: SR scale crops the scale, as classical SR
    (["--scale", "2", "--task", "classical_sr", "--border", "5"], 5),  # --border overrides --task
    (["--scale", "2", "--task", "color_dn", "--border", "3"], 3),
    (["--border", "4"], 4),
]


@pytest.mark.parametrize("options, border", EVAL_CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else str(v))
def test_eval_task_and_border_choose_the_crop(tmp_path, capsys, options, border):
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 256, (24, 30, 3)).astype(np.uint8)
    # errors large near the edges and small inside, so that every border gives another PSNR
    sigma = np.full((24, 30, 1), 2.0)
    sigma[:6], sigma[-6:], sigma[:, :6], sigma[:, -6:] = 30, 30, 30, 30
    restored = np.clip(truth + rng.normal(0, 1, truth.shape) * sigma, 0, 255).round().astype(np.uint8)
    imageio.write_image(str(tmp_path / "hr" / "a.png"), truth / 255.0)
    imageio.write_image(str(tmp_path / "sr" / "a_SwinIR.png"), restored / 255.0)
    assert main(["eval", str(tmp_path / "hr"), str(tmp_path / "sr"), *options]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith(f"(dB; border {border})"), lines[0]
    crop = (slice(border, 24 - border), slice(border, 30 - border)) if border else (slice(None), slice(None))
    expected = _psnr(truth[crop], restored[crop])
    assert float(lines[1].split()[1]) == pytest.approx(expected, abs=1e-4)
    others = {b: _psnr(truth[b:24 - b, b:30 - b], restored[b:24 - b, b:30 - b]) for b in (1, 2, 3, 4, 5) if b != border}
    assert all(abs(value - expected) > 0.05 for value in others.values())  # the border is observable


# ---------------------------------------------------------------------------------------------------
# degrade: -r, --skip-existing, --bit-depth


def test_degrade_recursive_descends_into_sub_folders(tmp_path):
    _images(tmp_path / "in", [(16, 16)], names=["top.png"])
    _images(tmp_path / "in" / "sub", [(16, 20)], names=["deep.png"], seed=1)
    _images(tmp_path / "in" / "sub" / "deeper", [(12, 16)], names=["deepest.png"], seed=2)
    common = ["--mode", "sr", "--scale", "2", "-q"]
    assert main(["degrade", str(tmp_path / "in"), str(tmp_path / "flat"), *common]) == 0
    assert sorted(os.listdir(tmp_path / "flat")) == ["top.png"]
    assert main(["degrade", str(tmp_path / "in"), str(tmp_path / "all"), *common, "-r"]) == 0
    written = sorted(os.path.relpath(os.path.join(root, name), tmp_path / "all")
                     for root, _, names in os.walk(tmp_path / "all") for name in names)
    assert written == ["sub/deep.png", "sub/deeper/deepest.png", "top.png"]
    for relative in written:  # each as the file alone gives
        single = tmp_path / "single" / relative.replace("/", "_")
        assert main(["degrade", str(tmp_path / "in" / relative), str(single), *common]) == 0
        assert (tmp_path / "all" / relative).read_bytes() == (single / os.path.basename(relative)).read_bytes()


def test_degrade_skip_existing_leaves_existing_outputs_untouched(tmp_path, capsys):
    _images(tmp_path / "in", [(16, 16), (16, 20)])
    out = tmp_path / "out"
    out.mkdir()
    (out / "img0.png").write_bytes(b"made by an earlier run")
    os.utime(out / "img0.png", (1_000_000_000, 1_000_000_000))
    common = ["degrade", str(tmp_path / "in"), str(out), "--mode", "jpeg", "--quality", "30"]
    assert main(common) == 1  # without the option: refused, nothing replaced
    assert "already exists" in capsys.readouterr().err
    os.remove(out / "img1.png")  # the run above wrote the other one; start from "only img0 exists"
    assert main([*common, "--skip-existing"]) == 0
    assert "--skip-existing: 1 output(s) already exist, 1 to do" in capsys.readouterr().err
    assert (out / "img0.png").read_bytes() == b"made by an earlier run"
    assert os.stat(out / "img0.png").st_mtime == 1_000_000_000
    assert main(["degrade", str(tmp_path / "in" / "img1.png"), str(tmp_path / "alone"), "--mode", "jpeg",
                 "--quality", "30", "-q"]) == 0
    assert (out / "img1.png").read_bytes() == (tmp_path / "alone" / "img1.png").read_bytes()


@pytest.mark.parametrize("input_depth, option, written_depth", [(16, "8", 8), (8, "16", 16), (16, None, 16), (8, None, 8)])
def test_degrade_bit_depth_sets_the_written_depth(tmp_path, input_depth, option, written_depth):
    _images(tmp_path / "in", [(16, 20)], bit_depth=input_depth)
    hr = imageio.read_image(str(tmp_path / "in" / "img0.png"))
    assert hr.bit_depth == input_depth
    argv = ["degrade", str(tmp_path / "in"), str(tmp_path / "out"), "--mode", "noise", "--sigma", "10", "--seed", "3", "-q"]
    assert main([*argv, *(["--bit-depth", option] if option else [])]) == 0
    written = Image.open(tmp_path / "out" / "img0.png")
    assert written.mode == ("RGB" if written_depth == 8 else written.mode) and written.mode != "RGBA"
    image = imageio.read_image(str(tmp_path / "out" / "img0.png"))
    assert image.bit_depth == written_depth
    # the official draw: N(0, sigma/255) from RandomState(seed), (H, W, 3) in BGR order, added in float32
    noise = np.random.RandomState(3).normal(0, 10 / 255, hr.pixels.shape)[..., ::-1]
    top = 2**written_depth - 1
    expected = np.rint(np.clip((hr.pixels + noise).astype(np.float32), 0, 1) * np.float32(top))
    actual = np.rint(image.pixels.astype(np.float64) * top)
    assert np.abs(actual - expected).max() <= 1 and np.mean(actual != expected) < 0.01


# ---------------------------------------------------------------------------------------------------
# bench


def test_bench_command_with_every_option(capsys):
    threads = torch.get_num_threads()
    assert main(["bench", "--preset", "lightweight_sr_x2", "--size", "8x12", "--device", "cpu", "--dtype", "bf16",
                 "--repeats", "2", "--threads", "2"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0]
    assert "preset lightweight_sr_x2" in header and "input 1x8x12 -> 16x24" in header, header
    assert ", bf16, cpu, 2 CPU thread(s), median of 2 alternating runs per path" in header, header
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("ours ", "reference "))}
    assert float(rows["reference"][-1]) == 0 and 0 <= float(rows["ours"][-1]) <= 0.1
    assert torch.get_num_threads() == threads  # pinned for the run only


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_benchmark_run_in_half_precision(dtype):
    from swinir import benchmark

    with _LinearOutputDtypes() as dtypes:
        report = benchmark.run(preset="classical_sr_x2", size=(12, 16), repeats=1, dtype=dtype,
                               overrides=dict(embed_dim=12, depths=[2], num_heads=[2], window_size=4))
    assert report.dtype == dtype and HALF[dtype] in dtypes and torch.float32 not in dtypes, dtypes
    ours, reference = report.results
    assert reference.max_abs_diff == 0
    # both paths round in `dtype`; they may differ by a few of its ulps on outputs of about 1
    assert ours.max_abs_diff <= 16 * torch.finfo(HALF[dtype]).eps, ours.max_abs_diff
    assert f", {dtype}, cpu," in benchmark.format_report(report)


# ---------------------------------------------------------------------------------------------------
# export


@pytest.mark.slow  # two ONNX exports: ~14 s
def test_export_dtype_static_opset_overwrite(tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from swinir.export import check_onnx
    from tests.helpers import randomize

    model = swinir.build("classical_sr_x2", embed_dim=12, depths=[2], num_heads=[2], img_size=16).eval()
    randomize(model)
    checkpoint, out = tmp_path / "tiny.pth", tmp_path / "tiny.onnx"
    torch.save({"params": model.state_dict()}, checkpoint)
    out.write_bytes(b"an earlier export")
    argv = ["export", str(checkpoint), "-o", str(out), "--dtype", "fp16", "--static", "12x20", "--opset", "18"]
    assert main(argv) == 1  # no --overwrite: refused before any work, the file kept
    assert "already exists (pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"an earlier export"

    assert main([*argv, "--overwrite"]) == 0
    assert "opset 18, fp16, 1 x 3 x 12 x 20" in capsys.readouterr().err  # the note (no -q)
    proto = onnx.load(str(out))
    dims = lambda value: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]  # noqa: E731
    assert dims(proto.graph.input[0]) == [1, 3, 12, 20] and dims(proto.graph.output[0]) == [1, 3, 24, 40]
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert {o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")} == {18}
    rows = check_onnx(str(out), model, [(12, 20)])
    assert 0 < rows[0]["max_abs_error"] <= 2e-2 * 4, rows  # ran in fp16, close to the fp32 model

    # the defaults, quietly: fp32, dynamic batch/height/width, opset 20; --overwrite replaces the fp16 file
    assert main(["export", str(checkpoint), "-o", str(out), "--overwrite", "-q"]) == 0
    assert capsys.readouterr().err == ""
    proto = onnx.load(str(out))
    assert dims(proto.graph.input[0]) == ["batch", 3, "height", "width"]
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert {o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")} == {20}
    assert sorted(os.listdir(tmp_path)) == ["tiny.onnx", "tiny.pth"]


# ---------------------------------------------------------------------------------------------------
# train, from the command line


def _state(path):
    return torch.load(path, weights_only=True, map_location="cpu")


def _val_rows(out):
    with open(os.path.join(out, "val.csv"), newline="") as handle:
        return list(csv.DictReader(handle))


def test_train_run_options_from_the_command_line(tmp_path, capsys, monkeypatch):
    from swinir import distributed

    hr = _images(tmp_path / "hr", [(40, 44), (36, 48)])
    val = _images(tmp_path / "val", [(24, 28)], seed=5)
    calls = []
    setup = distributed.setup
    monkeypatch.setattr(distributed, "setup", lambda *args, **kwargs: calls.append((*args, *kwargs.values()))
                        or setup(*args, **kwargs))
    out = tmp_path / "out"
    assert main(["train", "--hr", hr, "--out", str(out), *SR_ARGS, "--patch", "12", "--batch", "2", "--workers", "0",
                 "--steps", "4", "--learning-rate", "1e-3", "--ema-decay", "0", "--seed", "3", "--save-every", "1",
                 "--keep", "2", "--val", val, "--val-every", "2", "--no-plot", "--device", "cpu", "--dist-timeout", "30",
                 "-q"]) == 0
    assert capsys.readouterr().err == ""  # -q: no progress bar, no closing line
    assert calls == [("cpu", 30.0)]  # --device and --dist-timeout reach the process setup
    # --keep 2 of the checkpoints --save-every 1 wrote; --no-plot: no val.svg
    assert sorted(os.listdir(out)) == ["model.pth", "step_00000003.pth", "step_00000004.pth", "val.csv"]
    state = _state(out / "step_00000004.pth")
    recipe = state["trainer"]["recipe"]
    assert (recipe["seed"], recipe["batch"], recipe["patch"], recipe["steps"]) == (3, 2, 12, 4)
    assert (recipe["learning_rate"], recipe["ema_decay"], recipe["degradation"], recipe["scale"]) == (1e-3, 0.0, "sr", 2)
    assert state["trainer"]["optimizer"]["param_groups"][0]["lr"] == training.learning_rate(1e-3, 4, 4)
    for name, value in state["params"].items():  # --ema-decay 0: the average is the last weights
        assert torch.equal(state["params_ema"][name], value), name
    assert [int(row["step"]) for row in _val_rows(out)] == [2, 4]  # --val-every 2
    assert state["config"]["embed_dim"] == 12 and state["config"]["upscale"] == 2  # --arch
    # --patch 12 on --hr: an x2 model's samples are 12 (LR) and 24 (HR) pixels, cut from the --hr images
    args = build_parser("train").parse_args(["train", "--hr", hr, "--out", str(tmp_path / "x"), *SR_ARGS,
                                             "--patch", "12", "--batch", "2", "--seed", "3"])
    args.check(args)
    sample = training.Trainer(args.options).data.sample(1, 0)
    assert sample.lq.shape == (12, 12, 3) and sample.hq.shape == (24, 24, 3)
    assert sample.path.startswith(hr)

    # without --no-plot and -q: the plot is drawn and the run says what it wrote; --seed picks the weights
    pytest.importorskip("matplotlib")
    common = ["train", "--hr", hr, *SR_ARGS, *RUN_ARGS, "--steps", "1", "--val", val, "--val-every", "1"]
    assert main([*common, "--out", str(tmp_path / "plotted"), "--seed", "3"]) == 0
    assert "trained to step 1" in capsys.readouterr().err
    assert os.path.isfile(tmp_path / "plotted" / "val.svg")
    assert main([*common, "--out", str(tmp_path / "seed4"), "--seed", "4", "-q"]) == 0
    weights = [_state(tmp_path / name / "model.pth")["params"]["conv_first.weight"] for name in ("plotted", "seed4")]
    assert not torch.equal(*weights)


def test_train_preset_then_init_from_the_command_line(tmp_path):
    hr = _images(tmp_path / "hr", [(40, 44)])
    arch = ["--arch", *TINY_ARGS]
    assert main(["train", "--hr", hr, "--out", str(tmp_path / "a"), "--preset", "classical_sr_x2", *arch, *RUN_ARGS,
                 "--steps", "1", "-q"]) == 0
    config = _state(tmp_path / "a" / "model.pth")["config"]
    # the preset's structure (pixelshuffle tail, x2, 3 channels) with the --arch overrides
    assert (config["upscale"], config["upsampler"], config["in_chans"]) == (2, "pixelshuffle", 3)
    assert (config["embed_dim"], list(config["depths"]), config["window_size"]) == (12, [2], 4)
    # --init starts from those weights: one Adam step moves each weight by at most the learning rate
    init = swinir.load(str(tmp_path / "a" / "model.pth")).state_dict()
    assert main(["train", "--hr", hr, "--out", str(tmp_path / "b"), "--init", str(tmp_path / "a" / "model.pth"),
                 *RUN_ARGS, "--steps", "1", "--learning-rate", "1e-6", "-q"]) == 0
    tuned = _state(tmp_path / "b" / "model.pth")
    assert tuned["config"]["upsampler"] == "pixelshuffle"
    moved = 0.0
    for name, value in tuned["params"].items():
        if value.is_floating_point() and name in init:
            moved = max(moved, float((value - init[name]).abs().max()))
    assert 0 < moved <= 1.01e-6, moved


@pytest.mark.parametrize("option, value, kind, low, high", [
    ("--noise", "5-30", "noise", 5.0, 30.0),
    ("--noise", "15", "noise", 15.0, 15.0),
    ("--jpeg", "20-40", "jpeg", 20, 40),
])
def test_train_noise_and_jpeg_from_the_command_line(tmp_path, option, value, kind, low, high):
    hr = _images(tmp_path / "hr", [(40, 44)])
    argv = ["train", "--hr", hr, "--out", str(tmp_path / "out"), *X1_ARGS, *RUN_ARGS, option, value]
    assert main([*argv, "--steps", "1", "-q"]) == 0
    recipe = _state(tmp_path / "out" / "step_00000001.pth")["trainer"]["recipe"]
    assert (recipe["degradation"], recipe["scale"], recipe["low"], recipe["high"]) == (kind, 1, low, high)
    # the degraded input is what `swinir degrade` makes of the clean patch at the drawn level
    args = build_parser("train").parse_args([*argv, "--steps", "1"])
    args.check(args)
    sampler = training.Trainer(args.options).data
    for step, index in [(1, 0), (3, 1)]:
        sample = sampler.sample(step, index)
        assert low <= sample.level <= high
        folder = tmp_path / f"patch{step}"
        imageio.write_image(str(folder / "p.png"), sample.hq)
        level = ["--sigma", repr(sample.level), "--seed", str(sample.noise_seed)] if kind == "noise" \
            else ["--quality", str(sample.level)]
        assert main(["degrade", str(folder), str(tmp_path / f"lq{step}"), "--mode", kind, *level, "-q"]) == 0
        np.testing.assert_array_equal(sample.lq, imageio.read_image(str(tmp_path / f"lq{step}" / "p.png")).pixels)
        assert not np.array_equal(sample.lq, sample.hq)


def test_train_grad_checkpoint_from_the_command_line(tmp_path, monkeypatch):
    hr = _images(tmp_path / "hr", [(40, 44)])
    calls = []
    checkpoint = torch.utils.checkpoint.checkpoint
    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint",
                        lambda *args, **kwargs: calls.append(1) or checkpoint(*args, **kwargs))
    states = {}
    for name, extra in (("plain", []), ("recomputed", ["--grad-checkpoint"])):
        calls.clear()
        assert main(["train", "--hr", hr, "--out", str(tmp_path / name), *SR_ARGS, *RUN_ARGS, "--steps", "2", "-q",
                     *extra]) == 0
        states[name] = (_state(tmp_path / name / "step_00000002.pth"), len(calls))
    (plain, plain_calls), (recomputed, recomputed_calls) = states["plain"], states["recomputed"]
    assert plain_calls == 0 and recomputed_calls == 2 * 2  # 2 Swin blocks x 2 steps, recomputed
    # the same loss and the same weights as storing the activations
    assert recomputed["trainer"]["losses"][-1]["loss"] == pytest.approx(plain["trainer"]["losses"][-1]["loss"], rel=1e-6)
    for name, value in plain["params"].items():
        torch.testing.assert_close(recomputed["params"][name], value, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
def test_train_dtype_from_the_command_line(tmp_path, dtype):
    hr = _images(tmp_path / "hr", [(40, 44)])
    with _LinearOutputDtypes() as dtypes:
        assert main(["train", "--hr", hr, "--out", str(tmp_path / "o"), *SR_ARGS, *RUN_ARGS, "--steps", "1",
                     "--dtype", dtype, "-q"]) == 0
    assert dtypes == {HALF.get(dtype, torch.float32)}, dtypes
    state = _state(tmp_path / "o" / "step_00000001.pth")
    assert state["trainer"]["recipe"]["dtype"] == dtype
    assert bool(state["trainer"]["scaler"]) == (dtype == "fp16")  # the GradScaler only for fp16
    assert all(value.dtype == torch.float32 for value in state["params"].values() if value.is_floating_point())


def test_paired_training_end_to_end(tmp_path, capsys):
    """--hr with --lr (official <name>x2 names), validated on --val with --val-lr: the scores in val.csv
    are what `swinir restore` of the --val-lr images with model.pth and `swinir eval --scale 2` give."""
    folders = {}
    for name, sizes, seed in (("hr", [(40, 44), (36, 48)], 0), ("val", [(24, 28), (20, 32)], 5)):
        folders[name] = _images(tmp_path / name, sizes, seed=seed)
        lr = tmp_path / f"{name}_lr"
        assert main(["degrade", folders[name], str(lr), "--mode", "sr", "--scale", "2", "-q"]) == 0
        for file in os.listdir(lr):
            os.rename(lr / file, lr / file.replace(".png", "x2.png"))
        folders[f"{name}_lr"] = str(lr)
    out = tmp_path / "out"
    assert main(["train", "--hr", folders["hr"], "--lr", folders["hr_lr"], "--val", folders["val"], "--val-lr",
                 folders["val_lr"], "--val-every", "2", "--out", str(out), *SR_ARGS, *RUN_ARGS, "--steps", "2",
                 "--no-plot", "-q"]) == 0
    assert _state(out / "model.pth")  # finished
    assert _state(out / "step_00000002.pth")["trainer"]["recipe"]["degradation"] == "paired"
    (row,) = _val_rows(out)
    assert main(["restore", folders["val_lr"], "-m", str(out / "model.pth"), "-o", str(tmp_path / "restored"), "-q"]) == 0
    capsys.readouterr()
    assert main(["eval", folders["val"], str(tmp_path / "restored"), "--scale", "2"]) == 0
    average = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("average"))
    psnr, ssim, psnr_y, ssim_y = map(float, average.split()[2:6])
    assert float(row["psnr"]) == pytest.approx(psnr, abs=1e-4) and float(row["psnr_y"]) == pytest.approx(psnr_y, abs=1e-4)
    assert float(row["ssim"]) == pytest.approx(ssim, abs=1e-6) and float(row["ssim_y"]) == pytest.approx(ssim_y, abs=1e-6)
    # the patches come from the --lr files: an aligned LR patch is the LR file's pixels
    args = build_parser("train").parse_args(["train", "--hr", folders["hr"], "--lr", folders["hr_lr"], "--out",
                                             str(tmp_path / "x"), *SR_ARGS, *RUN_ARGS])
    args.check(args)
    sample = training.Trainer(args.options).data.sample(1, 0)
    lr_pixels = imageio.read_image(sample.path.replace(folders["hr"], folders["hr_lr"]).replace(".png", "x2.png")).pixels
    windows = np.lib.stride_tricks.sliding_window_view(lr_pixels, (8, 8, 3))[..., 0, :, :, :]
    candidates = [np.rot90(p, k) for p in (sample.lq, sample.lq[:, ::-1]) for k in range(4)]  # undo the augmentation
    assert any((windows == candidate).all(axis=(-3, -2, -1)).any() for candidate in candidates)
