"""Every Triton kernel launch of the ops compiles to GPU machine code for sm_80 (A100) and sm_90
(H100/H200), here, without a GPU.

The interpreter that runs the Triton tests on CPU executes the kernels' Python semantics; it does not
check what only the GPU compiler checks (tl.dot shapes and dtypes, layouts, register and shared-memory
lowering, ptxas). So this file, run as a script without TRITON_INTERPRET, intercepts the launches
(JITFunction.run) made by the ops' own Python
launchers on CPU tensors for representative shapes and dtypes, and compiles each distinct launch
ahead of time with triton.compile(ASTSource, GPUTarget) down to a cubin (ptxas ships with Triton).
Pointers are marked 16-byte aligned, as a launch of fresh torch allocations marks them; integer
arguments get no divisibility hints here (a launch adds them; they only widen memory accesses). Nothing runs, so outputs are not checked here: that needs a GPU (bench/gpu_check.sh).

Each launch carries its own configuration (warps, stages: a pure function of the shape, no autotuning),
so what is compiled here is exactly what a GPU compiles. The sm_90 cubins' resource usage
(cuobjdump -res-usage: registers, spill stack and local memory, shared memory) and the width of their
global loads and stores (from the PTX) are printed, and no
kernel may spill on sm_90 (but those listed in MAY_SPILL).
"""

import os
import sys

import pytest

from tests.conftest import ROOT, run_python

# (ws, shift, C, num_heads, dtype name, fp32 dot precision): head_dim 30 and 10, windows 8 and 7 (N 64
# and 49), masked and unmasked, every dtype, and the TF32 dots of fp32.
ATTENTION_CASES = [
    (8, 4, 60, 2, "float32", "ieee"),
    (8, 4, 60, 2, "float32", "tf32"),
    (8, 0, 20, 2, "bfloat16", "ieee"),
    (7, 3, 60, 2, "float16", "ieee"),
    (8, 4, 128, 2, "bfloat16", "ieee"),
    (8, 4, 60, 2, "float64", "ieee"),
]

# (kernel, qkv pointer type) allowed to spill: the fp64 attention backward (a correctness path whose
# FMA dots hold 64x32 fp64 tiles; it spills at 8 and at 16 warps). The check is on sm_90, the target
# the configurations are chosen for (sm_80 backward launches spill 8-72 bytes at 8 warps: reported).
MAY_SPILL = {("_window_attention_bwd_kernel", "*fp64")}


def test_triton_kernels_compile_for_sm80_and_sm90():
    pytest.importorskip("triton")
    # ~2 minutes on 2 cores with a cold Triton cache (seconds with a warm one).
    script = f"import runpy; runpy.run_path({__file__!r}, run_name='__main__')"
    result = run_python(script, timeout=900, TRITON_INTERPRET=None)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "compiled" in result.stdout, result.stdout


def _resource_usage(cubin: bytes) -> dict:
    """{"REG", "STACK", "SHARED", "LOCAL", ...}: the kernel's line of `cuobjdump -res-usage` (Triton's own
    cuobjdump), in registers per thread and bytes."""
    import re
    import subprocess
    import tempfile

    import shutil

    import triton.backends.nvidia

    cuobjdump = os.path.join(os.path.dirname(triton.backends.nvidia.__file__), "bin", "cuobjdump")
    if not os.path.exists(cuobjdump):  # a Triton without its bundled CUDA tools: the CUDA toolkit's
        cuobjdump = shutil.which("cuobjdump") or cuobjdump
    with tempfile.NamedTemporaryFile(suffix=".cubin") as file:
        file.write(cubin)
        file.flush()
        report = subprocess.run([cuobjdump, "-res-usage", file.name], capture_output=True, text=True, check=True).stdout
    usage = dict(re.findall(r"(\w+):(\d+)", report.split("Resource usage:")[-1]))
    return {key: int(value) for key, value in usage.items()}


def _compile(launch: tuple) -> tuple[float, dict]:
    """Compiles one recorded launch (module, kernel name, signature, constexprs, options, sm) to a
    cubin; returns the seconds it took and its resource usage. Runs in a worker process."""
    import importlib
    import time

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    module, name, signature, constexprs, options, sm = launch
    kernel = getattr(importlib.import_module(module), name)
    # Pointers 16-byte aligned, as a launch of fresh torch allocations specializes them.
    aligned = {(i,): [["tt.divisibility", 16]] for i, kind in enumerate(signature.values()) if kind.startswith("*")}
    start = time.perf_counter()
    try:
        source = ASTSource(kernel, signature, constexprs, aligned)
        binary = triton.compile(source, target=GPUTarget("cuda", sm, 32), options=options)
    except Exception as error:
        raise AssertionError(f"{name} does not compile for sm_{sm} with {constexprs} {options}: {error}") from error
    assert binary.asm.get("cubin"), f"{name}: no cubin for sm_{sm}"
    usage = _resource_usage(binary.asm["cubin"])
    usage["global access bytes"] = _global_access_widths(binary.asm["ptx"])
    return time.perf_counter() - start, usage


def _global_access_widths(ptx: str) -> dict:
    """{"ld 4": n, "st 16": m, ...}: global loads and stores in the PTX by bytes per instruction."""
    import collections
    import re

    widths = collections.Counter()
    for op, vector, bits in re.findall(r"\b(ld|st)\.global(?:\.[a-z]+)*?(?:\.v(\d))?\.[bfsu](\d+)\b", ptx):
        widths[f"{op} {int(vector or 1) * int(bits) // 8}"] += 1
    return dict(sorted(widths.items()))


def _compile_every_launch() -> None:
    import multiprocessing
    import time

    import torch
    from triton.runtime.jit import JITFunction

    sys.path.insert(0, ROOT)
    from swinir_kernels import triton as triton_backend

    assert triton_backend.UNAVAILABLE is None, triton_backend.UNAVAILABLE
    pointer_types = {
        torch.float32: "*fp32", torch.float16: "*fp16", torch.bfloat16: "*bf16", torch.float64: "*fp64",
        torch.int8: "*i8", torch.int16: "*i16", torch.int32: "*i32", torch.int64: "*i64",
    }  # fmt: skip
    launches: dict[str, tuple] = {}  # repr -> launch, distinct launches in order

    def scalar_type(value):
        if isinstance(value, torch.Tensor):
            return pointer_types[value.dtype]
        if isinstance(value, bool):
            return "i1"
        if isinstance(value, int):
            return "i32" if -(2**31) <= value < 2**31 else "i64"
        if isinstance(value, float):
            return "fp32"
        raise TypeError(f"unexpected kernel argument {value!r}")

    def record(kernel: JITFunction, args, kwargs, sms) -> None:
        # Keyword arguments that are not kernel parameters are compile options (num_warps, num_stages...).
        options = {k: kwargs.pop(k) for k in list(kwargs) if k not in kernel.arg_names}
        options = {k: v for k, v in options.items() if v is not None}
        bound = dict(zip(kernel.arg_names, args), **kwargs)
        constexprs = {
            name: bound[name]
            for name, param in zip(kernel.arg_names, kernel.params)
            if param.is_constexpr or bound[name] is None
        }
        signature = {name: "constexpr" if name in constexprs else scalar_type(bound[name]) for name in kernel.arg_names}
        for sm in sms:
            launch = (kernel.__module__, kernel.__name__, signature, constexprs, options, sm)
            launches.setdefault(repr(launch), launch)

    def launch(self: JITFunction, *args, grid, warmup=False, **kwargs):
        record(self, args, dict(kwargs), (80, 90))

    JITFunction.run = launch
    # The attention launcher refuses CPU tensors without the interpreter (they cannot run); these are
    # only compiled, so let its other checks see a tensor of no device.
    attention_module = sys.modules["swinir_kernels.triton.window_attention"]  # the package's name is the op
    check_launch = attention_module._check_launch
    attention_module._check_launch = lambda qkv, tokens: check_launch(qkv.to("meta"), tokens)

    # The launchers run on CPU tensors: they allocate and reduce with torch, and launch nothing.
    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        for C in (3, 180):
            x = torch.zeros(2, 16, 24, C, dtype=dtype)
            windows = triton_backend.window_partition(x, 8, 4)
            triton_backend.window_reverse(windows, 8, 16, 24, 4)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for memory_format in (torch.contiguous_format, torch.channels_last):
            x = torch.zeros(1, 48, 8, 8, dtype=dtype).contiguous(memory_format=memory_format).requires_grad_()
            for scale, bias in ((None, None), (torch.ones(3, dtype=dtype), torch.zeros(3, dtype=dtype))):
                out = triton_backend.pixel_shuffle(x, 4, scale, bias, 30, 31)
                torch.autograd.grad(out, x, torch.zeros_like(out))
    for ws, shift, C, num_heads, dtype_name, precision in ATTENTION_CASES:
        os.environ["SWINIR_KERNELS_FP32_PRECISION"] = precision
        dtype = getattr(torch, dtype_name)
        qkv = torch.zeros(1, 2 * ws, 3 * ws, 3 * C, dtype=dtype, requires_grad=True)
        bias = torch.zeros(num_heads, ws * ws, ws * ws, dtype=dtype, requires_grad=True)
        scale = (C // num_heads) ** -0.5
        out = triton_backend.shifted_window_attention(qkv, bias, num_heads, ws, shift, scale)
        torch.autograd.grad(out, (qkv, bias), torch.zeros_like(out))
        windows = torch.zeros(6, ws * ws, 3 * C, dtype=dtype, requires_grad=True)
        mask = torch.zeros(6, ws * ws, ws * ws, dtype=dtype)
        out = triton_backend.window_attention(windows, bias, mask, num_heads, scale)
        torch.autograd.grad(out, (windows, bias), torch.zeros_like(out))
    # Compiling is single-threaded LLVM and ptxas: one worker per core. Fresh (spawned) workers, which
    # import the kernels' modules themselves: nothing of this process's patching is needed there.
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(os.cpu_count() or 1) as pool:
        results = pool.map(_compile, list(launches.values()), chunksize=1)
    spilling = []
    for (module, name, signature, constexprs, options, sm), (_, usage) in zip(launches.values(), results):
        key = {k: v for k, v in constexprs.items() if v is not None}
        print(f"sm_{sm} {name} {signature.get('qkv_ptr', '')} {key} {options}: {usage}")
        spills = usage.get("STACK", 0) or usage.get("LOCAL", 0)
        if spills and sm == 90 and (name, signature.get("qkv_ptr")) not in MAY_SPILL:
            spilling.append(f"{name} sm_{sm} {constexprs} {options}: {usage}")
    assert not spilling, "kernels that spill:\n" + "\n".join(spilling)
    kernels = sorted({launch[1] for launch in launches.values()})
    print(
        f"compiled {len(launches)} launches of {len(kernels)} kernels ({', '.join(kernels)}) for sm_80/sm_90 in "
        f"{time.perf_counter() - start:.0f} s ({sum(seconds for seconds, _ in results):.0f} s of compile time)"
    )


if __name__ == "__main__":
    _compile_every_launch()
