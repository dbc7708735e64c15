"""Backend choice: use_backend (setter and context manager), the SWINIR_KERNELS_BACKEND default,
explain_backend's reasons, auto on a GPU deciding from the first-use checks' records (never a failed,
unchecked or clearly slower kernel; the mechanism itself: tests/kernels/test_verification.py), and the package
working (on the reference backend, with one warning) when the C++ extension cannot be imported."""

import re
import sys
import threading
from types import SimpleNamespace

import pytest
import torch

import swinir_kernels as sk
from swinir_kernels import _backend, _dispatch, _verification, reference, registry
from tests.helpers import HAS_C_EXTENSION, TRITON_INTERPRET, run_python

needs_c_extension = pytest.mark.skipif(not HAS_C_EXTENSION, reason="swinir_kernels._C is not built")


def test_use_backend_is_a_setter_and_a_context_manager():
    assert _backend.current() == "auto"
    sk.use_backend("reference")
    try:
        assert _backend.current() == "reference"
        with sk.use_backend("cpu") as chosen:
            assert isinstance(chosen, sk.use_backend)
            assert _backend.current() == "cpu"
            with sk.use_backend("auto"):
                assert _backend.current() == "auto"
            assert _backend.current() == "cpu"
        assert _backend.current() == "reference"
    finally:
        sk.use_backend("auto")
    assert _backend.current() == "auto"


def test_context_manager_restores_after_an_error():
    with pytest.raises(KeyError), sk.use_backend("reference"):
        raise KeyError
    assert _backend.current() == "auto"


def test_unknown_backend_is_a_value_error():
    with pytest.raises(ValueError, match="backend: expected one of auto, cuda, triton, cpu, reference, got 'gpu'"):
        sk.use_backend("gpu")
    assert _backend.current() == "auto"


def test_environment_variable_sets_the_default():
    done = run_python(
        """
        import swinir_kernels as sk, torch
        from swinir_kernels import _backend
        print(_backend.current())
        print(sk.explain_backend("window_partition", torch.zeros(1, 8, 8, 1)))
        """,
        SWINIR_KERNELS_BACKEND="reference",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["reference", "reference: backend 'reference' was requested"]


def test_bad_environment_variable_fails_at_import_naming_it():
    done = run_python("import swinir_kernels", SWINIR_KERNELS_BACKEND="fastest")
    assert done.returncode != 0
    assert "backend: expected one of" in done.stderr and "'fastest'" in done.stderr


@needs_c_extension
def test_explain_auto_on_cpu_picks_the_cpu_extension():
    assert sk.explain_backend("window_partition", torch.zeros(1, 8, 8, 1)) == "cpu: auto: C++ CPU kernel for a CPU tensor"


def test_explain_reference_and_explicit_backends():
    x = torch.zeros(1, 8, 8, 1)
    with sk.use_backend("reference"):
        assert sk.explain_backend("pixel_shuffle", x) == "reference: backend 'reference' was requested"
    if HAS_C_EXTENSION:
        with sk.use_backend("cpu"):
            assert sk.explain_backend("window_reverse", x) == "cpu: backend 'cpu' was requested"


def test_explicit_backend_that_cannot_run_is_explained_and_the_call_raises_saying_why():
    x = torch.zeros(1, 8, 8, 1)
    with sk.use_backend("cuda"):
        explained = sk.explain_backend("window_partition", x)
        assert re.fullmatch(r"backend 'cuda' cannot run window_partition: .*(cuda tensors|not available).*", explained)
        with pytest.raises(RuntimeError, match=re.escape(explained)):
            sk.window_partition(x, 8)  # the call itself raises the same reason: no silent fallback
    with sk.use_backend("triton"):
        if TRITON_INTERPRET:
            assert "bfloat16 wrongly" in sk.explain_backend("pixel_shuffle", x.bfloat16())
            # Permutations only move bits, exact in bfloat16 even under the interpreter.
            assert sk.explain_backend("window_partition", x.bfloat16()) == "triton: backend 'triton' was requested"


def test_explain_backend_says_triton_needs_a_gpu_or_the_interpreter():
    """Issue 23: after use_backend("triton") on a CPU without TRITON_INTERPRET, explain_backend explains."""
    done = run_python(
        """
        import torch, swinir_kernels as sk
        sk.use_backend("triton")
        print(sk.explain_backend("window_attention", torch.zeros(4, 64, 90), torch.zeros(3, 64, 64), num_heads=3))
        """,
        TRITON_INTERPRET=None,
    )
    assert done.returncode == 0, done.stderr
    assert "Triton runs CPU tensors only under TRITON_INTERPRET=1 (on a GPU it runs CUDA tensors)" in done.stdout


def test_explain_unknown_op_is_a_value_error():
    with pytest.raises(ValueError, match="op: expected one of .*got 'window_roll'"):
        sk.explain_backend("window_roll", torch.zeros(1))


def fake_cuda_tensor():
    """What the chooser reads of a CUDA tensor (device, dtype), on a machine without a GPU."""
    return SimpleNamespace(device=torch.device("cuda", 0), dtype=torch.float16)


def record(passed=True, kernel_ms=1.0, reference_ms=2.0, detail=""):
    return _verification.Record(passed, 0.0, detail, 0.0, 1.0, kernel_ms, reference_ms)


@pytest.fixture
def fake_gpu_records(monkeypatch):
    """An empty record store for a fake 'cuda:0' (no disk cache read)."""
    monkeypatch.setattr(_verification, "_records", {})
    monkeypatch.setattr(_verification, "_loaded", {"cuda:0"})
    return _verification._records


KEY = (("op", "pixel_shuffle"), ("dtype", "float16"))
BOTH = (("cuda", None), ("triton", None))


def test_auto_on_a_gpu_checks_unverified_kernels_first(fake_gpu_records):
    """No record: every runnable kernel is checked (eager) before any is used; traced: the reference."""
    assert _dispatch._decide("cuda:0", KEY, ("forward",), BOTH, True)[2] == (("cuda", ("forward",)), ("triton", ("forward",)))
    backend, reason, unchecked = _dispatch._decide("cuda:0", KEY, ("forward",), BOTH, False)
    assert (backend, unchecked) == ("reference", ()) and "no check runs inside torch.compile tracing" in reason


def test_auto_on_a_gpu_never_uses_a_failed_or_unrunnable_kernel(fake_gpu_records):
    fake_gpu_records[("cuda:0", "triton", "forward", KEY)] = record(passed=False, detail="result 0: max error 3")
    runnable = (("cuda", "_C was built without a cuda kernel for pixel_shuffle"), ("triton", None))
    backend, reason, _ = _dispatch._decide("cuda:0", KEY, ("forward",), runnable, True)
    assert backend == "reference"
    assert "cuda: _C was built without a cuda kernel" in reason and "triton: failed its check on this device" in reason


def test_auto_on_a_gpu_needs_the_backward_checked_for_a_training_call(fake_gpu_records):
    fake_gpu_records[("cuda:0", "triton", "forward", KEY)] = record()
    runnable = (("cuda", "not built"), ("triton", None))
    assert _dispatch._decide("cuda:0", KEY, ("forward",), runnable, True)[0] == "triton"
    assert _dispatch._decide("cuda:0", KEY, ("forward", "backward"), runnable, True)[2] == (("triton", ("backward",)),)


def test_auto_on_a_gpu_prefers_the_reference_over_a_clearly_slower_kernel(fake_gpu_records):
    fake_gpu_records[("cuda:0", "triton", "forward", KEY)] = record(kernel_ms=3.0, reference_ms=2.0)
    backend, reason, _ = _dispatch._decide("cuda:0", KEY, ("forward",), (("triton", None),), True)
    assert backend == "reference" and "slower than the reference" in reason
    fake_gpu_records[("cuda:0", "triton", "forward", KEY)] = record(kernel_ms=2.1, reference_ms=2.0)  # a tie
    assert _dispatch._decide("cuda:0", KEY, ("forward",), (("triton", None),), True)[0] == "triton"


def test_explain_a_gpu_call_without_its_arguments():
    assert _dispatch.plan(registry.get("pixel_shuffle"), None, fake_cuda_tensor()).backend == "unknown"


# Blocks `swinir_kernels._C` as if the extension were not built, counts the package's warnings,
# then checks the ops run, on the reference backend.
WITHOUT_C_EXTENSION = """
    import importlib.abc, sys, warnings

    class BlockExtension(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "swinir_kernels._C":
                raise ImportError("blocked by the test")
            return None

    sys.meta_path.insert(0, BlockExtension())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import torch
        import swinir_kernels as sk
        from swinir_kernels import reference
        x = torch.arange(2 * 16 * 24 * 3, dtype=torch.float32).reshape(2, 16, 24, 3)
        windows = sk.window_partition(x, 8, 4)
        assert torch.equal(windows, reference.window_partition(x, 8, 4))
        assert torch.equal(sk.window_reverse(windows, 8, 16, 24, 4), x)
        y = torch.randn(1, 12, 3, 4)
        assert torch.equal(sk.pixel_shuffle(y, 2), torch.nn.functional.pixel_shuffle(y, 2))
        print(sk.explain_backend("window_partition", x))
        try:
            sk.use_backend("cpu")
            sk.window_partition(x, 8)
        except RuntimeError as error:
            print(error)
    ours = [str(w.message) for w in caught if "swinir_kernels" in str(w.message)]
    print(len(ours))
    print(ours[0])
"""


def test_import_without_the_extension_warns_once_and_uses_the_reference():
    done = run_python(WITHOUT_C_EXTENSION, TRITON_INTERPRET=None)
    assert done.returncode == 0, done.stderr
    explained, refused, count, warning = done.stdout.splitlines()
    assert explained.startswith("reference: auto: reference, since the C++ extension swinir_kernels._C is not available")
    assert "backend 'cpu' cannot run window_partition" in refused and "blocked by the test" in refused
    assert count == "1"
    assert "extension is not built" in warning and "pip install --no-build-isolation -e ." in warning


def test_requested_cuda_backend_names_the_attention_window_limit():
    """The chooser passes the call's window and head sizes to the CUDA limits (a 33 x 32 window, 1056
    tokens, is beyond the CUDA kernels' 1024): the error names the limit, not some later failure."""
    qkv = torch.zeros(1, 33, 32, 3 * 8)
    args = (qkv, torch.zeros(2, 1056, 1056), 2, (33, 32), (16, 16), None)
    with sk.use_backend("cuda"):
        choice = _dispatch.plan(registry.get("shifted_window_attention"), args)
    assert choice.refused and "at most 1024 tokens per window, got 1056" in choice.reason


@pytest.fixture
def short_switch_interval():
    """Threads switch every microsecond, so that interleavings a server would meet happen here."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


def test_explain_backend_in_another_thread_never_changes_what_calls_return(short_switch_interval):
    """Two threads call window_attention while a third calls explain_backend: every call returns its
    tensor (explain_backend is a pure plan, with no module-global flag)."""
    qkv, rel_bias = torch.randn(4, 16, 3 * 8), torch.randn(2, 16, 16)
    expected = reference.window_attention(qkv, rel_bias, None, 2, 4**-0.5)
    results, explained, done = [], [], threading.Event()

    def call():
        for _ in range(40):
            results.append(sk.window_attention(qkv, rel_bias, num_heads=2))

    def explain():
        while not done.is_set():
            explained.append(sk.explain_backend("window_attention", qkv, rel_bias, num_heads=2))

    explainer = threading.Thread(target=explain)
    callers = [threading.Thread(target=call) for _ in range(2)]
    explainer.start()
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join()
    done.set()
    explainer.join()
    assert len(results) == 80 and explained
    for out in results:
        assert isinstance(out, torch.Tensor)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert all(isinstance(text, str) and ": " in text for text in explained)


def test_plan_changes_nothing():
    """plan() reads the setting and the records; it writes neither, nor the latest-use report."""
    x = torch.randn(1, 8, 8, 3)
    before = (dict(_verification._records), dict(_dispatch._last_used), _backend.current())
    for backend in ("auto", "reference", "cuda"):
        with sk.use_backend(backend):
            _dispatch.plan(registry.get("window_partition"), (x, 8, 4))
    assert (dict(_verification._records), dict(_dispatch._last_used), _backend.current()) == before
