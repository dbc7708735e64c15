"""What a second newcomer met (issue 23): documented names after `import swinir`, options typed wrong
and accepted, work thrown away at the end, confusing messages, misleading timings, `swinir --version`.
Each test failed before its fix. Unwritable locations are simulated (also as root, who may write
anywhere): `os.open` with O_CREAT and `os.mkdir` under the folder raise PermissionError, as on a
read-only mount or under /sys."""

import errno
import json
import os
import re
import subprocess
import warnings

import numpy as np
import pytest
import torch

import swinir
from swinir import imageio
from swinir.commands import main
from tests.helpers import ROOT, run_python

TINY = dict(embed_dim=12, depths=[1], num_heads=[2], mlp_ratio=2.0, upscale=2, window_size=8,
            upsampler="pixelshuffle", img_size=16)
TRAIN_ARCH = ["--arch", "upscale=2", "upsampler=pixelshuffledirect", "embed_dim=12", "depths=[2]", "num_heads=[2]",
              "window_size=4", "img_size=8", "mlp_ratio=2.0", "drop_path_rate=0"]
TRAIN_RUN = ["--patch", "8", "--batch", "2", "--workers", "0", "--steps", "2", "-q"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    torch.save({"params": swinir.SwinIR(**TINY).state_dict()}, path)
    return str(path)


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "in"
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        imageio.write_image(str(folder / f"{name}.png"), rng.random((40, 40, 3), dtype=np.float32))
    return folder


@pytest.fixture
def refuse_writes(monkeypatch):
    """refuse(folder): from now on no file or folder can be created inside ``folder`` (EACCES)."""
    refused = []
    real_open, real_mkdir = os.open, os.mkdir

    def inside(path) -> bool:
        path = os.path.abspath(os.fsdecode(path))
        return any(path.startswith(folder + os.sep) for folder in refused)

    def denied(path):
        return PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))

    def guarded_open(path, flags, mode=0o777, *, dir_fd=None):
        if flags & os.O_CREAT and inside(path):
            raise denied(path)
        return real_open(path, flags, mode, dir_fd=dir_fd)

    def guarded_mkdir(path, mode=0o777, *, dir_fd=None):
        if inside(path):
            raise denied(path)
        return real_mkdir(path, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", guarded_open)
    monkeypatch.setattr(os, "mkdir", guarded_mkdir)

    def refuse(folder):
        os.makedirs(folder, exist_ok=True)
        refused.append(os.path.abspath(folder))
        return folder

    return refuse


@pytest.fixture
def no_model_runs(monkeypatch):
    """Fails the test if a SwinIR forward runs (work that the checks should have prevented)."""

    def forbidden(self, x):
        raise AssertionError("the model ran before the output location was checked")

    monkeypatch.setattr(swinir.SwinIR, "forward", forbidden)


def _error_lines(capsys) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if "error:" in line]


def _usage_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith(f"usage: swinir {command} "), err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and lines[0].startswith(f"swinir {command}: error: "), err
    return lines[0]


# --- 2. every documented dotted name works after `import swinir` -------------------------------------


def _documented_names() -> list[str]:
    """`swinir.x.y` names in the README, docs/ and the package docstring (not `python -m swinir.x` targets)."""
    texts = []
    for path in [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "swinir", "__init__.py")]:
        texts.append(open(path).read())
    docs = os.path.join(ROOT, "docs")
    for folder, _, files in os.walk(docs):
        texts += [open(os.path.join(folder, f)).read() for f in files if f.endswith(".md")]
    names = set()
    for text in texts:
        for match in re.finditer(r"(?<![\w.\-/])(-m\s+)?(swinir(?:\.[A-Za-z_]\w*)+)", text):
            if not match.group(1):
                names.add(match.group(2).rstrip("."))
    return sorted(names)


def test_documented_dotted_names_work_after_import_swinir():
    names = _documented_names()
    assert {"swinir.train.train", "swinir.load", "swinir.accelerate"} <= set(names)
    done = run_python(f"""
        import json, sys
        import swinir
        torch_after_import = "torch" in sys.modules
        missing = []
        for name in {names!r}:
            value = swinir
            try:
                for part in name.split(".")[1:]:
                    value = getattr(value, part)
            except AttributeError as error:
                missing.append(f"{{name}}: {{error}}")
        print(json.dumps([torch_after_import, missing]))
    """)
    torch_after_import, missing = json.loads(done.stdout.splitlines()[-1])
    assert not torch_after_import, "import swinir alone imports torch"
    assert not missing, missing


def test_submodules_are_attributes_after_a_bare_import():
    done = run_python("""
        import swinir
        print(swinir.train.TrainOptions.__name__, swinir.export.check_onnx.__name__,
              swinir.checkpoint.CheckpointError.__name__, swinir.tiling.tile_for_memory.__name__)
    """)
    assert done.stdout.split() == ["TrainOptions", "check_onnx", "CheckpointError", "tile_for_memory"], done.stderr


# --- 3, 4, 5. refused as they should be ---------------------------------------------------------------


@pytest.mark.parametrize("item,expected", [("embed_dm=30", "did you mean embed_dim?"),
                                           ("bogus=3", "bogus=3: not a SwinIR constructor argument")])
def test_train_arch_unknown_key_is_a_usage_error_naming_the_closest(tmp_path, capsys, item, expected):
    argv = ["train", "--hr", str(tmp_path / "hr"), "--out", str(tmp_path / "o"), "--arch", "upscale=2", item]
    assert main(argv) == 2
    line = _usage_error(capsys, "train")
    assert expected in line, line
    assert not (tmp_path / "o").exists()


def test_train_arch_unknown_key_from_python(tmp_path):
    with pytest.raises(swinir.train.TrainError, match="did you mean window_size"):
        swinir.train.train(out=str(tmp_path / "o"), hr=str(tmp_path), arch={"windw_size": 8})


@pytest.mark.parametrize("value", ["7", "0.5", "256"])
def test_img_range_other_than_1_or_255_is_refused(checkpoint, images, tmp_path, capsys, value):
    assert main(["restore", str(images), "-m", checkpoint, "-o", str(tmp_path / "o"), "--img-range", value]) == 2
    line = _usage_error(capsys, "restore")
    assert "argument --img-range: expected 1 or 255" in line
    assert not (tmp_path / "o").exists()


def test_img_range_1_and_255_are_accepted():
    from swinir.commands.arguments import img_range

    assert (img_range("1"), img_range("255"), img_range("255.0")) == (1.0, 255.0, 255.0)


def test_a_directory_as_checkpoint_says_it_is_a_directory(images, tmp_path, capsys):
    folder = tmp_path / "somedir.pth"
    folder.mkdir()
    assert main(["restore", str(images), "-m", str(folder), "-o", str(tmp_path / "o"), "-q"]) == 1
    (line,) = _error_lines(capsys)
    assert f"{folder}: is a directory" in line and "not found" not in line
    assert main(["export", str(folder), "-o", str(tmp_path / "m.onnx")]) == 1
    (line,) = _error_lines(capsys)
    assert "is a directory" in line
    assert main(["train", "--init", str(folder), "--hr", str(images), "--out", str(tmp_path / "t"), *TRAIN_RUN]) == 1
    (line,) = _error_lines(capsys)
    assert f"--init {folder}: is a directory" in line


# --- 6, 7, 8. the output location is checked before the work -------------------------------------------


def test_train_out_that_refuses_files_stops_before_the_first_step(images, tmp_path, capsys, refuse_writes,
                                                                  monkeypatch):
    from swinir.train import Trainer

    def no_step(self, lq, hq):
        raise AssertionError("a training step ran before --out was checked")

    monkeypatch.setattr(Trainer, "_train_step", no_step)
    locked = refuse_writes(tmp_path / "locked")
    for out in (locked, locked / "run"):
        assert main(["train", "--hr", str(images), "--out", str(out), *TRAIN_ARCH, *TRAIN_RUN]) == 1
        (line,) = _error_lines(capsys)
        assert f"--out {out}: cannot write there (Permission denied" in line, line
        assert "earlier checkpoints" not in line
    assert os.listdir(locked) == []


def test_train_out_that_is_a_file_is_a_usage_error(images, tmp_path, capsys):
    (tmp_path / "taken").write_text("not a folder")
    assert main(["train", "--hr", str(images), "--out", str(tmp_path / "taken"), *TRAIN_ARCH, *TRAIN_RUN]) == 2
    line = _usage_error(capsys, "train")
    assert "--out" in line and "exists and is not a folder" in line and "File exists" not in line


def test_export_checks_the_destination_before_exporting(checkpoint, tmp_path, capsys, refuse_writes, monkeypatch):
    import swinir.export

    def forbidden(*args, **kwargs):
        raise AssertionError("exported before the destination was checked")

    monkeypatch.setattr(swinir.export, "export_onnx", forbidden)
    monkeypatch.setattr(swinir, "load", forbidden)
    locked = refuse_writes(tmp_path / "ro")
    target = locked / "model.onnx"
    assert main(["export", checkpoint, "-o", str(target)]) == 1
    (line,) = _error_lines(capsys)
    assert line.startswith(f"swinir: error: {target}: cannot write there (Permission denied"), line
    assert ".tmp" not in line and "write-test" not in line
    (tmp_path / "file").write_text("x")
    assert main(["export", checkpoint, "-o", str(tmp_path / "file" / "model.onnx")]) == 2
    assert "is a file" in _usage_error(capsys, "export")


def test_export_onnx_from_python_checks_the_destination_first(tmp_path, refuse_writes, monkeypatch):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    import swinir.export

    def forbidden(*args, **kwargs):
        raise AssertionError("traced before the destination was checked")

    monkeypatch.setattr(swinir.export, "_trace", forbidden)
    locked = refuse_writes(tmp_path / "ro")
    with pytest.raises(PermissionError) as caught:
        swinir.export_onnx(swinir.SwinIR(**TINY).eval(), locked / "m.onnx")
    assert caught.value.filename == str(locked)


def test_restore_output_that_refuses_files_is_found_before_any_image(checkpoint, images, tmp_path, capsys,
                                                                     refuse_writes, no_model_runs):
    locked = refuse_writes(tmp_path / "sys")
    for output in (locked, locked / "out"):
        assert main(["restore", str(images), "-m", checkpoint, "-o", str(output), "-q"]) == 1
        (line,) = _error_lines(capsys)
        assert f"{output}: cannot write there (Permission denied" in line, line
    assert os.listdir(locked) == []


def test_the_write_probe_leaves_nothing_behind(tmp_path):
    from swinir import files

    files.check_writable_folder(str(tmp_path))
    files.check_writable_folder(str(tmp_path / "new" / "deeper"))
    assert os.listdir(tmp_path) == []
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError):
        files.check_writable_folder(str(tmp_path / "f" / "sub"))


# --- 9. restoring into the input folder --------------------------------------------------------------


def test_restore_into_an_input_folder_is_refused(checkpoint, images, capsys, no_model_runs):
    before = sorted(os.listdir(images))
    for output in (images, images / "." ):
        assert main(["restore", str(images), "-m", checkpoint, "-o", str(output), "-q"]) == 2
        line = _usage_error(capsys, "restore")
        assert "argument -o/--output" in line and "is the input folder" in line and "choose another folder" in line
    assert sorted(os.listdir(images)) == before


def test_restore_help_says_the_output_may_not_be_an_input_folder(capsys):
    assert main(["restore", "--help"]) == 0
    assert "not an input folder" in " ".join(capsys.readouterr().out.split())


# --- 10. tile option messages ------------------------------------------------------------------------


def test_tile_smaller_than_the_window_is_said_first(checkpoint, images, tmp_path, capsys, no_model_runs):
    assert main(["restore", str(images), "-m", checkpoint, "-o", str(tmp_path / "o"), "--tile", "4", "-q"]) == 2
    line = _usage_error(capsys, "restore")
    assert "argument --tile: must be at least the window size" in line and "window size is 8" in line
    assert "overlap" not in line


def test_tile_rounding_down_is_said(checkpoint, images, tmp_path, capsys, no_model_runs):
    assert main(["restore", str(images), "-m", checkpoint, "-o", str(tmp_path / "o"), "--tile", "12",
                 "--tile-overlap", "4", "-q"]) == 2
    line = _usage_error(capsys, "restore")
    assert "--tile 12 rounds down to 8 (tiles are multiples of the window size 8)" in line
    assert "--tile 16 or more" in line and "--tile-overlap 0 or less" not in line


def test_tile_overlap_zero_is_explained(checkpoint, images, tmp_path, capsys):
    assert main(["restore", str(images), "-m", checkpoint, "-o", str(tmp_path / "o"), "--tile", "16",
                 "--tile-overlap", "0"]) == 2
    line = _usage_error(capsys, "restore")
    assert "argument --tile-overlap: expected at least 1, got 0" in line and "seam" in line


def test_tile_option_order_without_a_model():
    from swinir.commands.restore import tile_problem

    assert tile_problem(4, 32, 8, overlap_given=False).startswith("argument --tile: must be at least")
    assert "(the default)" in tile_problem(16, 32, 8, overlap_given=False)
    assert tile_problem(16, 4, 8, overlap_given=True) is None
    assert tile_problem(40, 32, 8, overlap_given=True) is None


# --- 14. eval --border too large ---------------------------------------------------------------------


def test_eval_border_too_large_is_one_line_without_a_numpy_warning(tmp_path, capsys):
    rng = np.random.default_rng(0)
    pixels = rng.random((24, 24, 3), dtype=np.float32)
    imageio.write_image(str(tmp_path / "hr" / "a.png"), pixels)
    imageio.write_image(str(tmp_path / "sr" / "a_SwinIR.png"), pixels)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["eval", str(tmp_path / "hr"), str(tmp_path / "sr"), "--border", "10000"]) == 1
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]
    (line,) = _error_lines(capsys)
    assert "border 10000 crops away all of a 24x24 image" in line


# --- 15, 16. export: quiet dependencies, timings with their spread ----------------------------------


@pytest.mark.slow  # exports a model (ONNX): seconds each
def test_export_silences_what_is_not_ours(checkpoint, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    done = run_python(f"""
        import sys
        from swinir.commands import main
        sys.exit(main(["export", {checkpoint!r}, "-o", {str(tmp_path / "m.onnx")!r}]))
    """, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "torchvision" not in done.stderr and "Warning" not in done.stderr, done.stderr
    assert "m.onnx" in done.stderr  # our own note still shows


@pytest.mark.slow  # exports a model (ONNX): seconds each
def test_export_verify_times_as_swinir_bench_and_warns_on_noise(checkpoint, tmp_path, capsys, monkeypatch):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from swinir import benchmark

    calls = []
    real = benchmark.time_alternating

    def noisy(runs, repeats, **kwargs):
        times, results = real(runs, repeats, **kwargs)
        calls.append(repeats)
        # a loaded machine: one run of each path took 50 times longer
        return {name: [1e-3 * (50 if i == 0 else 1) for i in range(len(values))] for name, values in times.items()}, results

    monkeypatch.setattr(benchmark, "time_alternating", noisy)
    assert main(["export", checkpoint, "-o", str(tmp_path / "m.onnx"), "--verify", "-q"]) == 0
    out = capsys.readouterr().out
    assert calls and min(calls) >= 5  # the shared helper, with enough runs for a median
    rows = [line for line in out.splitlines() if "max abs error" in line]
    assert len(rows) == 3 and all("1.0 ms (1.0..50.0)" in row for row in rows), out
    assert "warning: the runs vary too much for the" in out


def test_verify_lines_on_a_quiet_machine_have_no_warning():
    from swinir import benchmark
    from swinir.commands.export import verify_lines

    row = dict(size=(8, 8), max_abs_error=1e-7, onnx_ms=1.0, torch_ms=2.0, onnx_ms_range=(0.9, 1.1),
               torch_ms_range=(1.9, 2.1), ratio_range=(0.5, 0.45, 0.55), repeats=7)
    lines = verify_lines([row], benchmark)
    assert len(lines) == 1 and "ONNX Runtime 1.0 ms (0.9..1.1)" in lines[0] and "0.50x (0.45x..0.55x" in lines[0]


# --- 17. swinir --version ----------------------------------------------------------------------------


def test_version_without_torch():
    done = run_python("""
        import json, sys
        from swinir.commands import main
        code = main(["--version"])
        print(json.dumps([code, "torch" in sys.modules]))
    """)
    code, torch_loaded = json.loads(done.stdout.splitlines()[-1])
    assert code == 0 and not torch_loaded
    from importlib import metadata

    try:
        expected = metadata.version("swinir-kernels")
    except metadata.PackageNotFoundError:
        expected = swinir.__version__
    assert done.stdout.splitlines()[0] == f"swinir {expected}"


def test_version_falls_back_to_the_package(monkeypatch):
    from importlib import metadata

    from swinir import commands

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    assert commands.version() == swinir.__version__


def test_a_virtual_environment_in_the_checkout_is_ignored():
    """Item 17: `python -m venv .venv` in the checkout (as the install instructions allow) leaves git clean."""
    done = subprocess.run(["git", "check-ignore", "-q", ".venv/bin/python"], cwd=ROOT, capture_output=True)
    if done.returncode == 128:
        pytest.skip("not a git checkout")
    assert done.returncode == 0, "'.venv/' is not in .gitignore"
