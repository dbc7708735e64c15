import os
import tempfile

import pytest
import torch
from hypothesis import HealthCheck, Phase, settings


import swinir_kernels
from tests.helpers import TRITON_INTERPRET

if TRITON_INTERPRET and swinir_kernels.triton.UNAVAILABLE is None:
    # Every Triton test runs the interpreter in its GPU-faithful mode (fp32 float arguments, launch-typed
    # integer arguments, TF32 dots): see tests/support/triton_faithful.py.
    from tests.support import triton_faithful

    triton_faithful.activate()


# Hypothesis profiles of the property tests (tests/kernels/test_*_properties.py): `ci` (the default: a
# bounded, derandomized example count, so CI time stays in hand and a failure reproduces; no shrinking,
# which re-runs kernels under the Triton interpreter for many minutes) and `long`
# (SWINIR_HYPOTHESIS_PROFILE=long: five times the examples, random, shrinking a failure to a minimal
# case; for a run on demand). Examples run kernels: no per-example deadline.
settings.register_profile(
    "ci", max_examples=25, derandomize=True, deadline=None, print_blob=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)  # fmt: skip
settings.register_profile(
    "long", max_examples=120, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)  # fmt: skip
settings.load_profile(os.environ.get("SWINIR_HYPOTHESIS_PROFILE", "ci"))


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


# Whole modules that take minutes on 2 cores, because they build or start other programs (the SIMT
# harness, nvcc and ptxas, fresh interpreters, torchrun, the ONNX exporter, pytest itself): the quick
# contributor profile `-m "not slow"` leaves them out, with every test that uses the SIMT harness.
# CI runs everything.
SLOW_MODULES = frozenset({
    "test_cuda_simt.py", "test_cuda_simt_attention_tc.py", "test_static_report.py", "test_selftest.py",
    "test_docs.py", "test_bench_scripts.py", "test_distributed.py", "test_fresh_clone.py", "test_train_bench.py",
    "test_export.py", "test_predict_attention.py",
})  # fmt: skip


def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.name in SLOW_MODULES or "harness" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
