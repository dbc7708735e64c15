"""Static GPU report: every GPU kernel of the package compiled for sm_90 (H100/H200) and sm_80 (A100) on
this machine, without a GPU, and read off the machine code.

    python -m bench.static_report            # writes bench/results/static-report.{csv,md}
    python -m bench.static_report --check    # also fails on spills and exceeded register budgets

For each kernel specialization (a Triton kernel with one set of constexprs, argument types and launch
options, as the ops' own launchers choose them for the shapes below; a CUDA kernel template instance):

* registers per thread, spill stores/loads and stack (local memory) from ptxas;
* shared memory: static from the cubin; for Triton, what the compiled kernel asks at launch;
* theoretical occupancy (resident warps per SM over 64) from registers, threads and shared memory,
  with the occupancy rules of the CUDA occupancy calculator for compute capability 8.0 / 9.0;
* tensor-core instructions (HMMA, HGMMA = wgmma, IMMA, DMMA) and the widths of global loads and
  stores (LDG/STG .32/.64/.128 counts) from the SASS.

Register budgets are declared next to each kernel, in a comment line just above its definition
(``# register budget: 128`` above ``@triton.jit``, ``// register budget: 128`` above ``__global__``
or its ``template``); --check fails on a kernel that spills, lacks a budget or exceeds it.

Triton launches are intercepted (``JITFunction.run``) while the ops' Python launchers run on CPU tensors
(nothing executes), then compiled ahead of time with ``triton.compile(ASTSource, GPUTarget)``, one
worker process per core. CUDA files go through ``nvcc -cubin`` with the flags of ``.ci/check_cuda.sh``.
The SASS tools (cuobjdump) are the ones Triton ships.
"""

import argparse
import csv
import hashlib
import importlib
import math
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
import time
from dataclasses import asdict, dataclass, fields

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
SMS = (90, 80)

# Per-SM limits of the CUDA occupancy calculator (compute capability 8.0 = A100, 9.0 = H100/H200).
SM_LIMITS = {
    80: {"registers": 65536, "shared": 167936, "threads": 2048, "blocks": 32},
    90: {"registers": 65536, "shared": 233472, "threads": 2048, "blocks": 32},
}
REGISTER_UNIT = 256  # registers are allocated per warp in units of 256
WARP_GRANULARITY = 4  # warps are allocated in groups of 4 against the register file
SHARED_UNIT = 128  # shared memory is allocated per block in units of 128 bytes
SHARED_RESERVED = 1024  # bytes the system reserves per block (8.0 and later)

TENSOR_CORE_OPCODES = ("HMMA", "HGMMA", "IMMA", "IGMMA", "DMMA", "QGMMA", "BMMA")


@dataclass
class KernelReport:
    backend: str  # triton | cuda
    kernel: str
    specialization: str  # constexprs, argument dtypes and options (Triton) or the template arguments (CUDA)
    sm: int
    registers: int
    register_budget: int  # 0 when none is declared
    spill_store_bytes: int
    spill_load_bytes: int
    stack_bytes: int
    static_shared_bytes: int
    launch_shared_bytes: int  # Triton: the compiled kernel's shared memory; CUDA: -1 (set per launch)
    threads: int  # per block; CUDA: -1 (set per launch)
    occupancy: str  # resident warps / 64 from registers, threads and shared memory; "-" when unknown
    tensor_core_instructions: int
    global_loads: str  # "width:count" of LDG/LD.E by bits
    async_copies: str  # "width:count" of LDGSTS (cp.async global -> shared: a software-pipelined load)
    global_stores: str
    compile_seconds: float


# ----------------------------------------------------------------------------------------------------
# Register budgets, declared in the sources next to the kernels


BUDGET = re.compile(r"register budget:\s*(\d+)((?:\s*;\s*\S+\s+\d+)*)")


def declared_budgets(path: str, definition: re.Pattern) -> dict[str, tuple[int, dict[str, int]]]:
    """kernel name -> (budget, {specialization part: budget}) from the comment just above its definition:
    ``register budget: 176; qkv_ptr:*fp64 255`` gives 176, and 255 to the specializations whose
    description contains ``qkv_ptr:*fp64``."""
    lines = open(path, encoding="utf-8").read().splitlines()
    budgets = {}
    for index, line in enumerate(lines):
        match = definition.search(line)
        if not match:
            continue
        # Walk up over decorators, template lines and the comment block directly above.
        above = index - 1
        while above >= 0 and lines[above].strip() and not BUDGET.search(lines[above]):
            stripped = lines[above].strip()
            if not (stripped.startswith(("#", "//", "@", "template")) or stripped.endswith(",")):
                break
            above -= 1
        found = BUDGET.search(lines[above]) if above >= 0 else None
        if found:
            overrides = dict(part.split() for part in found.group(2).split(";") if part.strip())
            budgets[match.group(1)] = (int(found.group(1)), {k: int(v) for k, v in overrides.items()})
    return budgets


def budget_for(budgets: dict, kernel: str, specialization: str) -> int:
    """The register budget of one specialization (0: none declared)."""
    base, overrides = budgets.get(kernel, (0, {}))
    return next((budget for part, budget in overrides.items() if part in specialization.split()), base)


# ----------------------------------------------------------------------------------------------------
# SASS and ptxas output


def nvidia_tool(name: str) -> str:
    import triton

    path = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{name} not found at {path} (it ships with Triton's NVIDIA backend)")
    return path


def sass_by_function(cubin: str) -> dict[str, list[str]]:
    """Mangled function name -> its SASS opcodes (with modifiers, e.g. LDG.E.128.CONSTANT)."""
    text = subprocess.run([nvidia_tool("cuobjdump"), "-sass", cubin], capture_output=True, text=True, check=True).stdout
    functions: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        header = re.match(r"\s*Function : (\S+)", line)
        if header:
            current = functions.setdefault(header.group(1), [])
            continue
        instruction = re.match(r"\s*/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)", line)
        if instruction and current is not None:
            current.append(instruction.group(1))
    return functions


def resource_usage(cubin: str) -> dict[str, dict[str, int]]:
    """Mangled function name -> REG, STACK, SHARED, LOCAL from cuobjdump -res-usage."""
    text = subprocess.run(
        [nvidia_tool("cuobjdump"), "-res-usage", cubin], capture_output=True, text=True, check=True
    ).stdout
    usage, current = {}, None
    for line in text.splitlines():
        header = re.match(r"\s*Function (\S+):", line)
        if header:
            current = header.group(1)
        elif current and "REG:" in line:
            usage[current] = {k: int(v) for k, v in re.findall(r"(\w+):(\d+)", line)}
            current = None
    return usage


def ptxas_spills(log: str) -> dict[str, tuple[int, int, int]]:
    """Mangled function name -> (stack frame, spill stores, spill loads) bytes from `ptxas -v` output."""
    spills, current = {}, None
    for line in log.splitlines():
        properties = re.search(r"Function properties for (\S+)", line)
        if properties:
            current = properties.group(1)
            continue
        numbers = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if numbers and current:
            spills[current] = tuple(int(n) for n in numbers.groups())
            current = None
    return spills


def memory_widths(opcodes: list[str], prefixes: tuple[str, ...]) -> str:
    """'128:n 64:n 32:n ...' for the global memory instructions among `opcodes` (width in bits; no
    suffix means 32 bits, .U8/.S16... the sub-word widths)."""
    counts: dict[int, int] = {}
    for opcode in opcodes:
        parts = opcode.split(".")
        if parts[0] not in prefixes:
            continue
        width = 32
        for part in parts[1:]:
            if part in ("64", "128", "256"):
                width = int(part)
            elif part in ("U8", "S8"):
                width = 8
            elif part in ("U16", "S16"):
                width = 16
        counts[width] = counts.get(width, 0) + 1
    return " ".join(f"{width}:{counts[width]}" for width in sorted(counts, reverse=True)) or "-"


def tensor_core_count(opcodes: list[str]) -> int:
    return sum(1 for opcode in opcodes if opcode.split(".")[0] in TENSOR_CORE_OPCODES)


def occupancy(sm: int, registers: int, threads: int, shared_bytes: int) -> str:
    """Resident warps per SM / 64 and what limits them, by the occupancy calculator's rules."""
    if threads <= 0 or shared_bytes < 0:
        return "-"
    limits = SM_LIMITS[sm]
    warps = math.ceil(threads / 32)
    per_warp = math.ceil(max(registers, 1) * 32 / REGISTER_UNIT) * REGISTER_UNIT
    warps_by_registers = (limits["registers"] // per_warp) // WARP_GRANULARITY * WARP_GRANULARITY
    block_shared = math.ceil(shared_bytes / SHARED_UNIT) * SHARED_UNIT + SHARED_RESERVED
    by = {
        "registers": warps_by_registers // warps,
        "shared": limits["shared"] // block_shared,
        "threads": limits["threads"] // (warps * 32),
        "blocks": limits["blocks"],
    }
    blocks = min(by.values())
    limiter = min(by, key=by.get)
    return f"{blocks * warps}/64 ({blocks} blocks, {limiter})"


# ----------------------------------------------------------------------------------------------------
# Triton: record the ops' launches, compile each


def _triton_shapes():
    """Calls the Triton launchers on CPU tensors for the shapes the tests use (windows 7 and 8, shift 0
    and ws//2, head_dim 30 and 10, masked and unmasked, both layouts, every dtype, the fp32 dot modes),
    the SwinIR-M (C 180) and -S (C 60) shapes, and the flash kernels' large windows (HAT 16x16, DAT 8x32,
    SRFormer 22x22, DRCT's head_dim 122); yields nothing, the launches are recorded."""
    import torch


    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        for channels in (3, 180):
            x = torch.zeros(2, 16, 24, channels, dtype=dtype)
            windows = torch.ops.swinir_kernels.window_partition_triton(x, 8, 4)
            torch.ops.swinir_kernels.window_reverse_triton(windows, 8, 16, 24, 4)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for memory_format in (torch.contiguous_format, torch.channels_last):
            x = torch.zeros(1, 48, 8, 8, dtype=dtype).contiguous(memory_format=memory_format).requires_grad_()
            for scale, bias in ((None, None), (torch.ones(3, dtype=dtype), torch.zeros(3, dtype=dtype))):
                out = torch.ops.swinir_kernels.pixel_shuffle_triton(x, 4, scale, bias, 30, 31)
                torch.autograd.grad(out, x, torch.zeros_like(out))
    # (ws, shift, C, heads, dtype, fp32 dot precision), both layouts: head_dim 30, 10 and 64, windows 8
    # and 7 (N 64 and 49), masked and unmasked, every dtype, the TF32 dots of fp32 (the tests' cases).
    test_cases = [
        (8, 4, 60, 2, "float32", "ieee"),
        (8, 4, 60, 2, "float32", "tf32"),
        (8, 0, 20, 2, "bfloat16", "ieee"),
        (7, 3, 60, 2, "float16", "ieee"),
        (8, 4, 128, 2, "bfloat16", "ieee"),
        (8, 4, 60, 2, "float64", "ieee"),
    ]
    # The model's calls (image layout, 6 heads): SwinIR-M (C 180, head_dim 30) and SwinIR-S (C 60,
    # head_dim 10), shifted and not, in the dtypes a GPU user runs.
    model_cases = [
        (8, 4, 180, 6, "bfloat16", "ieee"),
        (8, 0, 180, 6, "bfloat16", "ieee"),
        (8, 4, 180, 6, "float16", "ieee"),
        (8, 4, 180, 6, "float32", "tf32"),
        (8, 4, 60, 6, "bfloat16", "ieee"),
        (8, 4, 60, 6, "float32", "tf32"),
    ]
    for cases, window_layout_too in ((test_cases, True), (model_cases, False)):
        for ws, shift, channels, heads, dtype_name, precision in cases:
            os.environ["SWINIR_KERNELS_FP32_PRECISION"] = precision
            dtype = getattr(torch, dtype_name)
            qkv = torch.zeros(1, 2 * ws, 3 * ws, 3 * channels, dtype=dtype, requires_grad=True)
            bias = torch.zeros(heads, ws * ws, ws * ws, dtype=dtype, requires_grad=True)
            scale = (channels // heads) ** -0.5
            out = torch.ops.swinir_kernels.shifted_window_attention_triton(qkv, bias, heads, ws, shift, scale)
            torch.autograd.grad(out, (qkv, bias), torch.zeros_like(out))
            if window_layout_too:
                windows = torch.zeros(6, ws * ws, 3 * channels, dtype=dtype, requires_grad=True)
                mask = torch.zeros(6, ws * ws, ws * ws, dtype=dtype)
                out = torch.ops.swinir_kernels.window_attention_triton(windows, bias, mask, heads, scale)
                torch.autograd.grad(out, (windows, bias), torch.zeros_like(out))
    # The flash kernels (more than 64 tokens or head_dim above 64), forward and backward, both layouts
    # (the window layout masked): ((wh, ww), (sh, sw), C, heads, dtype, fp32 dot precision). HAT 16x16 at
    # head_dim 30 in bf16 and TF32 (and IEEE), DAT's 8x32 with shift (4, 16), DRCT's head_dim 122 in fp16,
    # SRFormer's 22x22 (484 tokens), and fp64.
    flash_cases = [
        ((16, 16), (8, 8), 60, 2, "bfloat16", "ieee"),
        ((16, 16), (8, 8), 60, 2, "float32", "tf32"),
        ((16, 16), (8, 8), 60, 2, "float32", "ieee"),
        ((8, 32), (4, 16), 60, 2, "bfloat16", "ieee"),
        ((16, 16), (8, 8), 122, 1, "float16", "ieee"),
        ((22, 22), (11, 11), 60, 2, "bfloat16", "ieee"),
        ((16, 16), (8, 8), 60, 2, "float64", "ieee"),
    ]
    for (wh, ww), shift, channels, heads, dtype_name, precision in flash_cases:
        os.environ["SWINIR_KERNELS_FP32_PRECISION"] = precision
        dtype, tokens, scale = getattr(torch, dtype_name), wh * ww, (channels // heads) ** -0.5
        qkv = torch.zeros(1, wh, 2 * ww, 3 * channels, dtype=dtype, requires_grad=True)
        bias = torch.zeros(heads, tokens, tokens, dtype=dtype, requires_grad=True)
        out = torch.ops.swinir_kernels.shifted_window_attention_triton(qkv, bias, heads, [wh, ww], list(shift), scale)
        torch.autograd.grad(out, (qkv, bias), torch.zeros_like(out))
        windows = torch.zeros(2, tokens, 3 * channels, dtype=dtype, requires_grad=True)
        mask = torch.zeros(2, tokens, tokens, dtype=dtype)
        out = torch.ops.swinir_kernels.window_attention_triton(windows, bias, mask, heads, scale)
        torch.autograd.grad(out, (windows, bias), torch.zeros_like(out))
    os.environ.pop("SWINIR_KERNELS_FP32_PRECISION", None)


def record_triton_launches() -> list[tuple]:
    """The distinct Triton launches of the ops for `_triton_shapes`, each as (module, kernel name,
    signature, constexprs, options), without running anything. Must run without TRITON_INTERPRET."""
    import torch
    from triton.runtime.jit import JITFunction

    if os.environ.get("TRITON_INTERPRET") == "1":
        raise RuntimeError("record_triton_launches needs compiled Triton: unset TRITON_INTERPRET")
    from swinir_kernels import triton as triton_backend

    if triton_backend.UNAVAILABLE is not None:
        raise RuntimeError(triton_backend.UNAVAILABLE)
    pointer_types = {
        torch.float32: "*fp32", torch.float16: "*fp16", torch.bfloat16: "*bf16", torch.float64: "*fp64",
        torch.int8: "*i8", torch.int16: "*i16", torch.int32: "*i32", torch.int64: "*i64",
    }  # fmt: skip

    def argument_type(value):
        if isinstance(value, torch.Tensor):
            return pointer_types[value.dtype]
        if isinstance(value, bool):
            return "i1"
        if isinstance(value, int):
            return "i32" if -(2**31) <= value < 2**31 else "i64"
        if isinstance(value, float):
            return "fp32"
        raise TypeError(f"unexpected kernel argument {value!r}")

    launches: dict[str, tuple] = {}

    def record(kernel: JITFunction, *args, grid, warmup=False, **kwargs):
        # Keyword arguments that are not kernel parameters are compile options (num_warps, num_stages...).
        options = {k: kwargs.pop(k) for k in list(kwargs) if k not in kernel.arg_names}
        options = {k: v for k, v in options.items() if v is not None}
        bound = dict(zip(kernel.arg_names, args), **kwargs)
        constexprs = {
            name: bound[name]
            for name, param in zip(kernel.arg_names, kernel.params)
            if param.is_constexpr or bound[name] is None
        }
        signature = {
            name: "constexpr" if name in constexprs else argument_type(bound[name]) for name in kernel.arg_names
        }
        launch = (kernel.__module__, kernel.__name__, signature, constexprs, options)
        launches.setdefault(repr(launch), launch)

    original_run = JITFunction.run
    JITFunction.run = record
    # The attention launcher refuses CPU tensors without the interpreter (they cannot run); these are
    # only compiled, so its device check sees a tensor of no device.
    attention = importlib.import_module("swinir_kernels.triton.window_attention")
    check_launch = attention._check_launch
    attention._check_launch = lambda qkv, *rest: check_launch(qkv.to("meta"), *rest)
    try:
        _triton_shapes()
    finally:
        JITFunction.run = original_run
        attention._check_launch = check_launch
    return list(launches.values())


def compile_triton_launch(job: tuple) -> list[KernelReport]:
    """Compiles one recorded launch for one sm and reads its cubin. Runs in a worker process."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    (module, name, signature, constexprs, options), sm = job
    kernel = getattr(importlib.import_module(module), name)
    # Pointers 16-byte aligned, as a launch of fresh torch allocations specializes them (integer
    # arguments get no divisibility hints: a launch may add some; they only widen memory accesses).
    aligned = {(i,): [["tt.divisibility", 16]] for i, kind in enumerate(signature.values()) if kind.startswith("*")}
    start = time.perf_counter()
    try:
        source = ASTSource(kernel, signature, constexprs, aligned)
        binary = triton.compile(source, target=GPUTarget("cuda", sm, 32), options=options)
    except Exception as error:
        raise RuntimeError(f"{name} does not compile for sm_{sm} with {constexprs} {options}: {error}") from error
    seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as work:
        cubin = os.path.join(work, "kernel.cubin")
        with open(cubin, "wb") as f:
            f.write(binary.asm["cubin"])
        usage = next(iter(resource_usage(cubin).values()))
        opcodes = next(iter(sass_by_function(cubin).values()))
        stack = max(usage.get("STACK", 0), usage.get("LOCAL", 0))
        spill_stores = spill_loads = 0
        if stack:  # local memory: ask ptxas how much of it is spills
            ptx = os.path.join(work, "kernel.ptx")
            with open(ptx, "w") as f:
                f.write(binary.asm["ptx"])
            log = subprocess.run(
                [nvidia_tool("ptxas"), "-v", f"--gpu-name=sm_{sm}{'a' if sm == 90 else ''}", ptx, "-o", os.devnull],
                capture_output=True, text=True,
            )  # fmt: skip
            _, spill_stores, spill_loads = next(iter(ptxas_spills(log.stderr + log.stdout).values()), (stack, stack, stack))
    path = sys.modules[module].__file__
    budgets = declared_budgets(path, re.compile(r"^def (\w+)\("))
    threads = 32 * binary.metadata.num_warps
    shared = binary.metadata.shared
    specialization = " ".join(
        [f"{k}={v}" for k, v in constexprs.items()]
        + [f"{k}:{v}" for k, v in signature.items() if v != "constexpr" and v.startswith("*")]
        + [f"{k}={v}" for k, v in options.items()]
    )
    return [
        KernelReport(
            backend="triton", kernel=name, specialization=specialization, sm=sm, registers=usage["REG"],
            register_budget=budget_for(budgets, name, specialization), spill_store_bytes=spill_stores, spill_load_bytes=spill_loads,
            stack_bytes=stack, static_shared_bytes=usage.get("SHARED", 0),
            launch_shared_bytes=shared, threads=threads, occupancy=occupancy(sm, usage["REG"], threads, shared),
            tensor_core_instructions=tensor_core_count(opcodes), global_loads=memory_widths(opcodes, ("LDG", "LD")),
            async_copies=memory_widths(opcodes, ("LDGSTS",)), global_stores=memory_widths(opcodes, ("STG", "ST")),
            compile_seconds=round(seconds, 2),
        )
    ]  # fmt: skip


# ----------------------------------------------------------------------------------------------------
# CUDA: nvcc each .cu to a cubin per sm


CUDA_FLAGS = [
    "-std=c++17", "-O3", "-lineinfo", "--use_fast_math", "--expt-relaxed-constexpr",
    "-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__", "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-D__CUDA_NO_HALF2_OPERATORS__",
]  # fmt: skip


def demangle(names: list[str]) -> dict[str, str]:
    text = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, check=True).stdout
    return dict(zip(names, text.splitlines()))


def compile_cuda_file(job: tuple) -> list[KernelReport]:
    """nvcc one csrc/cuda/*.cu for one sm; one report per kernel instance in it. Runs in a worker."""
    source, sm = job
    with tempfile.TemporaryDirectory() as work:
        cubin = os.path.join(work, "kernels.cubin")
        start = time.perf_counter()
        result = subprocess.run(
            [os.environ.get("NVCC", "nvcc"), "-cubin", f"-arch=sm_{sm}", *CUDA_FLAGS, "-Xptxas", "-v", source, "-o", cubin],
            capture_output=True, text=True,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            raise RuntimeError(f"nvcc failed for {source} sm_{sm}:\n{result.stderr[-3000:]}")
        spills = ptxas_spills(result.stderr + result.stdout)
        usage = resource_usage(cubin)
        sass = sass_by_function(cubin)
    names = demangle(sorted(usage))
    budgets = declared_budgets(source, re.compile(r"__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s+)?(\w+)\("))
    reports = []
    for mangled in sorted(usage, key=lambda m: names[m]):
        readable = names[mangled]
        kernel, template = kernel_and_template(readable)
        stack, spill_stores, spill_loads = spills.get(mangled, (0, 0, 0))
        opcodes = sass.get(mangled, [])
        reports.append(
            KernelReport(
                backend="cuda", kernel=kernel, specialization=f"{os.path.basename(source)} {template}".strip(), sm=sm,
                registers=usage[mangled]["REG"], register_budget=budget_for(budgets, kernel, template),
                spill_store_bytes=spill_stores, spill_load_bytes=spill_loads,
                stack_bytes=max(stack, usage[mangled].get("STACK", 0)),
                static_shared_bytes=usage[mangled].get("SHARED", 0), launch_shared_bytes=-1, threads=-1,
                occupancy="-", tensor_core_instructions=tensor_core_count(opcodes),
                global_loads=memory_widths(opcodes, ("LDG", "LD")), async_copies=memory_widths(opcodes, ("LDGSTS",)),
                global_stores=memory_widths(opcodes, ("STG", "ST")),
                compile_seconds=round(seconds, 2),
            )
        )  # fmt: skip
    return reports


def cuda_launch_geometry() -> dict[tuple[str, str], set[tuple[int, int]]]:
    """(kernel, template arguments) -> {(threads per block, dynamic shared bytes)} of the launches the
    CUDA launchers make for the model's shapes: SwinIR-M (C 180) and -S (C 60) shifted-window attention
    forward and backward in every dtype, HAT's 16x16 windows (the flash kernels), window partition/reverse
    and pixel shuffle. The launchers run on
    the CPU through the SIMT harness of the tests (tests/support/simt), which logs each launch (SIMT_LAUNCH_LOG);
    `nm` names the kernels."""
    import torch
    from tests.kernels import test_cuda_simt as simt
    from tests.support.simt import build as simt_build
    from tests.kernels.test_window_attention import make_inputs

    executable = simt_build.build(os.path.join(tempfile.gettempdir(), f"swinir-simt-build-{os.getuid()}"))
    with tempfile.TemporaryDirectory() as work:
        log = os.path.join(work, "launches.log")
        os.environ["SIMT_LAUNCH_LOG"] = log
        jobs = []
        for channels, dtype in [(180, torch.bfloat16), (180, torch.float16), (180, torch.float32),
                                (180, torch.float64), (60, torch.bfloat16), (60, torch.float32)]:  # fmt: skip
            case = (1, 1, 2, 8, 4, channels, 6)  # B, window rows, window columns, ws, shift, C, heads
            qkv, bias, mask, grad_out, kwargs = make_inputs(case, dtype, "cpu", "shifted_window_attention")
            job, _ = simt.attention_job(
                Path(work, f"attention-{channels}-{dtype}"), "shifted_window_attention", qkv, bias, mask, grad_out,
                kwargs, "forward", 0,
            )  # fmt: skip
            jobs.append(("attention", job))
        # HAT's 16x16 windows (256 tokens, C 180, 6 heads): the flash kernels.
        for dtype in (torch.bfloat16, torch.float16, torch.float32, torch.float64):
            qkv, bias, mask, grad_out, kwargs = make_inputs((1, 1, 1, 16, 8, 180, 6), dtype, "cpu", "shifted_window_attention")
            job, _ = simt.attention_job(
                Path(work, f"attention-hat-{dtype}"), "shifted_window_attention", qkv, bias, mask, grad_out, kwargs,
                "forward", 0,
            )  # fmt: skip
            jobs.append(("attention", job))
        x = torch.zeros(1, 16, 24, 180, dtype=torch.bfloat16)
        for to_windows, src in ((True, x), (False, torch.zeros(6, 64, 180, dtype=torch.bfloat16))):
            job, _ = simt.permute_job(Path(work, f"permute-{to_windows}"), src, to_windows, 8, 4, 16, 24, 0, 0, "forward", 0)
            jobs.append(("window_permute", job))
        for memory_format in (torch.contiguous_format, torch.channels_last):
            src = torch.zeros(1, 48, 8, 8, dtype=torch.bfloat16).contiguous(memory_format=memory_format)
            job, _ = simt.shuffle_job(Path(work, f"shuffle-{memory_format}"), src, True, 4, 30, 31, 8, 8, None, None, "forward", 0)
            jobs.append(("pixel_shuffle", job))
        for command, job in jobs:
            simt.run_harness(executable, command, *job)
        del os.environ["SIMT_LAUNCH_LOG"]
        lines = open(log).read().split()
    symbols = subprocess.run(["nm", "-C", "--defined-only", str(executable)], capture_output=True, text=True, check=True)
    by_address, run_grid = {}, None
    for line in symbols.stdout.splitlines():
        address, _, name = line.split(" ", 2)
        by_address[int(address, 16)] = name
        if name.startswith("simt::detail::run_grid("):
            run_grid = int(address, 16)
    geometry: dict[tuple[str, str], set[tuple[int, int]]] = {}
    for i in range(0, len(lines), 8):
        offset, _, _, _, bx, by, bz, shared = (int(v) for v in lines[i : i + 8])
        kernel, template = kernel_and_template(by_address[run_grid + offset])
        geometry.setdefault((kernel, template), set()).add((bx * by * bz, shared))
    return geometry


def kernel_and_template(readable: str) -> tuple[str, str]:
    """"swinir_kernels::cuda::(anonymous namespace)::kernel<float>(Params)" -> ("kernel", "<float>")."""
    match = re.search(r"(\w+)(<.*>)?\(", readable)
    return (match.group(1), match.group(2) or "") if match else (readable, "")


# ----------------------------------------------------------------------------------------------------
# Report


def source_digest() -> str:
    """Hash of every kernel source the report reads, so a stale committed report is noticed."""
    digest = hashlib.sha256()
    for folder, suffixes in (("csrc/cuda", (".cu", ".cuh", ".h")), ("swinir_kernels/triton", (".py",))):
        for name in sorted(os.listdir(os.path.join(ROOT, folder))):
            if name.endswith(suffixes):
                digest.update(name.encode())
                digest.update(open(os.path.join(ROOT, folder, name), "rb").read())
    return digest.hexdigest()[:16]


CHECKED_SM = 90  # the configurations are chosen for sm_90; sm_80 rows are reported, not enforced


def problems(reports: list[KernelReport]) -> list[str]:
    """What --check refuses on sm_90: local memory (spills or stack), a missing register budget, a
    budget exceeded."""
    found = []
    for r in reports:
        if r.sm != CHECKED_SM:
            continue
        where = f"{r.backend} {r.kernel} [{r.specialization}] sm_{r.sm}"
        if r.spill_store_bytes or r.spill_load_bytes or r.stack_bytes:
            found.append(f"{where}: local memory ({r.stack_bytes} B stack, {r.spill_store_bytes} B spill stores, "
                         f"{r.spill_load_bytes} B spill loads)")
        if r.register_budget == 0:
            found.append(f"{where}: no register budget declared next to the kernel")
        elif r.registers > r.register_budget:
            found.append(f"{where}: {r.registers} registers, over its budget of {r.register_budget}")
    return found


def build_reports(jobs_per_core: int = 1) -> list[KernelReport]:
    cuda_files = sorted(
        os.path.join(ROOT, "csrc", "cuda", name) for name in os.listdir(os.path.join(ROOT, "csrc", "cuda")) if name.endswith(".cu")
    )
    triton_launches = record_triton_launches()
    jobs = [(compile_cuda_file, (source, sm)) for source in cuda_files for sm in SMS]
    jobs += [(compile_triton_launch, (launch, sm)) for launch in triton_launches for sm in SMS]
    # Compiling is single-threaded LLVM, ptxas and nvcc: one worker per core, fresh (spawned) workers.
    with multiprocessing.get_context("spawn").Pool(os.cpu_count() or 1) as pool:
        results = pool.map(_run_job, jobs, chunksize=1)
    reports = [report for group in results for report in group]
    geometry = cuda_launch_geometry()
    for r in reports:
        launches = geometry.get((r.kernel, r.specialization.split(" ", 1)[1] if " " in r.specialization else ""))
        if r.backend == "cuda" and launches:
            # The launch with the most dynamic shared memory bounds the occupancy.
            r.threads, r.launch_shared_bytes = max(launches, key=lambda launch: launch[1])
            r.occupancy = occupancy(r.sm, r.registers, r.threads, r.static_shared_bytes + r.launch_shared_bytes)
    return reports


def _run_job(job):
    function, argument = job
    return function(argument)


def write(reports: list[KernelReport], folder: str, elapsed: float) -> None:
    os.makedirs(folder, exist_ok=True)
    columns = [f.name for f in fields(KernelReport)]
    reports = sorted(reports, key=lambda r: (-r.sm, r.backend, r.kernel, r.specialization))
    with open(os.path.join(folder, "static-report.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for r in reports:
            writer.writerow(asdict(r))
    triton_launches = {(r.kernel, r.specialization) for r in reports if r.backend == "triton"}
    triton_seconds = sum(r.compile_seconds for r in reports if r.backend == "triton" and r.sm == 90)
    lines = [
        "# Static GPU report",
        "",
        f"Generated by `python -m bench.static_report` from kernel sources {source_digest()} (no GPU: compiled",
        "here for sm_90 and sm_80 and read off the cubins). Columns: registers per thread and the budget declared",
        "next to the kernel, spill bytes (stores/loads), shared memory (static; Triton: what the kernel asks at",
        "launch), threads per block, theoretical occupancy (resident warps of 64, with the limiting resource),",
        "tensor-core instructions in the SASS, and global loads/stores by width in bits (`128:n` = n 16-byte",
        "accesses); async copies are LDGSTS (cp.async, global to shared memory: the loads of a software-",
        "pipelined loop, issued an iteration ahead). CUDA kernels take threads and dynamic shared memory per",
        "launch (see their launchers).",
        "",
        f"{len(triton_launches)} Triton specializations ({triton_seconds:.0f} s of sm_90 compile time on this",
        f"machine, one core), {sum(1 for r in reports if r.backend == 'cuda' and r.sm == 90)} CUDA kernel",
        f"instances; report built in {elapsed:.0f} s.",
        "",
    ]
    for sm in SMS:
        lines += [
            f"## sm_{sm}",
            "",
            "| backend | kernel | specialization | regs (budget) | spills st/ld | shared | threads | occupancy | TC instr | loads | async copies | stores |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in (r for r in reports if r.sm == sm):
            shared = r.launch_shared_bytes if r.launch_shared_bytes >= 0 else r.static_shared_bytes
            lines.append(
                f"| {r.backend} | {r.kernel} | {r.specialization} | {r.registers} ({r.register_budget or '-'}) | "
                f"{r.spill_store_bytes}/{r.spill_load_bytes} | {shared} | {r.threads if r.threads > 0 else '-'} | "
                f"{r.occupancy} | {r.tensor_core_instructions} | {r.global_loads} | {r.async_copies} | {r.global_stores} |"
            )
        lines.append("")
    with open(os.path.join(folder, "static-report.md"), "w") as f:
        f.write("\n".join(lines))


def read_reports(folder: str) -> list[KernelReport]:
    """The rows of a written static-report.csv."""
    with open(os.path.join(folder, "static-report.csv"), newline="") as f:
        return [
            KernelReport(**{field.name: field.type(row[field.name]) if field.type in (int, float) else row[field.name]
                            for field in fields(KernelReport)})
            for row in csv.DictReader(f)
        ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=RESULTS, help="folder for static-report.csv and .md (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="exit 1 on spills or register budgets exceeded or missing")
    args = parser.parse_args()
    start = time.perf_counter()
    reports = build_reports()
    write(reports, os.path.abspath(args.out), time.perf_counter() - start)
    print(f"static report: {len(reports)} kernel x sm rows written to {args.out}")
    found = problems(reports)
    for line in found:
        print("static report:", line)
    return 1 if (args.check and found) else 0


if __name__ == "__main__":
    sys.exit(main())
