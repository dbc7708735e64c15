"""The CUDA kernels executed on the CPU by the SIMT harness (tests/support/simt; see its README).

The plain-CUDA kernel files (csrc/cuda/*.cu) are compiled as host C++ with AddressSanitizer and UBSan
and run with CUDA's execution model: blocks of cooperatively scheduled threads, barriers, warp
shuffles/votes, shared memory, half types, WMMA. Each case writes its inputs to a directory, runs the
harness executable (launching through the same launchers the bindings call, with the parameters filled
as the bindings fill them) and compares the outputs with swinir_kernels.reference, on the case tables of
tests/kernels/test_window_partition.py, tests/kernels/test_pixel_shuffle.py and tests/kernels/test_window_attention.py.

Every run picks a thread order (forward, reversed, shuffled with a seed, or warp-major forward or
reversed: each warp runs ahead to its next __syncthreads); a failure names it, and
SIMT_ORDER=<order> SIMT_SEED=<seed> <executable> <command> <case directory> reruns it.

Without g++ the tests are skipped, unless SWINIR_SIMT_REQUIRED=1 (CI) makes that a failure.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from swinir_kernels import reference, registry
from tests.support.simt import build as simt_build
from tests.kernels.test_pixel_shuffle import FORMATS as SHUFFLE_FORMATS
from tests.kernels.test_pixel_shuffle import SHAPES as SHUFFLE_SHAPES
from tests.kernels.test_pixel_shuffle import assert_within_one_rounding, eager_epilogue
from tests.kernels.test_window_attention import CASES as ATTENTION_CASES
from tests.kernels.test_window_attention import OPS as ATTENTION_OPS
from tests.kernels.test_window_attention import TOLERANCES as ATTENTION_TOLERANCES
from tests.kernels.test_window_attention import MASK_CASE_IDS, MASK_CASES, REMAINDER_CASE_IDS, REMAINDER_CASES
from tests.kernels.test_window_attention import WIDE_CASES, forward_backward, make_inputs, mask_sensitive_inputs, max_error
from tests.kernels.test_window_partition import DTYPES as PARTITION_DTYPES
from tests.kernels.test_window_partition import SHAPES as PARTITION_SHAPES
from tests.kernels.test_window_partition import distinct, shifts

ORDERS = ("forward", "reversed", "shuffled", "warp-major", "warp-major-reversed")
SIMT_ERROR_EXIT = 86
_run_counter = itertools.count()


@pytest.fixture(scope="session")
def harness(request) -> Path:
    """The harness executable, built once per session and cached across sessions by source hash."""
    missing = simt_build.compiler_missing()
    if missing is not None:
        if os.environ.get("SWINIR_SIMT_REQUIRED") == "1":
            pytest.fail(f"SWINIR_SIMT_REQUIRED=1 but the SIMT harness cannot be built: {missing}")
        pytest.skip(f"SIMT harness not built: {missing}")
    return simt_build.build(build_cache(request))


def build_cache(request) -> Path:
    """The pytest cache's simt-build folder, or one under the temp dir when the cache plugin is off."""
    cache = getattr(request.config, "cache", None)
    if cache is not None:
        return cache.mkdir("simt-build")
    return Path(tempfile.gettempdir()) / f"swinir-simt-build-{os.getuid()}"


def next_schedule(seed_base: int = 0) -> tuple[str, int]:
    """Rotates the thread order over the runs of the session; shuffled runs get distinct seeds."""
    n = next(_run_counter)
    return ORDERS[n % len(ORDERS)], seed_base + n


def run_harness(executable: Path, command: str, directory: Path, keys: dict, inputs: dict[str, np.ndarray],
                order: str, seed: int, expect_error: bool = False) -> subprocess.CompletedProcess:
    """Writes case.txt and the inputs (raw, C order) to `directory`, runs the harness on it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "case.txt").write_text("".join(f"{k} {v}\n" for k, v in keys.items()))
    for name, array in inputs.items():
        np.ascontiguousarray(array).tofile(directory / f"{name}.bin")
    env = {**os.environ, "SIMT_ORDER": order, "SIMT_SEED": str(seed)}
    result = subprocess.run([str(executable), command, str(directory)], capture_output=True, text=True, env=env,
                            timeout=300)
    if not expect_error:
        assert result.returncode == 0, (
            f"harness {command} failed (exit {result.returncode}), schedule order={order} seed={seed}; rerun: "
            f"SIMT_ORDER={order} SIMT_SEED={seed} {executable} {command} {directory}\n{result.stderr[-6000:]}"
        )
    return result


def run_harness_all(executable: Path, command: str, jobs: list[tuple[Path, dict, dict, str, int]]) -> None:
    """run_harness for each (directory, keys, inputs, order, seed), as many at a time as there are cores."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for future in [pool.submit(run_harness, executable, command, *job) for job in jobs]:
            future.result()


def read_output(directory: Path, name: str, dtype, shape) -> torch.Tensor:
    """An output buffer as a tensor of `dtype` (16-bit floats are read as int16 and viewed)."""
    raw = np.fromfile(directory / f"{name}.bin", dtype=np.int16 if torch.finfo(dtype).bits == 16 else
                      {torch.float32: np.float32, torch.float64: np.float64}[dtype])
    tensor = torch.from_numpy(raw)
    return (tensor.view(dtype) if torch.finfo(dtype).bits == 16 else tensor).reshape(shape)


def raw_bytes(t: torch.Tensor) -> np.ndarray:
    """A tensor's values in C order as raw bytes (any dtype, bf16 included)."""
    return t.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy()


# ---- WMMA emulation ---------------------------------------------------------------------------------

WMMA_KINDS = [
    "f16-row-col-f32-m16n16k16",
    "f16-col-row-f32-m16n16k16",
    "f16-row-row-f16-m16n16k16",
    "bf16-row-col-f32-m16n16k16",
    "bf16-col-col-f32-m16n16k16",
    "tf32-row-col-f32-m16n16k8",
    "tf32-col-row-f32-m16n16k8",
    "f16-row-row-f32-m32n8k16",
    "bf16-col-row-f32-m8n32k16",
]
WMMA_INPUT = {"f16": torch.float16, "bf16": torch.bfloat16, "tf32": torch.float32}
WMMA_ACC = {"f32": torch.float32, "f16": torch.float16}


def tf32_round(x: torch.Tensor) -> torch.Tensor:
    """__float_to_tf32: to nearest, ties away from zero, on the 13 low mantissa bits (finite values)."""
    bits = x.contiguous().view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    return ((bits + 0x1000) & 0xFFFFE000).to(torch.int32).view(torch.float32).reshape(x.shape)  # noqa: E501


def tf32_truncate(x: torch.Tensor) -> torch.Tensor:
    return (x.contiguous().view(torch.int32) & ~0x1FFF).view(torch.float32)


def place(matrix: torch.Tensor, row_major: bool, ld: int, warps: int) -> tuple[torch.Tensor, int]:
    """`warps` matrices (warps, rows, cols) in one buffer, each tile ld * (rows or cols) elements long,
    padded with NaN beyond the matrix (a load must not read it)."""
    _, rows, cols = matrix.shape
    tile = ld * (rows if row_major else cols)
    buffer = torch.full((warps, tile), float("nan"), dtype=matrix.dtype)
    for w in range(warps):
        view = buffer[w].as_strided((rows, cols), (ld, 1) if row_major else (1, ld))
        view.copy_(matrix[w])
    return buffer, tile


def take(buffer: torch.Tensor, rows: int, cols: int, row_major: bool, ld: int, warps: int) -> torch.Tensor:
    tile = buffer.numel() // warps
    tiles = buffer.reshape(warps, tile)
    return torch.stack([t.as_strided((rows, cols), (ld, 1) if row_major else (1, ld)) for t in tiles])


@pytest.mark.parametrize("kind", WMMA_KINDS)
@pytest.mark.parametrize("order", ["forward", "shuffled"])
def test_wmma_matches_host_matmul(harness, tmp_path, kind, order):
    """D = alpha (A B + C) per warp (2 warps), every fragment kind and layout, with padded leading
    dimensions: load / mma / store against a float64 host matmul of the operands the tensor core sees."""
    in_name, layout_a, layout_b, acc_name, shape = kind.split("-")
    M, N, K = (int(v) for v in shape[1:].replace("n", " ").replace("k", " ").split())
    in_dtype, acc_dtype = WMMA_INPUT[in_name], WMMA_ACC[acc_name]
    warps, alpha = 2, 0.75
    generator = torch.Generator().manual_seed(WMMA_KINDS.index(kind))
    a = torch.randn(warps, M, K, generator=generator).to(in_dtype)
    b = torch.randn(warps, K, N, generator=generator).to(in_dtype)
    c = torch.randn(warps, M, N, generator=generator).to(acc_dtype)
    row_a, row_b = layout_a == "row", layout_b == "row"
    pad = 16 if in_dtype != torch.float32 else 8  # ldm: a multiple of 16 bytes, beyond the matrix
    lda, ldb, ldc = (K if row_a else M) + pad, (N if row_b else K) + pad, N + 8
    round_tf32 = layout_a == "row"  # the tf32 kinds: one converts with __float_to_tf32, one relies on truncation
    a_buffer, a_tile = place(a, row_a, lda, warps)
    b_buffer, b_tile = place(b, row_b, ldb, warps)
    c_buffer, c_tile = place(c, True, ldc, warps)
    keys = dict(kind=kind, warps=warps, lda=lda, ldb=ldb, ldc=ldc, a_tile=a_tile, b_tile=b_tile, c_tile=c_tile,
                a_bytes=a_buffer.numel() * a_buffer.element_size(), b_bytes=b_buffer.numel() * b_buffer.element_size(),
                c_bytes=c_buffer.numel() * c_buffer.element_size(), c_row_major=1, d_row_major=int(row_b),
                round_tf32=int(round_tf32), alpha=alpha)
    run_harness(harness, "wmma_check", tmp_path, keys,
                {"a": raw_bytes(a_buffer), "b": raw_bytes(b_buffer), "c": raw_bytes(c_buffer)}, order, seed=17)
    d = take(read_output(tmp_path, "d", acc_dtype, (-1,)), M, N, row_b, ldc, warps)
    if in_dtype == torch.float32:
        a, b = (tf32_round(a), tf32_round(b)) if round_tf32 else (tf32_truncate(a), tf32_truncate(b))
    expected = alpha * (a.double() @ b.double() + c.double())
    if acc_dtype == torch.float32:
        torch.testing.assert_close(d.double(), expected, rtol=3e-7, atol=1e-6)
    else:  # rounded to half after the mma and after the scale
        torch.testing.assert_close(d.double(), expected, rtol=2e-3, atol=2e-3)


def test_float_to_tf32_rounds_to_nearest_ties_away():
    """The reference of the test above: ties (low 13 bits 0x1000) go away from zero."""
    bits = np.array([0x3F801000, 0xBF801000, 0x3F800FFF, 0x3F803000], dtype=np.uint32)
    rounded = tf32_round(torch.from_numpy(bits.view(np.float32)))
    assert rounded.numpy().view(np.uint32).tolist() == [0x3F802000, 0xBF802000, 0x3F800000, 0x3F804000]


# ---- window_partition / window_reverse ------------------------------------------------------------


def permute_job(directory, x, to_windows, ws, shift, H, W, src_offset, dst_offset, order, seed):
    """A window_permute run of x (image when to_windows, else windows) and the shape of its output; ws and
    shift are ints (both axes) or (along H, along W) pairs."""
    (wh, ww), (sh, sw) = reference.pair(ws), reference.pair(shift)
    B = x.shape[0] if to_windows else x.shape[0] // ((H // wh) * (W // ww))
    keys = dict(to_windows=int(to_windows), batch=B, height=H, width=W, channels=x.shape[-1],
                element_size=x.element_size(), window_h=wh, window_w=ww, shift_h=sh, shift_w=sw,
                src_offset=src_offset, dst_offset=dst_offset)
    shape = (B * (H // wh) * (W // ww), wh * ww, x.shape[-1]) if to_windows else (B, H, W, x.shape[-1])
    return (directory, keys, {"src": raw_bytes(x)}, order, seed), shape


@pytest.mark.parametrize("dtype", PARTITION_DTYPES, ids=str)
@pytest.mark.parametrize("B,H,W,C,ws", PARTITION_SHAPES)
def test_window_partition_and_reverse(harness, tmp_path, dtype, B, H, W, C, ws):
    """Bit-exact against the reference for shifts 0, ws//2, -ws//2; the source, then the destination
    one element past a 16-byte boundary (the kernel then moves smaller chunks)."""
    x = distinct((B, H, W, C), dtype)
    element = x.element_size()
    jobs, checks = [], []
    for index, shift in enumerate(shifts(ws)):
        src_offset, dst_offset = [(0, 0), (element, 0), (0, element)][index]
        order, seed = next_schedule()
        where = f"shift={shift} offsets={src_offset},{dst_offset} order={order} seed={seed}"
        windows = reference.window_partition(x, ws, shift)
        for direction, source, expected in (("partition", x, windows), ("reverse", windows, x)):
            job, shape = permute_job(tmp_path / f"{direction}{index}", source, direction == "partition", ws, shift,
                                     H, W, src_offset, dst_offset, order, seed)
            jobs.append(job)
            checks.append((job[0], shape, expected, f"{direction}, {where}"))
    run_harness_all(harness, "window_permute", jobs)
    for directory, shape, expected, where in checks:
        assert torch.equal(read_output(directory, "dst", dtype, shape), expected), where


# (B, H, W, C, (wh, ww), shifts (sh, sw)): rectangular windows, per-axis shifts of any sign (0 on one axis).
RECTANGULAR_PARTITIONS = [
    (1, 8, 24, 3, (4, 8), [(2, 5), (0, 3), (-1, 0)]),
    (2, 16, 8, 2, (8, 4), [(4, 0), (0, 2), (3, -2)]),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("B,H,W,C,ws,shift_pairs", RECTANGULAR_PARTITIONS,
                         ids=[f"{h}x{w}-ws{ws[0]}x{ws[1]}" for _, h, w, _, ws, _ in RECTANGULAR_PARTITIONS])
def test_window_partition_and_reverse_rectangular(harness, tmp_path, dtype, B, H, W, C, ws, shift_pairs):
    """wh x ww windows with (sh, sw) shifts: bit-exact against the reference both ways."""
    x = distinct((B, H, W, C), dtype)
    jobs, checks = [], []
    for index, shift in enumerate(shift_pairs):
        order, seed = next_schedule()
        windows = reference.window_partition(x, ws, shift)
        for direction, source, expected in (("partition", x, windows), ("reverse", windows, x)):
            job, shape = permute_job(tmp_path / f"{direction}{index}", source, direction == "partition", ws, shift,
                                     H, W, 0, 0, order, seed)
            jobs.append(job)
            checks.append((job[0], shape, expected, f"{direction}, shift={shift} order={order} seed={seed}"))
    run_harness_all(harness, "window_permute", jobs)
    for directory, shape, expected, where in checks:
        assert torch.equal(read_output(directory, "dst", dtype, shape), expected), where


# ---- pixel shuffle ------------------------------------------------------------------------------------


def shuffle_memory_format(t: torch.Tensor):
    """csrc/pixel_shuffle_args.h's rule: channels_last only when not also NCHW-contiguous."""
    return torch.channels_last if t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous() \
        else torch.contiguous_format


def shuffle_job(directory, src, to_shuffled, r, out_h, out_w, H, W, scale, bias, order, seed, src_offset=0):
    """A pixel_shuffle run and a function reading its output as a (B, C, out_h, out_w) or (B, C*r*r, H, W)
    tensor in src's memory format."""
    fmt = shuffle_memory_format(src)
    B = src.shape[0]
    C = src.shape[1] // (r * r) if to_shuffled else src.shape[1]
    keys = dict(to_shuffled=int(to_shuffled), dtype=str(src.dtype).removeprefix("torch."), batch=B, channels=C,
                height=H, width=W, upscale_factor=r, out_h=out_h, out_w=out_w,
                channels_last=int(fmt == torch.channels_last), src_offset=src_offset,
                scale_values=0 if scale is None else scale.numel(), bias_values=0 if bias is None else bias.numel())
    # The buffer in the format's memory order: NCHW, or NHWC for channels_last.
    storage_order = src.permute(0, 2, 3, 1) if fmt == torch.channels_last else src
    inputs = {"src": raw_bytes(storage_order)}
    for name, t in (("scale", scale), ("bias", bias)):
        if t is not None:
            inputs[name] = t.detach().double().reshape(-1).numpy()
    shape = (B, C, out_h, out_w) if to_shuffled else (B, C * r * r, H, W)

    def output():
        if fmt == torch.channels_last:
            n, c, h, w = shape
            return read_output(directory, "dst", src.dtype, (n, h, w, c)).permute(0, 3, 1, 2)
        return read_output(directory, "dst", src.dtype, shape)

    return (directory, keys, inputs, order, seed), output


@pytest.mark.parametrize("dtype", PARTITION_DTYPES, ids=str)
@pytest.mark.parametrize("memory_format", SHUFFLE_FORMATS, ids=["nchw", "channels_last"])
@pytest.mark.parametrize("B,CRR,H,W,r", SHUFFLE_SHAPES)
def test_pixel_shuffle_plain_epilogue_and_backward(harness, tmp_path, dtype, memory_format, B, CRR, H, W, r):
    """The plain shuffle bit-exact (F.pixel_shuffle; the input one element past a 16-byte boundary);
    scale + bias + crop within one rounding of the eager ops; the backward (one scale for all channels,
    crop) within one rounding of autograd of the reference."""
    C = CRR // (r * r)
    x_plain = distinct((B, CRR, H, W), dtype).contiguous(memory_format=memory_format)
    x = torch.randn(B, CRR, H, W).to(dtype).contiguous(memory_format=memory_format)
    scale, bias = torch.rand(C) + 0.5, torch.randn(C)
    out_h, out_w = H * r - 1, W * r - 2
    grad = torch.randn(B, C, out_h, out_w).to(dtype).contiguous(memory_format=memory_format)
    scalar_scale = torch.tensor([1.25])  # one value for all channels, expanded as the binding does
    schedules = [next_schedule() for _ in range(3)]
    plain, plain_output = shuffle_job(tmp_path / "plain", x_plain, True, r, H * r, W * r, H, W, None, None,
                                      *schedules[0], src_offset=x_plain.element_size())
    epilogue, epilogue_output = shuffle_job(tmp_path / "epilogue", x, True, r, out_h, out_w, H, W, scale, bias,
                                            *schedules[1])
    backward, backward_output = shuffle_job(tmp_path / "backward", grad, False, r, out_h, out_w, H, W, scalar_scale,
                                            None, *schedules[2])
    run_harness_all(harness, "pixel_shuffle", [plain, epilogue, backward])
    assert torch.equal(plain_output(), F.pixel_shuffle(x_plain, r)), f"plain shuffle, schedule {schedules[0]}"
    assert_within_one_rounding(epilogue_output(), eager_epilogue(x, r, scale, bias, out_h, out_w), dtype)
    leaf = x.detach().double().requires_grad_()
    expected = torch.autograd.grad(reference.pixel_shuffle(leaf, r, scalar_scale.double(), None, out_h, out_w), leaf,
                                   grad.double())[0]
    assert_within_one_rounding(backward_output(), expected, dtype)


# ---- window attention: forward, backward, bias-gradient reduction ---------------------------------


# The shared table, plus the wider shapes the CUDA kernel takes (N <= 64): head_dim 64 and 1, and 18
# windows (two backward window groups of kAttentionWindowsPerGroup = 16).
CUDA_MAX_TOKENS = registry.get("window_attention").backends["cuda"].max_tokens  # csrc/limits.h, through _C
SIMT_ATTENTION_CASES = ATTENTION_CASES + [case for case in WIDE_CASES if case[3] ** 2 <= CUDA_MAX_TOKENS]
ATTENTION_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def attention_job(directory, op, qkv, rel_bias, mask, grad_out, kwargs, order, seed, qkv_offset=0):
    """An attention run (forward and backward) and a function reading (out, grad_qkv, grad_rel_bias), the
    last converted to rel_bias's dtype as the binding does."""
    num_heads = kwargs["num_heads"]
    C = qkv.shape[-1] // 3
    keys = dict(dtype=str(qkv.dtype).removeprefix("torch."), channels=C, num_heads=num_heads,
                scale=repr((C // num_heads) ** -0.5), qkv_offset=qkv_offset)
    if op == "shifted_window_attention":
        B, H, W, _ = qkv.shape
        (wh, ww), (sh, sw) = reference.pair(kwargs["window_size"]), reference.pair(kwargs["shift"])
        keys.update(layout="image", batch=B, height=H, width=W, window_h=wh, window_w=ww, shift_h=sh, shift_w=sw)
        N = wh * ww
    else:
        keys.update(layout="window", num_windows=qkv.shape[0], tokens=qkv.shape[1],
                    mask_windows=0 if mask is None else mask.shape[0])
        N = qkv.shape[1]
    inputs = {"qkv": raw_bytes(qkv), "grad_out": raw_bytes(grad_out), "rel_bias": rel_bias.double().numpy()}
    if mask is not None:
        inputs["mask"] = mask.double().numpy()
    compute = torch.float64 if qkv.dtype == torch.float64 else torch.float32

    def outputs():
        out = read_output(directory, "out", qkv.dtype, (*qkv.shape[:-1], C))
        grad_qkv = read_output(directory, "grad_qkv", qkv.dtype, qkv.shape)
        grad_bias = read_output(directory, "grad_bias", compute, (num_heads, N, N)).to(rel_bias.dtype)
        return out, grad_qkv, grad_bias

    return (directory, keys, inputs, order, seed), outputs


def check_attention(actual, case_inputs, op, dtype, where):
    qkv, rel_bias, mask, grad_out, kwargs = case_inputs
    names = ("out", "grad_qkv", "grad_rel_bias")
    if dtype in ATTENTION_TOLERANCES:
        expected = forward_backward("reference", op, qkv, rel_bias, mask, grad_out, kwargs)
        for name, a, e in zip(names, actual, expected):
            torch.testing.assert_close(a, e, **ATTENTION_TOLERANCES[dtype], msg=lambda m, name=name: f"{name}, {where}: {m}")
        return
    # fp16 / bf16: test_window_attention's criterion: error vs an fp64 reference on the same rounded inputs
    # at most twice the error of the reference computed in that dtype, plus a small floor.
    wide = lambda t: None if t is None else t.double()  # noqa: E731
    exact = forward_backward("reference", op, wide(qkv), wide(rel_bias), wide(mask), wide(grad_out), kwargs)
    same_dtype = forward_backward("reference", op, qkv, rel_bias, mask, grad_out, kwargs)
    floor = 1e-3 if dtype == torch.float16 else 1e-2
    for index, name in enumerate(names):
        error = max_error([actual[index]], [exact[index]])
        reference_error = max_error([same_dtype[index]], [exact[index]])
        assert error <= 2 * reference_error + floor, f"{name}, {where}: error {error} vs reference's {reference_error}"


@pytest.mark.parametrize("dtype", ATTENTION_DTYPES, ids=str)
@pytest.mark.parametrize("op", ATTENTION_OPS)
@pytest.mark.parametrize(
    "case", SIMT_ATTENTION_CASES,
    ids=[f"B{b}-grid{r}x{c}-ws{ws}-shift{s}-hd{C // nh}" for b, r, c, ws, s, C, nh in SIMT_ATTENTION_CASES],
)
def test_window_attention_forward_and_backward(harness, tmp_path, case, op, dtype):
    """Forward, backward and the bias-gradient reduction against the reference, each under two thread
    orders that must also agree bit for bit (the kernels are deterministic, so any difference is a race).
    qkv starts one element past a 16-byte boundary."""
    case_inputs = make_inputs(case, dtype, "cpu", op)
    jobs, runs = [], []
    for attempt in range(2):
        order, seed = next_schedule()
        job, outputs = attention_job(tmp_path / f"run{attempt}", op, *case_inputs, order, seed,
                                     qkv_offset=case_inputs[0].element_size())
        jobs.append(job)
        runs.append((outputs, f"order={order} seed={seed}"))
    run_harness_all(harness, "attention", jobs)
    runs = [(outputs(), where) for outputs, where in runs]
    for actual, where in runs:
        check_attention(actual, case_inputs, op, dtype, where)
    (first, first_where), (second, second_where) = runs
    for name, a, b in zip(("out", "grad_qkv", "grad_rel_bias"), first, second):
        assert torch.equal(a, b), f"{name} differs between schedules {first_where} and {second_where}"


def test_window_attention_any_mask(harness, tmp_path):
    """test_window_layout_random_mask's case: any additive mask (fp16 values), shared by windows w % nW."""
    case = (2, 2, 3, 7, 0, 20, 2)
    qkv, rel_bias, _, grad_out, kwargs = make_inputs(case, torch.float32, "cpu", "window_attention")
    mask = (torch.randn(6, 49, 49) * 3).to(torch.float16)
    order, seed = next_schedule()
    job, outputs = attention_job(tmp_path, "window_attention", qkv, rel_bias, mask, grad_out, kwargs, order, seed)
    run_harness_all(harness, "attention", [job])
    check_attention(outputs(), (qkv, rel_bias, mask, grad_out, kwargs), "window_attention", torch.float32,
                    f"order={order} seed={seed}")


def run_attention_case(harness, tmp_path, case_inputs, op, dtype, tolerances=None):
    """One harness run of `case_inputs` (make_inputs' tuple), checked as check_attention does, or with
    `tolerances` for fp32/fp64."""
    order, seed = next_schedule()
    job, outputs = attention_job(tmp_path, op, *case_inputs, order, seed)
    run_harness_all(harness, "attention", [job])
    where = f"order={order} seed={seed}"
    if tolerances is None:
        check_attention(outputs(), case_inputs, op, dtype, where)
        return
    expected = forward_backward("reference", op, *case_inputs)
    for name, a, e in zip(("out", "grad_qkv", "grad_rel_bias"), outputs(), expected):
        torch.testing.assert_close(a, e, **tolerances, msg=lambda m, name=name: f"{name}, {where}: {m}")


# fp32 and fp64 run the scalar kernel, fp16 the tensor-core one (see test_cuda_simt_attention_tc.py).
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("op", ATTENTION_OPS)
@pytest.mark.parametrize("case", MASK_CASES, ids=MASK_CASE_IDS)
def test_window_attention_shift_mask_value_with_large_logits(harness, tmp_path, case, op, dtype):
    """test_window_attention's mask-sensitive inputs (logits around 8-10, a bias that cancels the -100
    mask where the corner window's regions differ): any other mask constant fails."""
    case_inputs = mask_sensitive_inputs(case, dtype, "cpu", op)
    # fp32: the logits carry ~110, rounded at ~6e-6 (see test_shift_mask_value_with_large_logits).
    tolerances = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else None
    run_attention_case(harness, tmp_path, case_inputs, op, dtype, tolerances)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16], ids=str)
@pytest.mark.parametrize("op", ATTENTION_OPS)
@pytest.mark.parametrize("case", REMAINDER_CASES, ids=REMAINDER_CASE_IDS)
def test_window_attention_window_counts_with_remainders(harness, tmp_path, case, op, dtype):
    """17, 75 and 108 windows: remainders for the scalar kernel's backward groups of 16 windows (fp64) and
    the tensor-core kernel's forward items of 16 and backward groups of ceil(n / ceil(n / 8)) (fp16)."""
    case_inputs = make_inputs(case, dtype, "cpu", op)
    run_attention_case(harness, tmp_path, case_inputs, op, dtype,
                       ATTENTION_TOLERANCES[dtype] if dtype in ATTENTION_TOLERANCES else None)


# ---- the harness itself ---------------------------------------------------------------------------


def harness_check(executable, directory, check, blocks, threads, out_count, order="forward", seed=0,
                  expect_error=False):
    keys = dict(check=check, blocks=blocks, threads=threads, out_count=out_count)
    result = run_harness(executable, "harness_check", directory, keys, {}, order, seed, expect_error=expect_error)
    if expect_error:
        return result
    return np.fromfile(directory / "out.bin", dtype=np.int32)


@pytest.mark.parametrize("order", ORDERS)
def test_warp_shuffles_and_votes(harness, tmp_path, order):
    out = harness_check(harness, tmp_path, "warp_functions", 1, 64, 640, order, seed=3).reshape(64, 10)
    for t in range(64):
        warp, lane = divmod(t, 32)
        value = 100 * warp + lane
        expected = [
            100 * warp + 3,
            100 * warp + (lane ^ 1),
            value if lane < 2 else value - 2,
            value + 5 if lane + 5 < 32 else value,
            100 * warp + (lane & ~7) + 1,
            np.uint32(0xAAAAAAAA).view(np.int32),
            1,
            1,
            100 * warp + 31,
            3200 * warp + 496,
        ]
        assert out[t].tolist() == expected, f"thread {t}"


def test_atomics_and_static_shared_memory(harness, tmp_path):
    out = harness_check(harness, tmp_path, "atomics_and_static_shared", 3, 64, 4, "shuffled", seed=5)
    # Three blocks of 0 + 1 + ... + 63; the thread count 192 added to the output's initial -1 (0xff bytes).
    assert out.tolist() == [2016, 2016, 2016, 192 - 1]


def test_thread_order_exposes_a_shared_memory_race(harness, tmp_path):
    """Without its barrier, a neighbour exchange through shared memory reads unwritten values in one
    order and not in another; with it, every order gives the same, right result."""
    results = {}
    for check in ("exchange_with_barrier", "exchange_without_barrier"):
        for order in ORDERS:
            results[check, order] = harness_check(harness, tmp_path / f"{check}-{order}", check, 1, 64, 64, order,
                                                  seed=11).tolist()
    right = [(t + 1) % 64 for t in range(64)]
    assert all(results["exchange_with_barrier", order] == right for order in ORDERS)
    racy = [results["exchange_without_barrier", order] for order in ORDERS]
    assert all(r != right for r in racy) and racy[0] != racy[1], "the race must show, differently per order"


@pytest.mark.parametrize(
    "check, threads, message",
    [
        ("early_return_before_barrier", 32, "returned from the kernel while the others wait in __syncthreads"),
        ("barriers_at_two_sites", 32, "wait in different __syncthreads"),
        ("mismatched_masks", 32, "mismatched warp collectives"),
        # Depending on the order, a lane returns while others wait for it, or a lane calls on a returned one.
        ("shuffle_with_returned_lanes", 32,
         r"returned from the kernel while lane \d+ waits for it in __shfl_xor_sync|__shfl_xor_sync.* which has returned"),
        ("wmma_on_half_a_warp", 32,
         r"returned from the kernel while lane \d+ waits for it in load_matrix_sync|load_matrix_sync.* which has returned"),
        ("read_past_dynamic_shared", 32, "AddressSanitizer: use-after-poison"),
        ("too_much_dynamic_shared", 32, r"launch error: .* \(invalid argument\)"),
    ],
)
@pytest.mark.parametrize("order", ["forward", "shuffled"])
def test_misuse_is_reported_not_hung(harness, tmp_path, check, threads, message, order):
    """What would hang or be undefined on a GPU stops the run with an error naming it (and the schedule)."""
    result = harness_check(harness, tmp_path, check, 1, threads, 64, order, seed=7, expect_error=True)
    assert result.returncode != 0
    assert re.search(message, result.stderr), result.stderr[-3000:]
    if result.returncode == SIMT_ERROR_EXIT:
        assert f"order={order} seed=7" in result.stderr


def test_half_and_bfloat16_conversions_are_bit_exact(harness, tmp_path):
    """float -> __half / __nv_bfloat16 (round to nearest even, subnormals, overflow; NaN -> 0x7fff as
    cvt.rn gives) and back, against torch's conversions, on random bit patterns of every exponent and
    the rounding boundaries."""
    rng = np.random.default_rng(0)
    boundaries = np.array([65504.0, 65519.99, 65520.0, 2.0**-24, 2.0**-25, 2.0**-25 * 1.0000001, 1.5 * 2.0**-24,
                           2.0**-14, 2.0**-14 * (1 - 2.0**-11), 1 + 2.0**-11, 1 + 3 * 2.0**-11, 1 + 2.0**-8,
                           -0.0, np.inf, -np.inf, 3.3895314e38, 3.4028235e38], dtype=np.float32)
    values = np.concatenate([rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32).view(np.float32),
                             boundaries, -boundaries])
    run_harness(harness, "conversions", tmp_path, dict(count=values.size), {"values": values}, "forward", 0)
    tensor = torch.from_numpy(values)
    for name, dtype in (("half", torch.float16), ("bfloat16", torch.bfloat16)):
        ours = np.fromfile(tmp_path / f"{name}.bin", dtype=np.uint16)
        theirs = tensor.to(dtype).view(torch.int16).numpy().view(np.uint16)
        nan = np.isnan(values)
        assert (ours[nan] == 0x7FFF).all(), name
        mismatch = np.flatnonzero(ours[~nan] != theirs[~nan])
        assert mismatch.size == 0, f"{name}: {values[~nan][mismatch[:5]]} -> {ours[~nan][mismatch[:5]]} vs " \
                                   f"{theirs[~nan][mismatch[:5]]}"
        back = np.fromfile(tmp_path / f"{name}_to_float.bin", dtype=np.float32)
        patterns = torch.arange(65536, dtype=torch.int32).to(torch.int16).view(dtype).float().numpy()
        assert np.array_equal(back, patterns, equal_nan=True), name


# ---- planted bugs: the suite must fail on them ---------------------------------------------------

ATTENTION_KERNEL = "csrc/cuda/window_attention_kernel.cu"
PARTITION_KERNEL = "csrc/cuda/window_partition_kernel.cu"
# name -> (file, text, replacement, the test that must fail, its arguments after (harness, tmp_path))
PLANTED_BUGS = {
    "removed-syncthreads": (
        ATTENTION_KERNEL,
        "    load_head_tile(s.v, qkv, s, 3 * channels, 2 * channels + h * hd, n, hd);\n    __syncthreads();\n",
        "    load_head_tile(s.v, qkv, s, 3 * channels, 2 * channels + h * hd, n, hd);\n",
        "attention", (ATTENTION_CASES[1], "shifted_window_attention", torch.float32),
    ),
    "off-by-one-loop-bound": (
        PARTITION_KERNEL,
        "e < total_chunks;",
        "e <= total_chunks;",
        "partition", (torch.float32, *PARTITION_SHAPES[0]),
    ),
    "mask-value-minus-10": (
        ATTENTION_KERNEL,
        "kShiftMaskValue = -100.0f;",
        "kShiftMaskValue = -10.0f;",
        "attention", (ATTENTION_CASES[0], "shifted_window_attention", torch.float32),
    ),
    "race-without-syncwarp": (
        ATTENTION_KERNEL,
        "          s.grad_bias[i * n + j] += grad_score;\n        }\n        __syncwarp();\n",
        "          s.grad_bias[i * n + j] += grad_score;\n        }\n",
        "attention", (ATTENTION_CASES[1], "window_attention", torch.float32),
    ),
}
PLANTED_BUG_TESTS = {
    "attention": lambda exe, path, args: test_window_attention_forward_and_backward(exe, path, *args),
    "partition": lambda exe, path, args: test_window_partition_and_reverse(exe, path, *args),
}


@pytest.mark.parametrize("bug", PLANTED_BUGS)
def test_planted_bug_is_caught(harness, request, tmp_path, bug):
    """The kernel file with one bug planted (in a copy; the checkout is not touched) is built and run
    through the same test as the real kernel: that test must fail."""
    path, text, replacement, test_name, args = PLANTED_BUGS[bug]
    source = (simt_build.ROOT / path).read_text()
    assert source.count(text) == 1, f"{path} changed: update the planted bug {bug!r}"
    executable = simt_build.build(build_cache(request), {path: source.replace(text, replacement)})
    assert executable != harness
    with pytest.raises(AssertionError):
        PLANTED_BUG_TESTS[test_name](executable, tmp_path, args)
