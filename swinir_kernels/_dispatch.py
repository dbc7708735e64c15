"""How a call reaches a kernel: checked arguments -> :func:`plan` -> (first-use check) -> kernel.

:func:`plan` is a pure function of the op, the call's arguments, the backend setting and the
verification records: it runs nothing, changes nothing and is safe from any thread;
``explain_backend`` returns its answer. :func:`run` follows the plan. Where the plan says that a
kernel specialization has not been checked on this device yet, the first thread to get there checks
it while any other thread calling the same specialization waits for that result
(:func:`_first_use_lock`), so each specialization is checked once per process.
"""

import threading
from typing import NamedTuple

import torch

from . import _backend, _verification
from .registry.op import Op

# A checked kernel gives way to the reference only when clearly slower in its check: by more than this
# factor plus this much timer noise (a tie keeps the kernel, which also saves memory).
SLOWER_MARGIN = 1.2
TIMER_NOISE_MS = 0.02


class Choice(NamedTuple):
    """A plan: which backend runs the call, and why."""

    backend: str  # a backend name; "unchecked" while kernels await their first-use check; "unknown" without a call
    reason: str
    # (backend, directions) to check before the choice can be made (eager calls on a checked device).
    unchecked: tuple = ()
    key: tuple | None = None  # the call's specialization (on a checked device)
    # (backend, Record) of checks that failed in an earlier process: run() warns once about them.
    cached_failures: tuple = ()
    refused: bool = False  # an explicitly requested backend cannot run the call (reason says why)

    def explanation(self) -> str:
        """The one line explain_backend gives."""
        if self.unchecked:
            names = ", ".join(backend for backend, _ in self.unchecked)
            return f"unchecked: auto: {names} not verified on this device for this specialization yet; the first call checks them"
        if self.refused:
            return self.reason
        note = "" if _verification.cache_problem is None else f" ({_verification.cache_problem})"
        return f"{self.backend}: {self.reason}{note}"


_CPU_CHOICE = Choice("cpu", "auto: C++ CPU kernel for a CPU tensor")


def needs_backward(args: tuple) -> bool:
    """Whether the call records an autograd graph, so the backend's backward runs too."""
    return torch.is_grad_enabled() and any(isinstance(a, torch.Tensor) and a.requires_grad for a in args)


def plan(op: Op, args: tuple | None, tensor: torch.Tensor | None = None) -> Choice:
    """The backend that runs `op` with `args` (the reference's positional arguments, already checked)
    under the current setting. Without `args`, the answer for `tensor`'s device: on a GPU, auto chooses
    per specialization and needs the call."""
    tensor = args[0] if args is not None else tensor
    sizes = op.sizes(args) if args is not None else {}
    requested = _backend.current()
    if requested != "auto":
        why_not = op.cannot_run(requested, tensor, **sizes)
        if why_not is not None:
            return Choice(requested, f"backend {requested!r} cannot run {op.name}: {why_not}", refused=True)
        return Choice(requested, f"backend {requested!r} was requested")
    device_type = tensor.device.type
    if device_type == "cuda" or (device_type == "cpu" and _backend.STAND_IN):  # a checked device
        return _plan_checked(op, args, tensor, sizes)
    if device_type == "cpu":
        why_not = op.cannot_run("cpu", tensor, **sizes)
        if why_not is None:
            return _CPU_CHOICE
        return Choice("reference", f"auto: reference, since {why_not}")
    return Choice("reference", f"auto: reference for a {device_type} tensor")


def _plan_checked(op: Op, args: tuple | None, tensor: torch.Tensor, sizes: dict) -> Choice:
    """auto on a GPU: the fastest kernel that passed its check on this device for this specialization."""
    if args is None:
        return Choice("unknown", "auto: chosen per kernel specialization on this device; pass the call's arguments "
                      f"to explain_backend (e.g. explain_backend({op.name!r}, *args, **kwargs)) to see which")
    runnable = tuple((backend, op.cannot_run(backend, tensor, **sizes)) for backend in _backend.candidates(tensor))
    directions = ("forward", "backward") if needs_backward(args) else ("forward",)
    device = _verification.device_name(tensor.device)
    if _verification.can_verify_now(tensor.device):
        key = op.key(args)
        return Choice(*_decide(device, key, directions, runnable, True), key=key)
    # Traced or captured: decided from the records alone, as a constant of the trace (no guard on them,
    # no lookup in the graph); the key leaves out what depends on (possibly symbolic) sizes.
    decide = _decide_traced if torch.compiler.is_compiling() else _decide
    return Choice(*decide(device, op.key(args, static_only=True), directions, runnable, False))


def _decide(device: str, key: tuple, directions: tuple, runnable: tuple, checking: bool) -> tuple:
    """(backend, reason, unchecked) from the records of `key` on `device`; runnable: (backend, why it
    cannot run or None) per candidate kernel; checking: whether a missing record may be checked now."""
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


def _cached_failures(choice: Choice, tensor: torch.Tensor, device: str) -> list:
    """(backend, record) of the failed checks from an earlier process among the plan's candidates."""
    failures = []
    for backend in _backend.candidates(tensor):
        for direction in _verification.DIRECTIONS:
            record = _verification.lookup(device, backend, direction, choice.key)
            if record is not None and not record.passed and record.cached:
                failures.append((backend, record))
                break
    return failures


# (device, key) -> the lock its first-use check holds; guarded by _locks_guard.
_locks: dict[tuple, threading.Lock] = {}
_locks_guard = threading.Lock()


def _first_use_lock(device: str, key: tuple) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault((device, key), threading.Lock())


def _check_first_use(op: Op, args: tuple, choice: Choice) -> Choice:
    """Checks the plan's unchecked kernels once per (device, specialization), then plans again."""
    device = _verification.device_name(args[0].device)
    with _first_use_lock(device, choice.key):
        choice = plan(op, args)  # another thread may have checked them while this one waited
        for backend, directions in choice.unchecked:
            _verification.verify(op, backend, args, directions, choice.key)
        return plan(op, args) if choice.unchecked else choice


# op -> "backend: reason" of the latest eager call (swinir bench reports it).
_last_used: dict[str, str] = {}


def run(op: Op, args: tuple):
    """Runs `op` on the planned backend; args: the reference's positional arguments, already checked."""
    choice = plan(op, args)
    if choice.refused:
        raise RuntimeError(choice.reason)
    if choice.key is not None:  # a checked device, outside tracing: say once that a kernel failed before
        device = _verification.device_name(args[0].device)
        for backend, record in _cached_failures(choice, args[0], device):
            _verification.warn(device, backend, op.name, choice.key, record)
    if choice.unchecked:
        choice = _check_first_use(op, args, choice)
    if not torch.compiler.is_compiling():
        _last_used[op.name] = f"{choice.backend}: {choice.reason}"
    return op.implementation(choice.backend)(*args)
