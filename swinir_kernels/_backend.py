"""Which backend runs an op call, and why.

Backends: ``cuda`` (C++/CUDA kernels in ``_C``), ``triton``, ``cpu`` (C++ CPU kernels in ``_C``) and
``reference`` (naive PyTorch, always available). ``auto`` picks, per call:

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
from typing import NamedTuple

import torch

from . import _specialization

BACKENDS = ("auto", "cuda", "triton", "cpu", "reference")

OPS = ("window_partition", "window_reverse", "pixel_shuffle", "window_attention", "shifted_window_attention")
# The kernels `auto` checks and chooses among on a GPU, and on the test-only CPU stand-in.
GPU_BACKENDS = ("cuda", "triton")
STAND_IN_BACKENDS = ("cpu", "triton")
STAND_IN = os.environ.get("SWINIR_KERNELS_TEST_STAND_IN") == "1"
# A checked kernel gives way to the reference only when clearly slower in its check: by more than this
# factor plus this much timer noise (a tie keeps the kernel, which also saves memory).
SLOWER_MARGIN = 1.2
TIMER_NOISE_MS = 0.02

# Set by swinir_kernels/__init__.py: why `_C` could not be imported (None when it was).
C_EXTENSION_ERROR: str | None = "not imported yet"


class Choice(NamedTuple):
    backend: str
    reason: str
    # (backend, directions) that must be checked before the choice can be made (eager calls only).
    unchecked: tuple = ()


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
        for op in OPS
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


def _checked_device(tensor) -> bool:
    """Whether auto chooses among checked kernels for this tensor's device (a GPU, or the stand-in)."""
    return tensor.device.type == "cuda" or (STAND_IN and tensor.device.type == "cpu")


def needs_backward(args: tuple) -> bool:
    """Whether the call records an autograd graph, so the backend's backward runs too."""
    return torch.is_grad_enabled() and any(isinstance(a, torch.Tensor) and a.requires_grad for a in args)


def choose(op: str, tensor: torch.Tensor, args: tuple | None = None) -> Choice:
    """The backend that runs `op` on `tensor` (its first tensor argument; `args`: all the reference's
    positional arguments, which auto needs on a GPU) under the current setting."""
    requested = current()
    if requested != "auto":
        why_not = _cannot_run(requested, op, tensor, **_specialization.attention_sizes(op, args))
        if why_not is not None:
            raise RuntimeError(f"backend {requested!r} cannot run {op}: {why_not}")
        return Choice(requested, f"backend {requested!r} was requested")
    if _checked_device(tensor):
        return _choose_checked(op, tensor, args)
    if tensor.device.type == "cpu":
        why_not = _cannot_run("cpu", op, tensor)
        if why_not is None:
            return Choice("cpu", "auto: C++ CPU kernel for a CPU tensor")
        return Choice("reference", f"auto: reference, since {why_not}")
    return Choice("reference", f"auto: reference for a {tensor.device.type} tensor")


def _choose_checked(op: str, tensor: torch.Tensor, args: tuple | None) -> Choice:
    """auto on a GPU: the fastest kernel that passed its check on this device for this specialization."""
    from . import _verification

    if args is None:
        return Choice("unknown", "auto: chosen per kernel specialization on this device; pass the call's arguments "
                      f"to explain_backend (e.g. explain_backend({op!r}, *args, **kwargs)) to see which")
    candidates = GPU_BACKENDS if tensor.device.type == "cuda" else STAND_IN_BACKENDS
    sizes = _specialization.attention_sizes(op, args)
    runnable = tuple((backend, _cannot_run(backend, op, tensor, **sizes)) for backend in candidates)
    directions = ("forward", "backward") if needs_backward(args) else ("forward",)
    device = _verification.device_name(tensor.device)
    if _verification.can_verify_now(tensor.device):
        return Choice(*_decide(device, _specialization.key(op, args), directions, runnable, True))
    # Traced or captured: decided from the records alone, as a constant of the trace (no guard on them,
    # no lookup in the graph); the key leaves out what depends on (possibly symbolic) sizes.
    decide = _decide_traced if torch.compiler.is_compiling() else _decide
    return Choice(*decide(device, _specialization.key(op, args, static_only=True), directions, runnable, False))


def _decide(device: str, key: tuple, directions: tuple, runnable: tuple, checking: bool) -> tuple[str, str, tuple]:
    """(backend, reason, unchecked) from the records of `key` on `device`; runnable: (backend, why it
    cannot run or None) per candidate kernel; checking: whether a missing record may be checked now."""
    from . import _verification

    why_not, unchecked, passed = [], [], []
    for backend, cannot in runnable:
        if cannot is not None:
            why_not.append(f"{backend}: {cannot}")
            continue
        find = _verification.lookup if checking else _verification.lookup_static
        records = [find(device, backend, direction, key) for direction in directions]
        missing = tuple(d for d, r in zip(directions, records) if r is None)
        failed = [r for r in records if r is not None and not r.passed]
        if failed:
            why_not.append(f"{backend}: {_verification.describe_record(failed[0])}")
            if checking and failed[0].cached:  # failed in an earlier process: say so once in this one too
                _verification.warn(device, backend, dict(key)["op"], key, failed[0])
        elif missing and checking:
            unchecked.append((backend, missing))
        elif missing:
            why_not.append(f"{backend}: not checked on this device for this specialization yet, and no check runs "
                           "inside torch.compile tracing or a CUDA graph capture (run one eager call first)")
        else:
            passed.append((backend, records[-1]))
    if unchecked:
        return "unchecked", "auto: checking on this device first", tuple(unchecked)
    if passed:
        backend, record = min(passed, key=lambda pair: pair[1].kernel_ms)
        if record.kernel_ms <= SLOWER_MARGIN * record.reference_ms + TIMER_NOISE_MS:
            reason = f"auto: {backend}, the fastest kernel for this specialization, {_verification.describe_record(record)}"
            return backend, reason, ()
        why_not.append(f"{backend}: {_verification.describe_record(record)}, slower than the reference")
    return "reference", "auto: reference, since " + "; ".join(why_not or ["no kernel can run here"]), ()


# torch.compile calls it at trace time and bakes its result into the graph.
_decide_traced = torch.compiler.assume_constant_result(_decide)
