"""Fused kernels for SwinIR's hot path: shifted-window attention with relative position bias, window
partition/reverse with cyclic shift, and pixel shuffle with its epilogue.

Public API (see :mod:`swinir_kernels.ops`; each op described once in :mod:`swinir_kernels.registry`):
window_partition, window_reverse, window_attention, shifted_window_attention, pixel_shuffle; backend
choice: use_backend, explain_backend.
"""

import importlib.machinery
import os
import warnings

from . import _backend

try:
    from . import _C  # noqa: F401  (loading the library registers the C++ operators)
except ImportError as error:  # the package still works, on the reference (and Triton) backends
    _built = [name for name in os.listdir(os.path.dirname(__file__))
              if name.startswith("_C") and name.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))]
    if _built:  # present but not loadable: the real reason is the loader's message
        _why = (f"is not built for this torch and Python: {_built[0]} does not load ({error}); it was most likely "
                "built against another torch, so rebuild it")
    else:  # (Python's own message then says "partially initialized module ... circular import", which misleads)
        _why = f"is not built: there is no _C library in {os.path.dirname(__file__)} (a source checkout?)"
    _backend.C_EXTENSION_ERROR = (f"the C++/CUDA extension {_why}. Build it with `pip install ninja` and then "
                                  "`pip install --no-build-isolation -e .` in the repository (needs a C++ compiler; "
                                  "see docs/kernels.md#building-the-extension)")
    warnings.warn(
        f"swinir_kernels: {_backend.C_EXTENSION_ERROR}. Until then only the reference and Triton backends are "
        "available.",
        stacklevel=2,
    )
else:
    _backend.C_EXTENSION_ERROR = None

from . import reference, registry, triton  # noqa: E402

if _backend.C_EXTENSION_ERROR is None:
    registry.register_c_extension_ops()
    _backend.refresh_kernels(registry.OPS)
if triton.UNAVAILABLE is None:
    triton.register_ops()

from . import ops  # noqa: E402
from ._backend import BACKENDS, use_backend  # noqa: E402
from .ops import *  # noqa: E402,F401,F403  (the ops and explain_backend, backends_used: ops.__all__)

__all__ = ["BACKENDS", "reference", "use_backend", *ops.__all__]
__version__ = "0.1.0"
