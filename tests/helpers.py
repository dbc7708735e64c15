"""What the tests share: environment facts, skips and a fresh-interpreter runner. Tests import it as
`from tests.helpers import ...` (conftest.py holds only the session's fixtures and the interpreter mode)."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from swinir_kernels import _backend, registry

HAS_CUDA = torch.cuda.is_available()
HAS_C_EXTENSION = _backend.C_EXTENSION_ERROR is None
TRITON_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The shared benchmark images; $SWINIR_TESTSETS points elsewhere (a git worktree sits apart from the main checkout).
SHARED_TESTSETS = os.environ.get("SWINIR_TESTSETS", os.path.join(ROOT, "..", "shared", "data", "testsets"))

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
    attention call's tokens and head_dim (what the op's description declares per backend)."""
    return registry.get(op).cannot_run(backend, tensor, **shape)


def skip_unless_runs(backend: str, op: str, tensor: torch.Tensor, **shape) -> None:
    why_not = backend_available(backend, op, tensor, **shape)
    if why_not is not None:
        pytest.skip(f"{backend} cannot run {op} here: {why_not}")


def randomize(*models, seed=0):
    """Gives every parameter (LayerNorm affines, biases, bias tables included) non-trivial values,
    the same in all models (which must have the same state-dict keys)."""
    generator = torch.Generator().manual_seed(seed)
    reference = models[0]
    values = {name: torch.randn(p.shape, generator=generator) * 0.1 for name, p in reference.named_parameters()}
    for name, value in values.items():
        if name.endswith(("norm1.weight", "norm2.weight", "norm.weight")):
            values[name] = 1.0 + value
    with torch.no_grad():
        for model in models:
            for name, p in model.named_parameters():
                p.copy_(values[name])
    return models
