"""First-use verification of the GPU backends on the user's own device, remembered per process and on disk.

The first time ``auto`` could run a kernel specialization (the op's ``key``, see
:mod:`swinir_kernels.registry`) of a GPU backend on a device, :func:`verify` runs it on a small input of
the same specialization (the op's ``small_input``, which hits the binary the call itself compiles)
forward and, when the call needs gradients, backward, compares with :mod:`swinir_kernels.reference`
under :mod:`swinir_kernels.tolerances`, and times it against the reference on that input. A pass makes
the specialization eligible for ``auto``; a failure (wrong values, or an exception) makes it ineligible
on that device and warns once. Nothing runs inside torch.compile tracing or a CUDA graph capture
(:func:`can_verify_now`): there the choice reads the records only.

Records live in this process (``_records``) and on disk, one JSON file per (backend, direction,
specialization) under a folder named by a hash of the device's fingerprint (GPU name and compute
capability, driver and CUDA versions, torch, Triton and our version, a hash of the kernel sources):
``$SWINIR_KERNELS_CACHE``, else ``$XDG_CACHE_HOME/swinir_kernels``, else ``~/.cache/swinir_kernels``.
Files are written to a temporary name and renamed (atomic), so concurrent processes never see half a
file; a corrupt, foreign or unreadable file is ignored (and rewritten), an unwritable folder only
loses the memory across processes.
"""

import contextlib
import functools
import glob
import hashlib
import json
import os
import platform
import tempfile
import time
import warnings
from typing import NamedTuple

import torch

from . import tolerances
from .registry.op import Op
from .registry.specialization import describe

CACHE_ENV = "SWINIR_KERNELS_CACHE"
DIRECTIONS = ("forward", "backward")
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# Files whose change changes what a kernel computes: the Triton kernels, the ops' descriptions (their
# autograd composition) and the compiled C++/CUDA library.
KERNEL_SOURCE_PATTERNS = ("triton/*.py", "registry/*.py", "_C*.so", "_C*.pyd")
TIMING_REPEATS = 3


class Record(NamedTuple):
    passed: bool
    max_error: float  # largest |kernel - reference| over outputs and gradients (fp64 reference for fp16/bf16)
    detail: str  # why it failed ('' when it passed)
    when: float  # time.time() of the check
    check_ms: float  # what the check cost (small input: kernel, reference, comparison, timing)
    kernel_ms: float  # the kernel on the small input (forward, or forward + backward)
    reference_ms: float  # the reference on the same input
    cached: bool = False  # read from the disk cache (checked by an earlier process)


# (device, backend, direction, key) -> Record, and the devices whose disk records are loaded.
_records: dict[tuple, Record] = {}
_loaded: set[str] = set()
_warned: set[tuple] = set()
# Why the disk cache could not be written, if it could not (reported by explain_backend).
cache_problem: str | None = None


def device_name(device: torch.device) -> str:
    """The records' device name: 'cuda:0', or 'cpu' for the test-only CPU stand-in."""
    if device.type == "cuda":
        return f"cuda:{device.index if device.index is not None else torch.cuda.current_device()}"
    return str(device.type)


def can_verify_now(device: torch.device) -> bool:
    """False inside torch.compile tracing and CUDA graph capture, where no check may run."""
    if torch.compiler.is_compiling():
        return False
    return not (device.type == "cuda" and torch.cuda.is_current_stream_capturing())


@functools.cache
def kernel_source_hash() -> str:
    digest = hashlib.sha256()
    for pattern in KERNEL_SOURCE_PATTERNS:
        for path in sorted(glob.glob(os.path.join(PACKAGE_DIR, pattern))):
            digest.update(os.path.relpath(path, PACKAGE_DIR).encode())
            with open(path, "rb") as file:
                for block in iter(lambda: file.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


def _driver_version() -> str:
    try:
        with open("/proc/driver/nvidia/version") as file:
            for word in file.readline().split():
                if word[:1].isdigit() and "." in word:
                    return word
    except OSError:
        pass
    return "unknown"


@functools.cache
def fingerprint(device: str) -> dict:
    """What a record is valid for: the device and every version that can change a kernel's result."""
    from . import __version__

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    if device.startswith("cuda"):
        index = int(device.split(":")[1])
        gpu = torch.cuda.get_device_name(index)
        capability = ".".join(map(str, torch.cuda.get_device_capability(index)))
        driver = _driver_version()
    else:  # the test-only CPU stand-in
        gpu, capability, driver = f"CPU stand-in ({platform.machine()})", "", ""
    return {
        "device": gpu, "compute_capability": capability, "driver": driver, "cuda": torch.version.cuda,
        "torch": torch.__version__, "triton": triton_version, "swinir_kernels": __version__,
        "kernel_sources": kernel_source_hash(),
    }  # fmt: skip


def versions(device: str) -> str:
    return ", ".join(f"{name} {value}" for name, value in fingerprint(device).items() if value)


def cache_root() -> str:
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return configured
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "swinir_kernels")


def _folder(device: str) -> str:
    identity = json.dumps(fingerprint(device), sort_keys=True).encode()
    return os.path.join(cache_root(), "verified-" + hashlib.sha256(identity).hexdigest()[:16])


def _entry(backend: str, direction: str, key: tuple) -> dict:
    return {"backend": backend, "direction": direction, "key": [list(field) for field in key]}


def _load(device: str) -> None:
    """Reads the device's disk records once per process; anything unreadable or foreign is skipped."""
    if device in _loaded:
        return
    _loaded.add(device)
    for path in glob.glob(os.path.join(_folder(device), "*.json")):
        try:
            with open(path) as file:
                data = json.load(file)
            if data["fingerprint"] != fingerprint(device):
                continue
            record = Record(**{**data["record"], "cached": True})
            # JSON made the key's tuples lists: the fields, and per-axis values such as a rectangular
            # window's ("window_size", (8, 32)).
            key = tuple((name, tuple(value) if isinstance(value, list) else value) for name, value in data["key"])
            _records.setdefault((device, data["backend"], data["direction"], key), record)
        except (OSError, ValueError, KeyError, TypeError):
            continue  # corrupt or from another version of this format: checked again when needed


def _save(device: str, backend: str, direction: str, key: tuple, record: Record) -> None:
    global cache_problem
    entry = _entry(backend, direction, key)
    name = hashlib.sha256(json.dumps(entry, sort_keys=True).encode()).hexdigest()[:24] + ".json"
    folder = _folder(device)
    data = {**entry, "fingerprint": fingerprint(device), "record": {k: v for k, v in record._asdict().items() if k != "cached"}}
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=folder, prefix=".tmp-", suffix=".json", delete=False) as file:
            json.dump(data, file, indent=1)
        os.replace(file.name, os.path.join(folder, name))
    except OSError as error:
        cache_problem = f"the verification cache {folder} is not writable ({error}); results are kept for this process only"
        try:
            os.unlink(file.name)
        except (OSError, NameError):
            pass


def lookup(device: str, backend: str, direction: str, key: tuple) -> Record | None:
    _load(device)
    return _records.get((device, backend, direction, key))


def lookup_static(device: str, backend: str, direction: str, static_key: tuple) -> Record | None:
    """For traced calls: a record whose key extends `static_key` (the size-dependent fields aside);
    a failure among them wins, so a traced call never picks a kernel that failed at some size."""
    _load(device)
    found = None
    for (d, b, direction_, key), record in _records.items():
        if (d, b, direction_) == (device, backend, direction) and key[: len(static_key)] == static_key:
            if not record.passed:
                return record
            found = found or record
    return found


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _run(function, op: Op, args: tuple, with_backward: bool, grad_out_seed: int = 1):
    """(output, *gradients) of function(*args); gradients of the differentiable args for a random grad_out."""
    if not with_backward:
        with torch.no_grad():
            return [function(*args)]
    indices = op.differentiable(args)
    args = list(args)
    for i in indices:
        args[i] = args[i].detach().requires_grad_()
    with torch.enable_grad():
        out = function(*args)
        generator = torch.Generator().manual_seed(grad_out_seed)
        grad_out = torch.randn(out.shape, generator=generator, dtype=torch.float64).to(out.dtype).to(out.device)
        grads = torch.autograd.grad(out, [args[i] for i in indices], grad_out)
    return [out.detach(), *grads]


def _widened(args: tuple) -> tuple:
    """The same arguments with every floating tensor in fp64 (for the exact reference)."""
    return tuple(a.double() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)


def _time_ms(function, device: torch.device) -> float:
    """Best wall time of a few calls (the first already compiled and warm; the minimum resists other load)."""
    times = []
    for _ in range(TIMING_REPEATS):
        _synchronize(device)
        start = time.perf_counter()
        function()
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def check(op: Op, backend: str, args: tuple, with_backward: bool, timed: bool = True) -> Record:
    """Runs `backend`'s kernel of `op` against the reference on a small input of the specialization of
    `args`, and (timed) times both on it. Autocast is off inside: the caller's
    autocast would run the reference's products in half precision, and the arguments already have
    the dtypes that autocast gave them."""
    with torch.autocast(args[0].device.type, enabled=False):
        return _check(op, backend, args, with_backward, timed)


@contextlib.contextmanager
def _full_precision_matmuls():
    """The reference's fp32 products in full precision even where the user allows TF32 (which the
    kernels' own setting, read at their call, may still use: it is part of their specialization)."""
    allowed = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = allowed


def _check(op: Op, backend: str, args: tuple, with_backward: bool, timed: bool) -> Record:
    started = time.perf_counter()
    device = args[0].device
    inputs = op.small_input(args, 0)
    precision = op.fp32_precision(args)
    implementation, reference_function = op.implementation(backend), op.reference
    try:
        actual = _run(implementation, op, inputs, with_backward)
        _synchronize(device)
    except torch.cuda.OutOfMemoryError:
        raise
    except Exception as error:  # a kernel that cannot compile or launch here fails its check
        detail = f"{type(error).__name__}: {error}"
        return Record(False, float("inf"), detail, time.time(), (time.perf_counter() - started) * 1e3, 0.0, 0.0)
    with _full_precision_matmuls():
        same_dtype = _run(reference_function, op, inputs, with_backward)
    # The fp64 reference is the yardstick of fp16/bf16 only (fp32/fp64 are held to the same-dtype one).
    half = args[0].dtype in tolerances.HALF_ERROR_FLOOR
    exact = _run(reference_function, op, _widened(inputs), with_backward) if half else same_dtype
    passed, max_error, detail = tolerances.compare(
        actual, same_dtype, exact, exact=op.exact(args), fp32_precision=precision
    )
    kernel_ms = reference_ms = 0.0
    if passed and timed:
        kernel_ms = _time_ms(lambda: _run(implementation, op, inputs, with_backward), device)
        reference_ms = _time_ms(lambda: _run(reference_function, op, inputs, with_backward), device)
    return Record(passed, max_error, detail, time.time(), (time.perf_counter() - started) * 1e3, kernel_ms, reference_ms)


def verify(op: Op, backend: str, args: tuple, directions: tuple[str, ...], key: tuple) -> Record:
    """Checks backend's `op` for the specialization `key` of `args` in `directions` (('forward',) or
    both) on args' device, records the result per direction (in memory and on disk) and warns once on a
    failure."""
    device = device_name(args[0].device)
    record = check(op, backend, args, "backward" in directions)
    for direction in directions:
        _records[(device, backend, direction, key)] = record
        _save(device, backend, direction, key, record)
    if not record.passed:
        warn(device, backend, op.name, key, record)
    return record


def warn(device: str, backend: str, op: str, key: tuple, record: Record) -> None:
    """The one warning per process about a failed check (stacklevel: the user's call of the op)."""
    if (device, backend, key) in _warned:
        return
    _warned.add((device, backend, key))
    warnings.warn(
        f"swinir_kernels: the {backend} kernel of {op} failed its first-use check on this device ({device}, "
        f"{fingerprint(device)['device']}) for the specialization [{describe(key)}]"
        f"{' (checked by an earlier process)' if record.cached else ''}: {record.detail}. "
        f"`auto` will not use it on this device; your results are unaffected (computed by the next backend). "
        f"Versions: {versions(device)}. Please report it on the swinir-kernels issue tracker with this message and the output of "
        f"`python -m swinir_kernels.selftest --device {device}`.",
        RuntimeWarning,
        stacklevel=4,
    )


def describe_record(record: Record) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(record.when))
    source = " by an earlier process (disk cache)" if record.cached else ""
    if record.passed:
        return (f"verified on this device at {when}{source}: max error {record.max_error:.2g}, "
                f"{record.kernel_ms:.3g} ms vs reference {record.reference_ms:.3g} ms on the check's input")
    return f"failed its check on this device at {when}{source}: {record.detail}"


def clear_memory() -> None:
    """Forgets this process's records (tests: as if a new process started)."""
    _records.clear()
    _loaded.clear()
    _warned.clear()
