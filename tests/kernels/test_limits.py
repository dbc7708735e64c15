"""Each backend run at its declared limits and one past them. The declarations are the op registry's
(swinir_kernels/registry/window_attention.py), read from csrc/limits.h through _C and from
swinir_kernels/triton/limits.py; a kernel or host check holding its own, drifted copy of a limit
fails here: it refuses a call at the declared limit, or takes one past it."""

import pytest
import torch

import swinir_kernels
from swinir_kernels import registry
from tests.helpers import HAS_C_EXTENSION, TRITON_INTERPRET
from tests.kernels.test_cuda_simt import attention_job, harness, next_schedule, run_harness  # noqa: F401 (fixture)

ATTENTION = registry.get("window_attention")
LAUNCH_ERROR_EXIT = 3  # the SIMT harness's exit status for a launcher that refused (tests/support/simt/README.md)


def window_call(tokens: int, head_dim: int, dtype=torch.float32, heads: int = 1, windows: int = 2) -> tuple:
    """window_attention's reference arguments: `windows` windows of `tokens` tokens, no mask."""
    generator = torch.Generator().manual_seed(tokens * 1000 + head_dim)
    qkv = torch.randn(windows, tokens, 3 * heads * head_dim, generator=generator).to(dtype)
    rel_bias = torch.randn(heads, tokens, tokens, generator=generator).to(dtype)
    return (qkv, rel_bias, None, heads, head_dim**-0.5)


def assert_matches_reference(out: torch.Tensor, args: tuple) -> None:
    torch.testing.assert_close(out, ATTENTION.reference(*args), atol=1e-5, rtol=1e-5)


def test_c_limits_come_from_the_extension():
    if not HAS_C_EXTENSION:
        pytest.skip("swinir_kernels._C is not built")
    declared = ATTENTION.backends
    assert declared["cpu"].max_head_dim == swinir_kernels._C.CPU_ATTENTION_MAX_HEAD_DIM
    assert declared["cuda"].max_head_dim == swinir_kernels._C.CUDA_ATTENTION_MAX_HEAD_DIM
    assert declared["cuda"].max_tokens == swinir_kernels._C.CUDA_ATTENTION_MAX_TOKENS
    assert declared["cpu"].max_tokens is None  # the CPU kernel takes any window


@pytest.mark.skipif(not HAS_C_EXTENSION, reason="swinir_kernels._C is not built")
def test_cpu_kernel_at_and_past_its_head_dim_limit():
    limit = ATTENTION.backends["cpu"].max_head_dim
    kernel = ATTENTION.implementation("cpu")
    at_limit = window_call(9, limit)
    assert ATTENTION.cannot_run("cpu", at_limit[0], **ATTENTION.sizes(at_limit)) is None
    assert_matches_reference(kernel(*at_limit), at_limit)
    past = window_call(9, limit + 1)
    assert f"takes head_dim at most {limit}, got {limit + 1}" in ATTENTION.cannot_run("cpu", past[0], **ATTENTION.sizes(past))
    with pytest.raises(ValueError, match=f"expected at most {limit}, got {limit + 1}"):
        kernel(*past)
    # The public op takes it all the same, on the reference, and says so.
    out = swinir_kernels.window_attention(past[0], past[1], num_heads=1)
    assert_matches_reference(out, past)
    assert swinir_kernels.backends_used()["window_attention"].startswith("reference: auto: reference, since the cpu kernel")


@pytest.mark.skipif(not TRITON_INTERPRET or swinir_kernels.triton.UNAVAILABLE is not None,
                    reason="Triton runs CPU tensors under TRITON_INTERPRET=1")  # fmt: skip
@pytest.mark.parametrize("limited", ["tokens", "head_dim"])
def test_triton_kernel_at_and_past_its_limits(limited):
    support = ATTENTION.backends["triton"]
    kernel = ATTENTION.implementation("triton")
    limit = support.max_tokens if limited == "tokens" else support.max_head_dim
    sizes = {"tokens": 4, "head_dim": 4, limited: limit}
    at_limit = window_call(sizes["tokens"], sizes["head_dim"], windows=1)
    assert ATTENTION.cannot_run("triton", at_limit[0], **ATTENTION.sizes(at_limit)) is None
    assert_matches_reference(kernel(*at_limit), at_limit)
    sizes[limited] = limit + 1
    past = window_call(sizes["tokens"], sizes["head_dim"], windows=1)
    assert f"got {limit + 1}" in ATTENTION.cannot_run("triton", past[0], **ATTENTION.sizes(past))
    with pytest.raises(ValueError, match=f"at most {limit}, got {limit + 1}"):
        kernel(*past)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["scalar-fp32", "tensor-core-fp16"])
@pytest.mark.parametrize("limited", ["tokens", "head_dim"])
def test_cuda_kernels_at_and_past_their_limits(harness, tmp_path, limited, dtype):  # noqa: F811
    """The CUDA launchers, run on the CPU by the SIMT harness: at the declared limit they compute the
    reference's result; one past it they refuse the launch (cudaErrorInvalidValue)."""
    if not HAS_C_EXTENSION:
        pytest.skip("the declared CUDA limits come from swinir_kernels._C")
    support = ATTENTION.backends["cuda"]
    limit = support.max_tokens if limited == "tokens" else support.max_head_dim
    sizes = {"tokens": 4, "head_dim": 4, limited: limit}
    for value, should_run in ((limit, True), (limit + 1, False)):
        sizes[limited] = value
        qkv, rel_bias, _, heads, scale = window_call(sizes["tokens"], sizes["head_dim"], dtype=dtype, windows=1)
        grad_out = torch.randn(*qkv.shape[:-1], qkv.shape[-1] // 3).to(dtype)
        order, seed = next_schedule()
        (directory, keys, inputs, order, seed), outputs = attention_job(
            tmp_path / f"{limited}-{value}", "window_attention", qkv, rel_bias, None, grad_out, {"num_heads": heads},
            order, seed,
        )  # fmt: skip
        result = run_harness(harness, "attention", directory, keys, inputs, order, seed, expect_error=not should_run)
        if should_run:
            expected = ATTENTION.reference(qkv.double(), rel_bias.double(), None, heads, scale)
            tolerance = 1e-4 if dtype == torch.float32 else 2e-2
            torch.testing.assert_close(outputs()[0].double(), expected, atol=tolerance, rtol=tolerance)
        else:
            assert result.returncode == LAUNCH_ERROR_EXIT, result.stderr[-2000:]
