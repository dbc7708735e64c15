"""A compact SwinIR on the fused ops of :mod:`swinir_kernels`: drop-in for the official checkpoints
(same constructor, module tree and state-dict keys), any input size, fp16-safe, trainable.

    model = swinir.load("001_classicalSR_DF2K_s64w8_SwinIR-M_x4.pth")   # hyper-parameters inferred
    model = swinir.build("classical_sr_x4")                               # random weights
    swinir.accelerate(official_model)                                     # fuse an existing model's blocks
    swinir.export_onnx(model, "model.onnx")                               # ONNX, dynamic image size
"""

from .accelerate import accelerate
from .checkpoint import infer_config, load, unwrap_state_dict
from .export import export_onnx, export_program
from .model import SwinIR
from .presets import PRESETS, Preset, build
from .training import charbonnier_loss, l1_loss

__all__ = [
    "PRESETS",
    "Preset",
    "SwinIR",
    "accelerate",
    "build",
    "charbonnier_loss",
    "export_onnx",
    "export_program",
    "infer_config",
    "l1_loss",
    "load",
    "unwrap_state_dict",
]
