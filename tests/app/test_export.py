"""swinir.export: ONNX graphs run by ONNX Runtime at sizes other than the traced one, for every
released task's structure and for accelerated official models; torch.export with the fused ops;
clear errors. Tiny models (depth 2: one unshifted and one shifted block), random weights."""

import os
import stat

import pytest
import torch
import torch.nn as nn
from tests.support.official_swinir import SwinIR as OfficialSwinIR
from tests.helpers import randomize

import swinir
from swinir.commands import main
from swinir.export import ExportError, check_onnx, export_onnx, export_program

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

TINY = dict(embed_dim=12, depths=[2], num_heads=[2], img_size=16)
# Traced at 2 x (2ws+3) x (3ws+1); checked at other sizes: not window multiples and non-square, one
# window exactly, a single window row, and smaller than the padding (replicate instead of reflect).
SIZES = [(13, 21), (8, 8), (5, 30), (3, 2)]
FP32_TOLERANCE = 1e-4


def tiny(preset: str, **overrides) -> nn.Module:
    model = swinir.build(preset, **{**TINY, **overrides}).eval()
    randomize(model)
    return model


def assert_matches(path, model, sizes=SIZES, batch=1, tolerance=FP32_TOLERANCE):
    rows = check_onnx(path, model, sizes, batch=batch)
    for row in rows:
        assert row["max_abs_error"] <= tolerance, row
    return rows


def shape_of(value) -> list:
    return [dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim]


def test_cli_export_of_a_checkpoint_file(tmp_path, capsys):
    model = tiny("classical_sr_x2")  # pixelshuffle tail (classical SR)
    checkpoint, out = tmp_path / "tiny.pth", tmp_path / "out" / "tiny.onnx"
    torch.save({"params": model.state_dict()}, checkpoint)
    assert main(["export", str(checkpoint), "-o", str(out), "-q"]) == 0

    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    assert shape_of(proto.graph.input[0]) == ["batch", 3, "height", "width"]
    assert shape_of(proto.graph.output[0]) == ["batch", 3, "2*height", "2*width"]
    assert all(node.domain in ("", "ai.onnx") for node in proto.graph.node), "custom operators in the graph"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o666 & ~umask
    assert_matches(out, model)
    assert_matches(out, model, sizes=[(11, 9)], batch=3)

    before = out.read_bytes()
    capsys.readouterr()
    assert main(["export", str(checkpoint), "-o", str(out)]) == 1
    assert "already exists (pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert sorted(os.listdir(out.parent)) == ["tiny.onnx"]  # no temporary file left behind


@pytest.mark.parametrize(
    "preset, overrides",
    [
        pytest.param("lightweight_sr_x3", {}, id="lightweight-pixelshuffledirect-x3"),
        pytest.param("real_sr_x4", dict(resi_connection="3conv"), id="real-nearest+conv-x4-3conv"),
        pytest.param("gray_jpeg_10", dict(img_size=14), id="gray-jpeg-ws7-range255"),
    ],
)
def test_onnx_matches_pytorch_at_other_sizes(tmp_path, preset, overrides):
    model = tiny(preset, **overrides)
    path = export_onnx(model, tmp_path / "model.onnx", opset=18)
    assert_matches(path, model)


def test_accelerated_official_model(tmp_path):
    config = dict(TINY, window_size=8, upsampler="", upscale=1)  # colour denoising's structure
    official = OfficialSwinIR(**config).eval()
    randomize(official)
    with pytest.raises(ExportError, match="call swinir.accelerate"):
        export_onnx(official, tmp_path / "official.onnx")
    swinir.accelerate(official)
    path = export_onnx(official, tmp_path / "official.onnx")
    # Its own forward pads with 'reflect' only (as the official code), so no size below the padding.
    assert_matches(path, official, sizes=SIZES[:3])


def test_fp16_graph(tmp_path):
    model = tiny("lightweight_sr_x2")
    path = export_onnx(model, tmp_path / "fp16.onnx", dtype="fp16")
    proto = onnx.load(path)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    rows = check_onnx(path, model, SIZES[:3])  # against the fp32 model
    scale = max(model(torch.rand(1, 3, 13, 21)).abs().max().item(), 1.0)
    for row in rows:
        assert row["max_abs_error"] <= 2e-2 * scale, (row, scale)
        assert row["max_abs_error"] > 0  # it really ran in fp16


def test_static_size(tmp_path):
    model = tiny("classical_sr_x2")
    path = export_onnx(model, tmp_path / "static.onnx", size=(12, 20))
    proto = onnx.load(path)
    assert shape_of(proto.graph.input[0]) == [1, 3, 12, 20]
    assert shape_of(proto.graph.output[0]) == [1, 3, 24, 40]
    assert_matches(path, model, sizes=[(12, 20)])
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        check_onnx(path, model, [(13, 21)])


def test_torch_export_keeps_the_fused_ops_and_runs_at_other_sizes():
    import swinir_kernels

    model = tiny("classical_sr_x2")
    if swinir_kernels.explain_backend("shifted_window_attention", torch.rand(1, 8, 8, 36)).split(":")[0] != "cpu":
        pytest.skip("the C++ extension is not built")
    program = export_program(model)
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert "swinir_kernels.shifted_window_attention.default" in targets
    assert "swinir_kernels.pixel_shuffle.default" in targets
    exported = program.module()
    for shape in [(1, 3, 13, 21), (2, 3, 16, 8), (1, 3, 5, 30)]:
        x = torch.rand(shape)
        with torch.no_grad():
            torch.testing.assert_close(exported(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not os.environ.get("SWINIR_TEST_AOTI"), reason="AOTInductor compiles C++ for minutes (~7 on 2 busy cores); set SWINIR_TEST_AOTI=1")
def test_aoti_package_runs_the_fused_ops_at_two_sizes(tmp_path):
    model = tiny("classical_sr_x2")
    package = torch._inductor.aoti_compile_and_package(export_program(model), package_path=str(tmp_path / "m.pt2"))
    compiled = torch._inductor.aoti_load_package(package)
    for shape in [(1, 3, 13, 21), (2, 3, 16, 8)]:
        x = torch.rand(shape)
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-5)


def test_errors_say_what_and_why(tmp_path):
    model = tiny("classical_sr_x2")
    path = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match="opset: expected 18..23, got 17"):
        export_onnx(model, path, opset=17)
    with pytest.raises(ExportError, match="dtype: expected .* got 'bf16'"):
        export_onnx(model, path, dtype="bf16")
    with pytest.raises(ExportError, match="size: expected"):
        export_onnx(model, path, size=(0, 8))
    with pytest.raises(ExportError, match="size: expected"):
        export_program(model, size=(8,))
    with pytest.raises(ExportError, match="expected a swinir.SwinIR or an official-structure SwinIR"):
        export_onnx(nn.Conv2d(3, 3, 3), path)
    with pytest.raises(ExportError, match="training mode"):
        export_onnx(model.train(), path)
    path.write_bytes(b"keep")
    with pytest.raises(FileExistsError, match="already exists"):
        export_onnx(model.eval(), path)
    assert path.read_bytes() == b"keep"


def test_cli_usage_errors(tmp_path, capsys):
    checkpoint = tmp_path / "tiny.pth"
    torch.save(tiny("classical_sr_x2").state_dict(), checkpoint)
    assert main(["export", str(checkpoint), "-o", str(tmp_path / "m.onnx"), "--opset", "12"]) == 2
    assert "argument --opset: expected 18..23, got 12" in capsys.readouterr().err
    assert main(["export", str(checkpoint), "-o", str(tmp_path / "m.pt")]) == 2
    assert "expected a .onnx file name" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing.pth"), "-o", str(tmp_path / "m.onnx")]) == 1
    assert not (tmp_path / "m.onnx").exists()
