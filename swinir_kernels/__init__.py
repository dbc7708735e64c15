"""Fused kernels for SwinIR's hot path: shifted-window attention with relative position bias, window
partition/reverse with cyclic shift, and pixel shuffle with its epilogue.

Public API (see :mod:`swinir_kernels.ops`): window_partition, window_reverse, window_attention,
shifted_window_attention, pixel_shuffle; backend choice: use_backend, explain_backend.
"""

import warnings

from . import _backend, _registrations

try:
    from . import _C  # noqa: F401  (loading the library registers the C++ operators)
except ImportError as error:  # the package still works, on the reference (and Triton) backends
    _backend.C_EXTENSION_ERROR = f"{error}; build it with `pip install --no-build-isolation -e .` (see README)"
    warnings.warn(
        "swinir_kernels: the C++/CUDA extension is not built, so only the reference and Triton backends are "
        f"available ({error}). Build it with `pip install --no-build-isolation -e .` (see README).",
        stacklevel=2,
    )
else:
    _backend.C_EXTENSION_ERROR = None
    _registrations.register_c_extension_ops()
    _backend.refresh_kernels()

from . import reference  # noqa: E402
from ._backend import BACKENDS, use_backend  # noqa: E402
from .ops import (  # noqa: E402
    backends_used,
    explain_backend,
    pixel_shuffle,
    shifted_window_attention,
    window_attention,
    window_partition,
    window_reverse,
)

__all__ = [
    "BACKENDS",
    "backends_used",
    "explain_backend",
    "pixel_shuffle",
    "reference",
    "shifted_window_attention",
    "use_backend",
    "window_attention",
    "window_partition",
    "window_reverse",
]
__version__ = "0.1.0"
