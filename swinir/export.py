"""Deploying SwinIR outside eager PyTorch: ONNX graphs of standard operators, and ``torch.export``
programs that keep our fused operators, both with dynamic batch, height and width.

* :func:`export_onnx` traces the model's math through the ``reference`` backend (plain PyTorch, no
  custom operators) with ``torch.export`` and symbolic sizes, then converts it with the
  ``torch.onnx`` (dynamo) exporter. Because the sizes are symbolic while tracing, the padding to the
  window multiple, the shift mask, the window partition and the final crop are all computed inside
  the graph from the input's shape (official issue #145: the TorchScript exporter bakes the example's
  Python integers into the graph instead, and our validation refuses its tensor-valued sizes).
* :func:`export_program` keeps the fused ops (``torch.ops.swinir_kernels.*``) as themselves, through
  their fake kernels, for AOTInductor and other torch-native deployment.
* :func:`check_onnx` runs a graph with ONNX Runtime (CPU) next to the PyTorch model.

Models: :class:`swinir.SwinIR` (any released task, any checkpoint :func:`swinir.load` takes) and an
official-structure SwinIR (official code, KAIR, BasicSR, spandrel) patched by :func:`swinir.accelerate`.
The ONNX tools are the optional dependency ``pip install swinir-kernels[onnx]``.
"""

import contextlib
import copy
import os
import re
import statistics

import torch
import torch.nn as nn

import swinir_kernels

from . import benchmark, files
from .errors import first_line
from .export_formats import DEFAULT_OPSET, DTYPE_NAMES, ONNX_OPSETS
from .fusing import _fused_official_forward, is_swin_block
from .model import SwinIR

__all__ = ["ExportError", "ONNX_OPSETS", "DTYPES", "export_onnx", "export_program", "check_onnx", "example_input"]

# The dynamo exporter's operator library targets opset 18 and later (LayerNormalization needs 17;
# an older opset would go through ONNX's version converter, which does not handle these graphs).
DTYPES = {name: getattr(torch, dtype) for name, dtype in DTYPE_NAMES.items()}
INPUT_NAME, OUTPUT_NAME = "input", "output"
DIM_NAMES = ("batch", "height", "width")  # names of the input's dynamic axes 0, 2, 3 in the ONNX graph


class ExportError(ValueError):
    """What cannot be exported, and why."""


# ---------------------------------------------------------------------------------------------------
# What the model is


def _describe(model: nn.Module) -> tuple[int, int]:
    """(in_chans, window_size) of a model we can export; ExportError for anything else."""
    if not isinstance(model, nn.Module):
        raise ExportError(f"model: expected a torch.nn.Module (a SwinIR), got {type(model).__name__}")
    if isinstance(model, SwinIR):
        return model.in_chans, model.window_size
    blocks = [m for m in model.modules() if is_swin_block(m)]
    conv_first = getattr(model, "conv_first", None)
    if not blocks or not isinstance(conv_first, nn.Conv2d) or not isinstance(getattr(model, "window_size", None), int):
        raise ExportError(
            f"model: expected a swinir.SwinIR or an official-structure SwinIR (official code, KAIR, BasicSR, "
            f"spandrel: conv_first, window_size and SwinTransformerBlocks), got {type(model).__name__}"
        )
    unpatched = [m for m in blocks if getattr(m.forward, "__func__", None) is not _fused_official_forward]
    if unpatched:
        raise ExportError(
            f"model: {len(unpatched)} of its {len(blocks)} Swin blocks run the official forward, which rebuilds "
            "the shift mask from Python integers and derives the batch by float division, so any export is "
            "frozen to the example's size (official issue #145); call swinir.accelerate(model) first"
        )
    return conv_first.in_channels, model.window_size


def example_input(model: nn.Module, dtype: torch.dtype = torch.float32, size: tuple[int, int] | None = None) -> torch.Tensor:
    """The input traced by the exports: batch 2 and a non-square size that is not a window multiple
    (2ws+3 x 3ws+1, two and more windows per axis) so that no size is specialised, or (1, C, *size)
    for a static export. Values in [0, 1]."""
    in_chans, window_size = _describe(model)
    device = next(model.parameters()).device
    shape = (2, in_chans, 2 * window_size + 3, 3 * window_size + 1) if size is None else (1, in_chans, *size)
    return torch.rand(shape, dtype=dtype, device=device)


def _dynamic_shapes(static: bool):
    dynamic = torch.export.Dim.DYNAMIC
    return None if static else {"x": {0: dynamic, 2: dynamic, 3: dynamic}}


@contextlib.contextmanager
def _reference_backend(model: nn.Module):
    """Inside: every op of the model runs its plain-PyTorch reference (our SwinIR modules' own
    ``backend`` choice is lifted for the duration)."""
    ours = [m for m in model.modules() if isinstance(m, SwinIR)]
    saved = [m.backend for m in ours]
    try:
        for module in ours:
            module.backend = "auto"
        with swinir_kernels.use_backend("reference"):
            yield
    finally:
        for module, backend in zip(ours, saved):
            module.backend = backend


class _Entry(nn.Module):
    """A one-argument forward named ``x``, whatever the wrapped model calls its argument."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _trace(model: nn.Module, example: torch.Tensor, static: bool) -> torch.export.ExportedProgram:
    if model.training:
        raise ExportError("model: in training mode (dropout and drop-path are random there); call model.eval() first")
    try:
        return torch.export.export(_Entry(model), (example,), dynamic_shapes=_dynamic_shapes(static), strict=False)
    except Exception as error:  # noqa: BLE001  (torch.export raises many kinds; say which step failed)
        raise ExportError(f"torch.export failed: {type(error).__name__}: {first_line(error, 300)}") from error


# ---------------------------------------------------------------------------------------------------
# torch.export with the fused ops


def export_program(model: nn.Module, *, size: tuple[int, int] | None = None) -> torch.export.ExportedProgram:
    """``torch.export`` of `model` with our fused ops kept as ``torch.ops.swinir_kernels.*`` nodes
    (traced through their fake kernels), dynamic batch, height and width unless `size` fixes them.

    The ops are those the model's backend picks now (the C++ kernels for a CPU model with ``_C``
    built). The program runs with ``program.module()(x)``, saves with ``torch.export.save`` and
    compiles ahead of time with ``torch._inductor.aoti_compile_and_package`` (the package then needs
    ``import swinir_kernels`` at load time, which registers the ops)."""
    _check_size(size)
    example = example_input(model, next(model.parameters()).dtype, size)
    return _trace(model, example, static=size is not None)


# ---------------------------------------------------------------------------------------------------
# ONNX


def _onnx_modules():
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch.onnx's dynamo exporter needs it)
    except ImportError as error:
        raise ExportError(f"ONNX export needs the onnx extra: pip install 'swinir-kernels[onnx]' ({error})") from None
    return onnx


def _check_options(dtype: str, opset: int, size) -> None:
    if dtype not in DTYPES:
        raise ExportError(
            f"dtype: expected one of {sorted(DTYPES)}, got {dtype!r} (bf16 is not offered: ONNX Runtime's CPU and "
            "CUDA providers lack bf16 kernels for most of SwinIR's operators)"
        )
    if not isinstance(opset, int) or opset not in ONNX_OPSETS:
        raise ExportError(
            f"opset: expected {ONNX_OPSETS.start}..{ONNX_OPSETS.stop - 1}, got {opset!r} (the torch.onnx exporter "
            "writes opset 18 and later; older opsets lack what the graph needs, e.g. LayerNormalization)"
        )
    _check_size(size)


def _check_size(size) -> None:
    if size is not None and (len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size)):
        raise ExportError(f"size: expected (height, width) positive ints or None, got {size!r}")


def _rename_dims(proto, program) -> None:
    """Names the graph's symbolic sizes after the input's axes: output ``(batch, C, 2*height, 2*width)``
    rather than the tracer's ``s77``-style symbols."""
    input_shape = next(p for p in program.graph_signature.input_specs if p.kind.name == "USER_INPUT")
    placeholder = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == input_shape.arg.name)
    symbols = {}
    for axis, name in zip((0, 2, 3), DIM_NAMES):
        size = placeholder.meta["val"].shape[axis]
        if isinstance(size, torch.SymInt):
            symbols[str(size.node.expr)] = name
    if not symbols:
        return
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, symbols)) + r")\b")
    values = list(proto.graph.input) + list(proto.graph.output) + list(proto.graph.value_info)
    for value in values:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_param = pattern.sub(lambda match: symbols[match.group(1)], dim.dim_param)


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    dtype: str = "fp32",
    opset: int = DEFAULT_OPSET,
    size: tuple[int, int] | None = None,
    overwrite: bool = False,
) -> str:
    """Writes `model` as an ONNX graph of standard operators to `path` (atomically) and returns the path.

    Input ``input`` (batch, C, height, width) in [0, 1], output ``output`` (batch, C, height*scale,
    width*scale), both in `dtype` ('fp32' or 'fp16'; fp16 keeps the model's fp32 residual stream and
    LayerNorms, as :class:`swinir.SwinIR` does with ``.half()``). Batch, height and width are dynamic
    (any size >= 1) unless `size` = (height, width) fixes them (batch 1). The graph passes
    ``onnx.checker`` (full check) before it is written. `model` itself is not changed.
    Raises :class:`ExportError` for what cannot be exported, FileExistsError if `path` exists and not
    `overwrite`, OSError (naming `path`'s folder) when nothing can be written there: both found before
    the export starts.
    """
    onnx = _onnx_modules()
    _check_options(dtype, opset, size)
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path}: already exists (pass overwrite=True / --overwrite to replace it)")
    files.check_writable_folder(os.path.dirname(os.path.abspath(path)))
    _describe(model)
    if dtype == "fp16":
        model = copy.deepcopy(model).half()
    example = example_input(model, DTYPES[dtype], size)
    with _reference_backend(model):
        program = _trace(model, example, static=size is not None)
    try:
        onnx_program = torch.onnx.export(
            program, dynamo=True, opset_version=opset, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            external_data=False, verbose=False,
        )  # fmt: skip
    except Exception as error:  # noqa: BLE001
        raise ExportError(f"ONNX conversion failed: {type(error).__name__}: {first_line(error, 300)}") from error
    proto = onnx_program.model_proto
    _rename_dims(proto, program)
    proto.producer_name = "swinir-kernels"
    in_chans, window_size = _describe(model)
    metadata = {"in_chans": in_chans, "window_size": window_size, "dtype": dtype}
    if isinstance(model, SwinIR):
        metadata.update(scale=model.upscale, config=repr({k: v for k, v in model.config.items() if k != "backend"}))
    onnx.helper.set_model_props(proto, {key: str(value) for key, value in metadata.items()})
    onnx.checker.check_model(proto, full_check=True)
    payload = proto.SerializeToString()
    if len(payload) >= 2**31:
        raise ExportError(f"model: {len(payload) / 2**30:.1f} GiB of weights exceed ONNX's 2 GiB protobuf limit")
    try:
        files.atomic_write_bytes(path, payload, overwrite=overwrite)
    except FileExistsError:
        raise FileExistsError(f"{path}: already exists (pass overwrite=True / --overwrite to replace it)") from None
    return path


def check_onnx(path: str | os.PathLike, model: nn.Module, sizes, *, batch: int = 1, repeats: int = 1, seed: int = 0) -> list[dict]:
    """Runs the graph at `path` with ONNX Runtime (CPU provider) and `model` (its own backend, fp32
    input) on the same random inputs, one per (height, width) in `sizes`. Returns one dict per size:
    ``size``, ``max_abs_error`` (float32 comparison), ``onnx_ms`` and ``torch_ms`` (median
    milliseconds per image of `repeats` timed runs after one warm-up, the two paths in alternation:
    :func:`swinir.benchmark.time_alternating`, as ``swinir bench``), ``onnx_ms_range`` and
    ``torch_ms_range`` (fastest and slowest run) and ``ratio_range`` (:func:`swinir.benchmark.ratio_range`
    of ONNX Runtime over PyTorch: median, lowest, highest)."""
    try:
        import onnxruntime
    except ImportError as error:
        raise ExportError(f"checking needs the onnx extra: pip install 'swinir-kernels[onnx]' ({error})") from None
    session = onnxruntime.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    input_type = session.get_inputs()[0].type
    np_dtype = {"tensor(float)": "float32", "tensor(float16)": "float16"}[input_type]
    in_chans, _ = _describe(model)
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for height, width in sizes:
        x = torch.rand(batch, in_chans, height, width, generator=generator)
        feed = {INPUT_NAME: x.numpy().astype(np_dtype)}
        device = next(model.parameters()).device
        with torch.inference_mode():
            runs = {"onnx": lambda: session.run(None, feed)[0], "torch": lambda: model(x.to(device)).cpu()}
            times, results = benchmark.time_alternating(runs, repeats)
        error = (torch.from_numpy(results["onnx"]).float() - results["torch"].float()).abs().max().item()
        per_image = {name: [1e3 * t / batch for t in values] for name, values in times.items()}
        rows.append(dict(
            size=(height, width), max_abs_error=error,
            onnx_ms=statistics.median(per_image["onnx"]), torch_ms=statistics.median(per_image["torch"]),
            onnx_ms_range=(min(per_image["onnx"]), max(per_image["onnx"])),
            torch_ms_range=(min(per_image["torch"]), max(per_image["torch"])),
            ratio_range=benchmark.ratio_range(times["onnx"], times["torch"]), repeats=max(1, repeats),
        ))  # fmt: skip
    return rows
