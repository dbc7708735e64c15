"""The backend setting (:func:`use_backend`) and which backends this installation has.

Which backend runs a call, and why, is :func:`swinir_kernels._dispatch.plan`. Backends: ``cuda``
(C++/CUDA kernels in ``_C``), ``triton``, ``cpu`` (C++ CPU kernels in ``_C``) and ``reference`` (naive
PyTorch, always available). ``auto`` picks, per call:

* CPU tensors: ``cpu`` when ``_C`` is built and has the op's CPU kernel, else ``reference``.
* CUDA tensors: per op and kernel specialization, the fastest of the ``cuda``/``triton`` kernels that
  passed their first-use check on this very device (:mod:`swinir_kernels._verification`), unless the
  reference was faster in that check; else ``reference``. An unchecked specialization is checked at its
  first eager call, before its result is used; inside torch.compile tracing or a CUDA graph capture
  nothing is checked and only earlier checks count (unchecked -> the next backend).

The default is ``auto``; ``SWINIR_KERNELS_BACKEND`` in the environment sets another, and
:func:`use_backend` changes it (as a call or as a context manager). A backend named explicitly that
cannot run a call raises an error saying why, rather than silently falling back; it runs unchecked.

Test-only: ``SWINIR_KERNELS_TEST_STAND_IN=1`` (or ``STAND_IN = True``) makes ``auto`` treat CPU tensors
as a GPU, with ``cpu`` and ``triton`` (under TRITON_INTERPRET=1) as its kernels, so the whole
mechanism (checks, cache, choice, warnings) runs on a machine without a GPU.
"""

import os

import torch

BACKENDS = ("auto", "cuda", "triton", "cpu", "reference")
# The kernels `auto` checks and chooses among on a GPU, and on the test-only CPU stand-in.
GPU_BACKENDS = ("cuda", "triton")
STAND_IN_BACKENDS = ("cpu", "triton")
STAND_IN = os.environ.get("SWINIR_KERNELS_TEST_STAND_IN") == "1"

# Set by swinir_kernels/__init__.py: why `_C` could not be imported (None when it was).
C_EXTENSION_ERROR: str | None = "not imported yet"


def _check_name(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"backend: expected one of {', '.join(BACKENDS)}, got {name!r}")
    return name


# A plain module global (not thread-local) so that torch.compile guards on it: changing the backend
# recompiles instead of silently keeping the traced choice.
_requested = _check_name(os.environ.get("SWINIR_KERNELS_BACKEND", "auto") or "auto")


def current() -> str:
    """The backend requested now (``auto`` unless set)."""
    return _requested


class use_backend:
    """Sets the process-wide backend: ``use_backend("cpu")`` sets it until changed;
    ``with use_backend("reference"): ...`` sets it inside the block and restores the previous one."""

    def __init__(self, name: str):
        global _requested
        self._previous = _requested
        _requested = _check_name(name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        global _requested
        _requested = self._previous
        return False


# (op, "CPU" | "CUDA") pairs that `_C` registered a kernel for; filled once by refresh_kernels() so that
# the choice is plain Python that torch.compile can trace.
_KERNELS: frozenset = frozenset()


def refresh_kernels(ops) -> None:
    """Records which of `ops` (names) `_C` has CPU and CUDA kernels for."""
    global _KERNELS
    _KERNELS = frozenset(
        (op, key)
        for op in ops
        for key in ("CPU", "CUDA")
        if torch._C._dispatch_has_kernel_for_dispatch_key(f"swinir_kernels::{op}", key)
    )


def unavailable(backend: str, op: str, device_type: str) -> str | None:
    """Why this installation cannot run `backend`'s kernel of `op` on `device_type` tensors at all
    (not built, not installed, no interpreter), or None. What the kernels take is declared per op."""
    if backend in ("cpu", "cuda"):
        if C_EXTENSION_ERROR is not None:
            return f"the C++ extension swinir_kernels._C is not available ({C_EXTENSION_ERROR})"
        if device_type == backend and (op, backend.upper()) not in _KERNELS:
            return f"_C was built without a {backend} kernel for {op}"
        return None
    from . import triton as triton_backend

    if triton_backend.UNAVAILABLE is not None:
        return triton_backend.UNAVAILABLE
    if device_type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        return "Triton runs CPU tensors only under TRITON_INTERPRET=1 (on a GPU it runs CUDA tensors)"
    return None


def candidates(tensor: torch.Tensor) -> tuple[str, ...]:
    """The kernels auto checks and chooses among for a tensor of a checked device."""
    return GPU_BACKENDS if tensor.device.type == "cuda" else STAND_IN_BACKENDS
