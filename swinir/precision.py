"""The compute precisions the command and the trainer offer, and the autocast context for each.

Torch is imported only when a context is made, so that ``swinir --help`` can list the names.
"""

from __future__ import annotations

import contextlib

__all__ = ["DTYPE_NAMES", "torch_dtype", "autocast"]

#: fp32 runs as is; bf16 and fp16 run under torch.autocast (the model keeps its residual stream in fp32)
DTYPE_NAMES = ("fp32", "bf16", "fp16")


def torch_dtype(name: str):
    """The autocast dtype of ``name`` (None for fp32); ValueError for another name."""
    import torch

    dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if name not in dtypes:
        raise ValueError(f"dtype: expected one of {', '.join(DTYPE_NAMES)}, got {name!r}")
    return dtypes[name]


def autocast(device, name: str):
    """A context that runs its block in precision ``name`` on ``device`` (a torch.device or its type
    string): nothing for fp32, ``torch.autocast`` to bf16 or fp16 otherwise."""
    dtype = torch_dtype(name)
    if dtype is None:
        return contextlib.nullcontext()
    import torch

    return torch.autocast(getattr(device, "type", device), dtype=dtype)
