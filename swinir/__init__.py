"""A compact SwinIR on the fused ops of :mod:`swinir_kernels`: drop-in for the official checkpoints
(same constructor, module tree and state-dict keys), any input size, fp16-safe, trainable.

    model = swinir.load("001_classicalSR_DF2K_s64w8_SwinIR-M_x4.pth")   # hyper-parameters inferred
    model = swinir.load("classical_sr_x4")                                # a named checkpoint, downloaded once
    model = swinir.build("classical_sr_x4")                               # random weights
    swinir.accelerate(official_model)                                     # fuse an existing model's blocks
    swinir.export_onnx(model, "model.onnx")                               # ONNX, dynamic image size
    swinir.train.train(out="runs/x2", hr="photos", init="classical_sr_x2", steps=20000)

The names below and the submodules (``swinir.train``, ``swinir.export``, ``swinir.checkpoint``,
``swinir.tiling``, ...) are imported on first use (PEP 562), so that ``import swinir`` and
``swinir --help`` do not wait for torch.
"""

import importlib

__version__ = "0.1.0"

# public name -> the submodule that defines it
_EXPORTS = {
    "accelerate": "fusing",
    "infer_config": "checkpoint",
    "load": "checkpoint",
    "unwrap_state_dict": "checkpoint",
    "SwinIR": "model",
    "PRESETS": "presets",
    "Preset": "presets",
    "build": "presets",
    "export_onnx": "export",
    "export_program": "export",
    "charbonnier_loss": "losses",
    "l1_loss": "losses",
}

# submodules reachable as attributes after a bare ``import swinir`` (``swinir.train.train(...)``)
_SUBMODULES = frozenset({
    "benchmark", "checkpoint", "commands", "compare", "degrade", "distributed", "errors", "export", "export_formats",
    "figures", "files", "fusing", "hub", "imageio", "losses", "metrics", "model", "precision", "presets", "tiling",
    "train",
})  # fmt: skip

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'swinir' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return sorted({*globals(), *_EXPORTS, *_SUBMODULES})
