"""Which backend runs an op call, and why.

Backends: ``cuda`` (C++/CUDA kernels in ``_C``), ``triton``, ``cpu`` (C++ CPU kernels in ``_C``) and
``reference`` (naive PyTorch, always available). ``auto`` picks, per call:

* CPU tensors: ``cpu`` when ``_C`` is built and has the op's CPU kernel, else ``reference``.
* CUDA tensors: the fastest of ``cuda``/``triton`` *among those that passed the whole test suite on a
  real GPU* (``VERIFIED_ON_GPU`` below, mirrored by the README's status table), else ``reference``.

The default is ``auto``; ``SWINIR_KERNELS_BACKEND`` in the environment sets another, and
:func:`use_backend` changes it (as a call or as a context manager). A backend named explicitly that
cannot run a call raises an error saying why, rather than silently falling back.
"""

import os
from typing import NamedTuple

import torch

BACKENDS = ("auto", "cuda", "triton", "cpu", "reference")

# op -> GPU backends, fastest first, that passed the suite on a real GPU (with the GPU and commit in the
# README's status table). Nothing is listed until a GPU run has verified it: `auto` never picks an
# untested GPU path.
VERIFIED_ON_GPU: dict[str, tuple[str, ...]] = {
    "window_partition": (),
    "window_reverse": (),
    "pixel_shuffle": (),
    "window_attention": (),
    "shifted_window_attention": (),
}

# Set by swinir_kernels/__init__.py: why `_C` could not be imported (None when it was).
C_EXTENSION_ERROR: str | None = "not imported yet"


class Choice(NamedTuple):
    backend: str
    reason: str


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


def refresh_kernels() -> None:
    global _KERNELS
    _KERNELS = frozenset(
        (op, key)
        for op in VERIFIED_ON_GPU
        for key in ("CPU", "CUDA")
        if torch._C._dispatch_has_kernel_for_dispatch_key(f"swinir_kernels::{op}", key)
    )


def _has_kernel(op: str, dispatch_key: str) -> bool:
    return (op, dispatch_key) in _KERNELS


# The CUDA attention kernel holds a window in shared memory: at most this many tokens (ws*ws) and this
# head_dim (kAttentionMaxTokens, kAttentionMaxHeadDim in csrc/cuda/window_attention_kernel.h).
CUDA_ATTENTION_MAX_TOKENS = 64
CUDA_ATTENTION_MAX_HEAD_DIM = 64


def cuda_attention_limit(tokens: int | None, head_dim: int | None) -> str | None:
    """None if the CUDA attention kernel takes windows of `tokens` tokens and heads of `head_dim`
    channels (None: not known, not checked), else why not."""
    if tokens is not None and tokens > CUDA_ATTENTION_MAX_TOKENS:
        return f"the CUDA attention kernel takes at most {CUDA_ATTENTION_MAX_TOKENS} tokens per window, got {tokens}"
    if head_dim is not None and head_dim > CUDA_ATTENTION_MAX_HEAD_DIM:
        return f"the CUDA attention kernel takes head_dim at most {CUDA_ATTENTION_MAX_HEAD_DIM}, got {head_dim}"
    return None


def _cannot_run(
    backend: str, op: str, tensor: torch.Tensor, *, tokens: int | None = None, head_dim: int | None = None
) -> str | None:
    """None if `backend` can run `op` on `tensor`, else the reason it cannot; `tokens` (per window) and
    `head_dim` describe an attention call where known."""
    if backend == "reference":
        return None
    if backend == "cuda" and op in ("window_attention", "shifted_window_attention"):
        why_not = cuda_attention_limit(tokens, head_dim)
        if why_not is not None:
            return why_not
    if backend in ("cpu", "cuda"):
        if C_EXTENSION_ERROR is not None:
            return f"the C++ extension swinir_kernels._C is not available ({C_EXTENSION_ERROR})"
        if tensor.device.type != backend:
            return f"the {backend} backend runs {backend} tensors, got a {tensor.device.type} tensor"
        if not _has_kernel(op, backend.upper()):
            return f"_C was built without a {backend} kernel for {op}"
        return None
    # triton
    from . import triton as triton_backend

    if triton_backend.UNAVAILABLE is not None:
        return triton_backend.UNAVAILABLE
    if op not in triton_backend.OPS:
        return f"no Triton kernel for {op}"
    if tensor.device.type == "cpu":
        if os.environ.get("TRITON_INTERPRET") != "1":
            return "Triton runs CPU tensors only under TRITON_INTERPRET=1"
        if tensor.dtype == torch.bfloat16 and op not in triton_backend.BIT_COPY_OPS:
            return "the Triton interpreter computes bfloat16 wrongly (silently), so it is refused"
    elif tensor.device.type != "cuda":
        return f"Triton runs CUDA tensors, got a {tensor.device.type} tensor"
    return None


def choose(op: str, tensor: torch.Tensor) -> Choice:
    """The backend that runs `op` on `tensor` (its first tensor argument) under the current setting."""
    requested = current()
    if requested != "auto":
        why_not = _cannot_run(requested, op, tensor)
        if why_not is not None:
            raise RuntimeError(f"backend {requested!r} cannot run {op}: {why_not}")
        return Choice(requested, f"backend {requested!r} was requested")
    if tensor.device.type == "cpu":
        why_not = _cannot_run("cpu", op, tensor)
        if why_not is None:
            return Choice("cpu", "auto: C++ CPU kernel for a CPU tensor")
        return Choice("reference", f"auto: reference, since {why_not}")
    if tensor.device.type == "cuda":
        verified = VERIFIED_ON_GPU.get(op, ())
        for backend in verified:
            if _cannot_run(backend, op, tensor) is None:
                return Choice(backend, f"auto: {backend}, the fastest backend verified on a GPU for {op}")
        if not verified:
            return Choice("reference", f"auto: reference, since no GPU backend of {op} has passed the suite on a GPU yet")
        return Choice("reference", f"auto: reference, since none of the verified backends {verified} can run here")
    return Choice("reference", f"auto: reference for a {tensor.device.type} tensor")
