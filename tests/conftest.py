import os
import subprocess
import sys
import textwrap

import pytest
import torch

import swinir_kernels
from swinir_kernels import _backend

HAS_CUDA = torch.cuda.is_available()
HAS_C_EXTENSION = _backend.C_EXTENSION_ERROR is None
TRITON_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
SHARED_TESTSETS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "testsets")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

if TRITON_INTERPRET and swinir_kernels.triton.UNAVAILABLE is None:
    # Every Triton test runs the interpreter in its GPU-faithful mode (fp32 float arguments, launch-typed
    # integer arguments, TF32 dots): see tests/triton_faithful.py.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import triton_faithful

    triton_faithful.activate()

needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")


def run_python(code: str, *, timeout: float = 120, **env) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter importing this checkout, with `env` added to the environment
    (a value of None removes that variable)."""
    environment = {**os.environ, "PYTHONPATH": ROOT, **env}
    environment = {k: v for k, v in environment.items() if v is not None}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=environment, capture_output=True, text=True,
        timeout=timeout,
    )


def devices():
    """CPU always; CUDA as a param that is skipped without a GPU (torchvision's cpu_and_cuda)."""
    return ["cpu", pytest.param("cuda", marks=[needs_cuda, pytest.mark.cuda])]


def backend_available(backend: str, op: str, tensor: torch.Tensor, **shape) -> str | None:
    """None if `backend` can run `op` on `tensor` here, else why not (for pytest.skip); `shape`: an
    attention call's tokens and head_dim (see _backend._cannot_run)."""
    return _backend._cannot_run(backend, op, tensor, **shape)


def skip_unless_runs(backend: str, op: str, tensor: torch.Tensor, **shape) -> None:
    why_not = backend_available(backend, op, tensor, **shape)
    if why_not is not None:
        pytest.skip(f"{backend} cannot run {op} here: {why_not}")


@pytest.fixture(autouse=True)
def _seed_and_backend():
    torch.manual_seed(0)
    with swinir_kernels.use_backend("auto"):
        yield
