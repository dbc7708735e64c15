import os
import tempfile

import pytest
import torch

import swinir_kernels
from tests.helpers import TRITON_INTERPRET

if TRITON_INTERPRET and swinir_kernels.triton.UNAVAILABLE is None:
    # Every Triton test runs the interpreter in its GPU-faithful mode (fp32 float arguments, launch-typed
    # integer arguments, TF32 dots): see tests/support/triton_faithful.py.
    from tests.support import triton_faithful

    triton_faithful.activate()


@pytest.fixture(autouse=True)
def _seed_and_backend():
    torch.manual_seed(0)
    with swinir_kernels.use_backend("auto"):
        yield


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Keeps the session's settings to itself: PYTEST_ADDOPTS (CI's coverage options, read by now) is not
    inherited by the pytest runs that tests start in subprocesses (a floor meant for the whole suite
    would fail them), and pytest-benchmark's storage folder, made at the start of every session,
    benchmarks or not, goes to a temporary folder, not the checkout (bench/ keeps its own)."""
    os.environ.pop("PYTEST_ADDOPTS", None)
    if getattr(config.option, "benchmark_storage", None) == "file://./.benchmarks":
        config.option.benchmark_storage = "file://" + os.path.join(tempfile.gettempdir(), f"swinir-kernels-benchmarks-{os.getuid()}")
