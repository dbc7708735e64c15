"""The CUDA kernels executed on the CPU by the SIMT harness (tests/simt; see its README).

The plain-CUDA kernel files (csrc/cuda/*.cu) are compiled as host C++ with AddressSanitizer and UBSan
and run with CUDA's execution model: blocks of cooperatively scheduled threads, barriers, warp
shuffles/votes, shared memory, half types, WMMA. Each case writes its inputs to a directory, runs the
harness executable (launching through the same launchers the bindings call, with the parameters filled
as the bindings fill them) and compares the outputs with swinir_kernels.reference, on the case tables of
tests/test_window_partition.py, tests/test_pixel_shuffle.py and tests/test_window_attention.py.

Every run picks a thread order (forward, reversed, or shuffled with a seed); a failure names it, and
SIMT_ORDER=<order> SIMT_SEED=<seed> <executable> <command> <case directory> reruns it.

Without g++ the tests are skipped, unless SWINIR_SIMT_REQUIRED=1 (CI) makes that a failure.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.simt import build as simt_build

ORDERS = ("forward", "reversed", "shuffled")
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
    return simt_build.build(request.config.cache.mkdir("simt-build"))


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
    generator = torch.Generator().manual_seed(hash(kind) % 1000)
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
