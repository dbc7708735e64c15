"""First-use verification of kernels on the user's device (swinir_kernels._verification), run on the CPU
with the test-only stand-in (CPU tensors treated as a GPU, the C++ CPU kernels as its kernels): the
check before first use, the disk cache (reuse, corrupt, stale after a kernel-source change, unwritable,
two processes at once), auto's choice (a wrong kernel refused with one warning and correct results, a
slow kernel not picked, a failing backward), torch.compile (no check while tracing), and that the
small check input runs the very Triton binaries of the call it checks."""

import glob
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import pytest
import torch

import swinir_kernels as sk
from swinir_kernels import _backend, _dispatch, _verification, reference, registry, tolerances
from swinir_kernels.registry.op import Op
from tests.helpers import HAS_C_EXTENSION, ROOT, run_python

REAL_TIMER = _verification._time_ms
pytestmark = pytest.mark.skipif(not HAS_C_EXTENSION, reason="the stand-in device runs the C++ CPU kernels")


@pytest.fixture
def stand_in(monkeypatch, tmp_path):
    """CPU tensors stand in for a GPU whose only kernel is the C++ one; a fresh cache; a fresh process memory."""
    monkeypatch.setattr(_backend, "STAND_IN", True)
    monkeypatch.setattr(_backend, "STAND_IN_BACKENDS", ("cpu",))
    monkeypatch.setenv("SWINIR_KERNELS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(_verification, "cache_problem", None)
    # Equal timings (a tie keeps the kernel), so that load on the machine cannot flip a choice; the
    # tests of speed restore the real timer.
    monkeypatch.setattr(_verification, "_time_ms", lambda function, device: function() and 1.0)
    _verification.clear_memory()
    yield tmp_path / "cache"
    _verification.clear_memory()


def count_checks(monkeypatch) -> list:
    calls = []
    check = _verification.check

    def counted(op, backend, args, *rest, **kwargs):
        calls.append((backend, op.name))
        return check(op, backend, args, *rest, **kwargs)

    monkeypatch.setattr(_verification, "check", counted)
    return calls


def with_wrong(monkeypatch, backend: str, op: str, wrong):
    """Makes `backend`'s `op` the function wrong(correct_function)."""
    implementation = Op.implementation

    def patched(self, name):
        function = implementation(self, name)
        return wrong(function) if (name, self.name) == (backend, op) else function

    monkeypatch.setattr(Op, "implementation", patched)


def attention_call(requires_grad=False):
    qkv = torch.randn(2, 16, 24, 3 * 20, requires_grad=requires_grad)
    rel_bias = torch.randn(2, 64, 64, requires_grad=requires_grad)
    return qkv, rel_bias, dict(num_heads=2, window_size=8, shift=4)


def test_first_use_checks_once_then_reuses_the_record(stand_in, monkeypatch):
    checks = count_checks(monkeypatch)
    x = torch.randn(2, 16, 24, 20)
    assert sk.explain_backend("window_partition", x, 8, 4).startswith("unchecked: auto: cpu not verified on this device")
    assert torch.equal(sk.window_partition(x, 8, 4), reference.window_partition(x, 8, 4))
    assert sk.window_partition(x, 8, 4).shape == (12, 64, 20)
    assert checks == [("cpu", "window_partition")]
    explained = sk.explain_backend("window_partition", x, 8, 4)
    assert explained.startswith("cpu: auto: cpu, the fastest kernel for this specialization, verified on this device at ")
    assert "backends_used" and sk.backends_used()["window_partition"].startswith("cpu: auto: cpu")
    # Another specialization (shift 0, another channel count) is checked on its own.
    sk.window_partition(torch.randn(1, 8, 8, 3), 8, 0)
    assert len(checks) == 2
    # One file per (backend, direction, specialization), valid JSON, naming what it covers.
    files = glob.glob(str(stand_in / "verified-*" / "*.json"))
    assert len(files) == 2
    data = json.load(open(files[0]))
    assert data["record"]["passed"] and data["fingerprint"]["kernel_sources"] == _verification.kernel_source_hash()


def test_a_new_process_reads_the_disk_cache_without_checking(stand_in, monkeypatch):
    qkv, rel_bias, kwargs = attention_call(requires_grad=True)
    sk.shifted_window_attention(qkv, rel_bias, **kwargs).sum().backward()  # checks forward and backward
    _verification.clear_memory()  # as if a new process started
    checks = count_checks(monkeypatch)
    out = sk.shifted_window_attention(qkv, rel_bias, **kwargs)
    out.sum().backward()
    assert checks == []
    assert "by an earlier process (disk cache)" in sk.explain_backend("shifted_window_attention", qkv, rel_bias, **kwargs)


def test_wrong_kernel_is_refused_with_one_warning_and_results_stay_correct(stand_in, monkeypatch):
    with_wrong(monkeypatch, "cpu", "shifted_window_attention", lambda f: lambda *a: f(*a) * 1.01)
    qkv, rel_bias, kwargs = attention_call()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = sk.shifted_window_attention(qkv, rel_bias, **kwargs)
        second = sk.shifted_window_attention(qkv, rel_bias, **kwargs)
    expected = reference.shifted_window_attention(qkv, rel_bias, 2, 8, 4)
    assert torch.equal(first, expected) and torch.equal(second, expected)
    ours = [str(w.message) for w in caught if "swinir_kernels" in str(w.message)]
    assert len(ours) == 1, ours
    message = ours[0]
    for needed in ("the cpu kernel of shifted_window_attention failed its first-use check",
                   "num_heads=2 head_dim=10 tokens=64 window_size=8 mask=shift", "beyond atol=1e-05",
                   "torch " + torch.__version__, "swinir_kernels 0.1.0", "kernel_sources",
                   "Please report it on the swinir-kernels issue tracker",
                   "python -m swinir_kernels.selftest"):
        assert needed in message, (needed, message)
    explained = sk.explain_backend("shifted_window_attention", qkv, rel_bias, **kwargs)
    assert explained.startswith("reference: auto: reference, since cpu: failed its check on this device at ")
    # A later process reads the failure from the cache, does not check again, and warns once too.
    _verification.clear_memory()
    with pytest.warns(RuntimeWarning, match="checked by an earlier process"):
        assert torch.equal(sk.shifted_window_attention(qkv, rel_bias, **kwargs), expected)


def test_check_inside_autocast_compares_at_the_arguments_dtypes(stand_in):
    """Under CPU autocast the reference's products would run in bf16: the check turns autocast off."""
    qkv, rel_bias, kwargs = attention_call()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            sk.shifted_window_attention(qkv, rel_bias, **kwargs)
    assert sk.backends_used()["shifted_window_attention"].startswith("cpu: auto: cpu")


def test_kernel_that_raises_is_refused(stand_in, monkeypatch):
    def broken(function):
        def run(*args):
            raise RuntimeError("no kernel image is available for execution on the device")
        return run

    with_wrong(monkeypatch, "cpu", "pixel_shuffle", broken)
    x = torch.randn(1, 12, 5, 7)
    with pytest.warns(RuntimeWarning, match="no kernel image is available"):
        out = sk.pixel_shuffle(x, 2)
    assert torch.equal(out, torch.nn.functional.pixel_shuffle(x, 2))


def test_failing_backward_keeps_the_forward_for_inference_only(stand_in, monkeypatch):
    # A kernel whose gradient is wrong: forward = the C++ kernel, backward doubled.
    class DoubledGradient(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            return 2 * grad

    with_wrong(monkeypatch, "cpu", "window_reverse", lambda f: lambda w, *a: f(DoubledGradient.apply(w), *a))
    windows = torch.randn(6, 64, 4)
    assert sk.window_reverse(windows, 8, 16, 24, 4).shape == (1, 16, 24, 4)  # inference: forward only
    assert sk.backends_used()["window_reverse"].startswith("cpu:")
    trained = windows.clone().requires_grad_()
    with pytest.warns(RuntimeWarning, match="window_reverse failed its first-use check"):
        out = sk.window_reverse(trained, 8, 16, 24, 4)
    out.sum().backward()
    assert torch.equal(trained.grad, torch.ones_like(trained))  # the reference's gradient
    assert sk.backends_used()["window_reverse"].startswith("reference: auto: reference, since cpu: failed")
    with torch.no_grad():
        sk.window_reverse(windows, 8, 16, 24, 4)
    assert sk.backends_used()["window_reverse"].startswith("cpu:")


def test_slow_kernel_is_not_picked(stand_in, monkeypatch):
    import time

    def slow(function):
        def run(*args):
            time.sleep(0.05)
            return function(*args)
        return run

    monkeypatch.setattr(_verification, "_time_ms", REAL_TIMER)
    with_wrong(monkeypatch, "cpu", "window_partition", slow)
    x = torch.randn(1, 16, 16, 4)
    assert torch.equal(sk.window_partition(x, 8, 4), reference.window_partition(x, 8, 4))
    reason = sk.backends_used()["window_partition"]
    assert reason.startswith("reference: auto: reference, since cpu: verified on this device") and "slower than the reference" in reason


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="Triton runs CPU tensors only under TRITON_INTERPRET=1")
def test_stand_in_checks_triton_too_and_picks_the_faster(stand_in, monkeypatch):
    """Both stand-in kernels (C++ and the interpreted Triton) are checked at first use; auto takes the
    faster in the check (the C++ one: the interpreter runs each program in Python)."""
    pytest.importorskip("triton")
    monkeypatch.setattr(_backend, "STAND_IN_BACKENDS", ("cpu", "triton"))
    monkeypatch.setattr(_verification, "_time_ms", REAL_TIMER)
    checks = count_checks(monkeypatch)
    x = torch.randn(1, 8, 16, 3)
    assert torch.equal(sk.window_partition(x, 8, 4), reference.window_partition(x, 8, 4))
    assert checks == [("cpu", "window_partition"), ("triton", "window_partition")]
    assert sk.backends_used()["window_partition"].startswith("cpu: auto: cpu, the fastest kernel")
    # bf16 attention: the interpreter cannot run it, so only the C++ kernel is checked.
    qkv, rel_bias, kwargs = attention_call()
    sk.shifted_window_attention(qkv.bfloat16(), rel_bias, **kwargs)
    assert checks[2:] == [("cpu", "shifted_window_attention")]


def test_fastest_of_two_checked_kernels(stand_in, monkeypatch):
    """Two kernels pass; auto takes the one faster in its check (decided from the records)."""
    record = lambda ms: _verification.Record(True, 0.0, "", 0.0, 1.0, ms, 5.0)  # noqa: E731
    runnable = (("cuda", None), ("triton", None))
    key = (("op", "window_partition"),)
    _verification._loaded.add("cuda:0")  # no disk records for this fake device
    for fast, slow in (("cuda", "triton"), ("triton", "cuda")):
        _verification._records.update({("cuda:0", fast, "forward", key): record(1.0), ("cuda:0", slow, "forward", key): record(2.0)})
        backend, reason, unchecked = _dispatch._decide("cuda:0", key, ("forward",), runnable, True)
        assert (backend, unchecked) == (fast, ()) and "1 ms vs reference 5 ms" in reason
    _verification.clear_memory()
    _verification._loaded.add("cuda:0")
    assert _dispatch._decide("cuda:0", key, ("forward",), runnable, True)[2] == (("cuda", ("forward",)), ("triton", ("forward",)))


def test_corrupt_cache_file_is_ignored_and_rewritten(stand_in, monkeypatch):
    x = torch.randn(1, 8, 8, 2)
    sk.window_partition(x, 8, 4)
    (path,) = glob.glob(str(stand_in / "verified-*" / "*.json"))
    for garbage in ("{not json", json.dumps({"backend": "cpu"}), ""):
        with open(path, "w") as file:
            file.write(garbage)
        _verification.clear_memory()
        checks = count_checks(monkeypatch)
        assert torch.equal(sk.window_partition(x, 8, 4), reference.window_partition(x, 8, 4))
        assert len(checks) == 1
        assert json.load(open(path))["record"]["passed"]


def test_kernel_source_change_makes_the_cache_stale(stand_in, monkeypatch, tmp_path):
    source = tmp_path / "kernel.py"
    source.write_text("version 1")
    monkeypatch.setattr(_verification, "KERNEL_SOURCE_PATTERNS", (*_verification.KERNEL_SOURCE_PATTERNS, str(source)))

    def new_process():
        _verification.kernel_source_hash.cache_clear()
        _verification.fingerprint.cache_clear()
        _verification.clear_memory()

    try:
        new_process()
        checks = count_checks(monkeypatch)
        x = torch.randn(1, 8, 8, 2)
        sk.window_partition(x, 8, 4)
        new_process()
        sk.window_partition(x, 8, 4)
        assert len(checks) == 1  # same sources: reused
        source.write_text("version 2")
        new_process()
        sk.window_partition(x, 8, 4)
        assert len(checks) == 2  # changed sources: checked again, in a new folder
        assert len(glob.glob(str(stand_in / "verified-*"))) == 2
    finally:
        monkeypatch.undo()
        new_process()


def test_unwritable_cache_is_harmless(stand_in, monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("SWINIR_KERNELS_CACHE", str(blocker / "cache"))  # a folder under a file: cannot exist
    checks = count_checks(monkeypatch)
    x = torch.randn(1, 8, 8, 2)
    for _ in range(2):
        assert torch.equal(sk.window_partition(x, 8, 4), reference.window_partition(x, 8, 4))
    assert len(checks) == 1  # remembered in this process
    assert "is not writable" in sk.explain_backend("window_partition", x, 8, 4)


TWO_PROCESSES = """
    import sys, torch, swinir_kernels as sk
    from swinir_kernels import _backend, _verification, reference
    _backend.STAND_IN_BACKENDS = ("cpu",)
    checked = []
    check = _verification.check
    _verification.check = lambda *a, **k: checked.append(a[0].name) or check(*a, **k)
    if len(sys.argv) > 1:  # start the calls together with the other process (a file-based barrier)
        import os, pathlib, time
        barrier = pathlib.Path(sys.argv[1])
        (barrier / str(os.getpid())).touch()
        while len(list(barrier.iterdir())) < 2:
            time.sleep(0.01)
    torch.manual_seed(0)
    for ws, shift, channels in ((8, 4, 6), (8, 0, 6), (7, 3, 5), (4, 2, 3)):
        x = torch.randn(2, 2 * ws, 3 * ws, channels)
        assert torch.equal(sk.window_partition(x, ws, shift), reference.window_partition(x, ws, shift))
        q = torch.randn(1, 2 * ws, 2 * ws, 3 * channels, requires_grad=True)
        b = torch.randn(1, ws * ws, ws * ws, requires_grad=True)
        sk.shifted_window_attention(q, b, num_heads=1, window_size=ws, shift=shift).sum().backward()
    print(len(checked))
"""


def test_two_processes_share_the_cache_safely(tmp_path):
    env = {**os.environ, "PYTHONPATH": ROOT, "SWINIR_KERNELS_TEST_STAND_IN": "1", "SWINIR_KERNELS_CACHE": str(tmp_path)}
    env.pop("TRITON_INTERPRET", None)  # Triton cannot run CPU tensors then: the C++ kernels only
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    processes = [
        subprocess.Popen([sys.executable, "-c", textwrap.dedent(TWO_PROCESSES), str(barrier)], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    checks = 0
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        checks += int(out)
    # Together they checked every specialization at least once (which process checks which, and whether
    # both check one at the same moment, depends on timing; either way the cache must stay whole).
    assert checks >= 12
    files = glob.glob(str(tmp_path / "verified-*" / "*.json"))
    assert len(files) == 12  # 4 partitions (forward) + 4 attentions x (forward, backward): one file each
    assert all(json.load(open(path))["record"]["passed"] for path in files)
    assert not glob.glob(str(tmp_path / "verified-*" / ".tmp-*"))
    third = run_python(TWO_PROCESSES, SWINIR_KERNELS_TEST_STAND_IN="1", SWINIR_KERNELS_CACHE=str(tmp_path), TRITON_INTERPRET=None)
    assert third.returncode == 0, third.stderr
    assert third.stdout.strip() == "0"  # everything came from the cache


def test_compile_traces_without_checking_and_uses_earlier_checks(stand_in, monkeypatch):
    import torch._dynamo.testing

    checks = count_checks(monkeypatch)
    qkv, rel_bias, kwargs = attention_call()

    def block(q):
        return sk.shifted_window_attention(q, rel_bias, **kwargs)

    def compiled_ops():
        counter = torch._dynamo.testing.CompileCounterWithBackend("eager")
        torch._dynamo.reset()
        torch.testing.assert_close(torch.compile(block, backend=counter, fullgraph=True)(qkv), reference.shifted_window_attention(qkv, rel_bias, 2, 8, 4))
        return [n.target for n in counter.graphs[0].graph.nodes if n.op == "call_function"]

    # Not checked yet: the trace runs no check and uses the reference.
    assert torch.ops.swinir_kernels.shifted_window_attention not in compiled_ops()
    assert checks == []
    block(qkv)  # one eager call checks it
    assert checks == [("cpu", "shifted_window_attention")]
    assert compiled_ops() == [torch.ops.swinir_kernels.shifted_window_attention]
    assert len(checks) == 1


def test_no_check_during_cuda_graph_capture(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    assert not _verification.can_verify_now(torch.device("cuda", 0))
    assert _verification.can_verify_now(torch.device("cpu"))


def test_explain_on_a_gpu_without_the_arguments_says_what_to_pass():
    from types import SimpleNamespace

    fake_cuda = SimpleNamespace(device=torch.device("cuda", 0), dtype=torch.float16)
    choice = _dispatch.plan(registry.get("window_partition"), None, fake_cuda)
    assert choice.backend == "unknown" and "pass the call's arguments" in choice.reason


def test_check_cost_is_reported_per_specialization(stand_in, monkeypatch):
    """The check of a SwinIR-M attention specialization (forward + backward, C++ kernel, fp32) records
    what it cost; the target is < 50 ms on a GPU (docs/benchmarks.md#first-use-check-cost: CPU measurements)."""
    monkeypatch.setattr(_verification, "_time_ms", REAL_TIMER)
    qkv = torch.randn(1, 64, 64, 540, requires_grad=True)
    rel_bias = torch.randn(6, 64, 64, requires_grad=True)
    sk.shifted_window_attention(qkv, rel_bias, num_heads=6, window_size=8, shift=4)
    key = registry.get("shifted_window_attention").key((qkv, rel_bias, 6, 8, 4, 30**-0.5))
    record = _verification.lookup("cpu", "cpu", "backward", key)
    assert record.passed and 0 < record.check_ms < 5000


def test_tolerances_of_the_check():
    """One rule for tests and checks: bit-exact permutations, atol/rtol for fp32/fp64 (TF32 wider), and
    fp16/bf16 at most twice the same-dtype reference's error from fp64 plus a floor."""
    exact = torch.linspace(-1, 1, 101, dtype=torch.float64)
    fp32 = exact.float()
    assert tolerances.compare([fp32], [fp32], [exact], exact=True)[0]
    assert not tolerances.compare([fp32 + 1e-7], [fp32], [exact], exact=True)[0]
    assert tolerances.compare([fp32 + 5e-6], [fp32], [exact], exact=False)[0]
    passed, _, detail = tolerances.compare([fp32 + 1e-3], [fp32], [exact], exact=False)
    assert not passed and "beyond atol=1e-05" in detail
    assert tolerances.compare([fp32 + 1e-3], [fp32], [exact], exact=False, fp32_precision="tf32")[0]
    half = exact.half()
    assert tolerances.compare([half], [half], [exact], exact=False)[0]
    passed, error, detail = tolerances.compare([half + 0.01], [half], [exact], exact=False)
    assert not passed and error > 0.01 and "the torch.float16 reference's" in detail
    assert not tolerances.compare([fp32[:100]], [fp32], [exact], exact=False)[0]  # wrong shape


# --- the small check input runs the call's own specialization


def image(B, H, W, C, **kw):
    return torch.randn(B, H, W, C, **kw)


KEY_CASES = [
    ("window_partition", lambda: (image(3, 56, 70, 20), 7, 3)),
    ("window_partition", lambda: (image(16, 128, 64, 180), 8, 4)),
    ("window_reverse", lambda: (torch.randn(2 * 80, 64, 60), 8, 64, 80, 4)),
    ("shifted_window_attention", lambda: (image(1, 104, 104, 540), torch.randn(6, 64, 64), 6, 8, 4, 0.2)),
    ("shifted_window_attention", lambda: (image(2, 112, 49, 180, dtype=torch.float16), torch.randn(6, 49, 49), 6, 7, 0, 0.2)),
    ("shifted_window_attention", lambda: (image(16, 7, 7, 60), torch.randn(2, 49, 49), 2, 7, 3, 0.2)),
    ("window_attention", lambda: (torch.randn(3 * 169, 64, 180), torch.randn(6, 64, 64), torch.zeros(169, 64, 64), 6, 0.2)),
    ("window_attention", lambda: (torch.randn(130, 49, 60), torch.randn(2, 49, 49, dtype=torch.float64), None, 2, 0.2)),
    # The Swin family's windows: DAT's 8 x 32 shifted (4, 16), DRCT's head_dim 122 in HAT's 16 x 16, SRFormer's 22 x 22.
    ("shifted_window_attention", lambda: (image(2, 64, 96, 270), torch.randn(3, 256, 256), 3, (8, 32), (4, 16), 0.2)),
    ("shifted_window_attention", lambda: (image(1, 80, 48, 366, dtype=torch.bfloat16), torch.randn(3, 256, 256), 3, 16, 8, 0.2)),
    ("window_attention", lambda: (torch.randn(2 * 9, 484, 540), torch.randn(6, 484, 484), torch.zeros(9, 484, 484), 6, 0.2)),
    ("pixel_shuffle", lambda: (torch.randn(2, 48, 70, 300), 4, torch.ones(3), torch.zeros(3), 279, 1198)),
    ("pixel_shuffle", lambda: (torch.randn(1, 256, 64, 64).contiguous(memory_format=torch.channels_last), 2, None, None, 128, 128)),
    ("pixel_shuffle", lambda: (torch.randn(1, 12, 5, 7), 2, None, torch.zeros(3), 10, 14)),
]


@pytest.mark.parametrize("op, make", KEY_CASES, ids=[f"{op}-{i}" for i, (op, _) in enumerate(KEY_CASES)])
def test_small_input_has_the_key_and_is_small(op, make):
    args = make()
    description = registry.get(op)
    small = description.small_input(args, 0)
    assert description.key(small) == description.key(args)
    assert small[0].numel() <= args[0].numel()
    assert small[0].dtype == args[0].dtype


def test_unaligned_input_gets_an_unaligned_small_input():
    x = torch.randn(2 * 16 * 24 * 5 + 1)[1:].view(2, 16, 24, 5)
    assert x.data_ptr() % 16 != 0
    small = registry.get("window_partition").small_input((x, 8, 4), 0)[0]
    assert small.data_ptr() % 16 == x.data_ptr() % 16 and small.is_contiguous()


# Run as a script without the interpreter: the Triton launchers' launches are recorded (not run), and
# the specialization Triton compiles each one for (constexprs, integer and pointer specialization) is
# compared between a call and its small check input.
SAME_BINARIES = """
    import torch
    from triton._C.libtriton import native_specialize_impl
    from triton.backends.compiler import BaseBackend
    from triton.runtime.jit import JITFunction
    import swinir_kernels
    from swinir_kernels import registry
    import sys
    from tests.kernels.test_verification import KEY_CASES

    attention = sys.modules["swinir_kernels.triton.window_attention"]
    check_launch = attention._check_launch
    attention._check_launch = lambda qkv, *sizes: check_launch(qkv.to("meta"), *sizes)
    launched = []

    def signature(kernel, args, kwargs):
        bound = dict(zip(kernel.arg_names, args), **{k: v for k, v in kwargs.items() if k in kernel.arg_names})
        spec = []
        for name, param in zip(kernel.arg_names, kernel.params):
            value = bound[name]
            if param.is_constexpr or value is None:
                spec.append((name, repr(value)))
            else:
                # As a launch specializes it: do_not_specialize(_on_alignment) arguments are left alone.
                spec.append((name, native_specialize_impl(BaseBackend, value, False, not param.do_not_specialize,
                                                          not param.do_not_specialize_on_alignment)))
        return (kernel.__name__, tuple(spec))

    JITFunction.run = lambda self, *args, grid, warmup=False, **kwargs: launched.append(signature(self, args, kwargs))

    def launches(op, args):
        launched.clear()
        differentiable = op.differentiable(args)
        leaves = [a.detach().requires_grad_() if i in differentiable else a for i, a in enumerate(args)]
        out = op.implementation("triton")(*leaves)
        torch.autograd.grad(out, [leaves[i] for i in differentiable], torch.zeros_like(out))
        return set(launched)

    for name, make in KEY_CASES:
        op, args = registry.get(name), make()
        real, small = launches(op, args), launches(op, op.small_input(args, 0))
        assert small <= real, (op, small - real)
        print(name, len(real))
"""


def test_small_input_launches_only_the_calls_triton_binaries():
    pytest.importorskip("triton")
    done = run_python(SAME_BINARIES, TRITON_INTERPRET=None, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    assert len(done.stdout.splitlines()) == len(KEY_CASES)


def test_concurrent_first_uses_check_a_specialization_once(stand_in, monkeypatch):
    """Several threads hit the first use of one specialization at once (a short switch interval and a
    slow check widen the window): it is checked once, the others wait for that result, and every thread
    gets the correct tensor."""
    calls = []
    check = _verification.check

    def slow_check(op, backend, args, *rest, **kwargs):
        calls.append((backend, op.name))
        time.sleep(0.05)
        return check(op, backend, args, *rest, **kwargs)

    monkeypatch.setattr(_verification, "check", slow_check)
    qkv, rel_bias, kwargs = attention_call()
    expected = reference.shifted_window_attention(qkv, rel_bias, 2, 8, 4)
    start, results = threading.Barrier(4), []

    def call():
        start.wait()
        results.append(sk.shifted_window_attention(qkv, rel_bias, **kwargs))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=call) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert calls == [("cpu", "shifted_window_attention")]
    assert len(results) == 4
    for out in results:
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
