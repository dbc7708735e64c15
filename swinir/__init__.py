"""A compact SwinIR on the fused ops of :mod:`swinir_kernels`: drop-in for the official checkpoints
(same constructor, module tree and state-dict keys), any input size, fp16-safe, trainable.

    model = swinir.load("001_classicalSR_DF2K_s64w8_SwinIR-M_x4.pth")   # hyper-parameters inferred
    model = swinir.load("classical_sr_x4")                                # a named checkpoint, downloaded once
    model = swinir.build("classical_sr_x4")                               # random weights
    swinir.accelerate(official_model)                                     # fuse an existing model's blocks
    swinir.export_onnx(model, "model.onnx")                               # ONNX, dynamic image size

The names below are imported on first use (PEP 562), so that ``swinir --help`` does not wait for torch.
"""

import importlib
import sys
import types

# public name -> the submodule that defines it
_EXPORTS = {
    "accelerate": "accelerate",
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

__all__ = sorted(_EXPORTS)


class _Package(types.ModuleType):
    """The import system binds a loaded submodule to the package attribute of its name; the submodule
    ``accelerate`` shares that name with the function it defines, and ``swinir.accelerate`` must stay
    the function (as it was when this package imported everything eagerly)."""

    def __setattr__(self, name, value):
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name) == name:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'swinir' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return sorted({*globals(), *_EXPORTS})
