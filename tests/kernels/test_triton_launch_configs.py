"""The Triton kernels' launch configurations are a pure function of the specialization key (no
autotuning by timing), read from a tuned table only when SWINIR_KERNELS_TRITON_CONFIGS names one."""

import inspect
import json
import sys

import pytest
import torch

from tests.helpers import TRITON_INTERPRET, run_python

pytest.importorskip("triton")
pytestmark = pytest.mark.skipif(not TRITON_INTERPRET, reason="launches Triton kernels on the CPU (TRITON_INTERPRET=1)")


@pytest.fixture
def attention_launches(monkeypatch):
    """Records (kernel name, configuration key: constexprs and qkv's dtype, options) of every attention
    kernel launch, then runs it."""
    import swinir_kernels.triton  # noqa: F401  (its window_attention attribute is the op, not the module)

    module = sys.modules["swinir_kernels.triton.window_attention"]
    recorded = []
    for kernel in (module._window_attention_fwd_kernel, module._window_attention_bwd_kernel):
        original_run = kernel.run
        constexpr_names = {name for name, kind in inspect.get_annotations(kernel.fn).items() if "constexpr" in str(kind)}

        def run(*args, kernel=kernel, original_run=original_run, constexpr_names=constexpr_names, **kwargs):
            options = {k: kwargs[k] for k in ("num_warps", "num_stages") if k in kwargs}
            key = {k: v for k, v in kwargs.items() if k in constexpr_names}
            key["dtype"] = str(args[0 if kernel is module._window_attention_fwd_kernel else 1].dtype).removeprefix("torch.")
            recorded.append((kernel.__name__, key, options))
            return original_run(*args, **kwargs)

        monkeypatch.setattr(kernel, "run", run)
    return module, recorded


def attention_forward_backward(shape, num_heads, window_size, shift, seed):

    generator = torch.Generator().manual_seed(seed)
    qkv = torch.randn(*shape, generator=generator, dtype=torch.float32).requires_grad_()
    bias = torch.randn(num_heads, window_size**2, window_size**2, generator=generator).requires_grad_()
    out = torch.ops.swinir_kernels.shifted_window_attention_triton(qkv, bias, num_heads, window_size, shift, 0.25)
    return torch.autograd.grad(out, (qkv, bias), torch.ones_like(out))


def test_configuration_is_a_pure_function_of_the_key(attention_launches):
    module, recorded = attention_launches
    attention_forward_backward((1, 8, 16, 3 * 20), 2, 8, 4, seed=0)
    attention_forward_backward((1, 8, 16, 3 * 20), 2, 8, 4, seed=1)  # same key, other values
    attention_forward_backward((1, 8, 8, 3 * 20), 2, 4, 0, seed=2)  # another key (16 tokens)
    rules = {"_window_attention_fwd_kernel": module.forward_config, "_window_attention_bwd_kernel": module.backward_config}
    assert len(recorded) == 6
    for name, key, options in recorded:
        assert options == rules[name](key) == rules[name](dict(key)), (name, key)
    assert recorded[0] == recorded[2] and recorded[1] == recorded[3]
    assert recorded[3][2] != recorded[5][2]  # the backward's warps follow its tile size (8 for 64 tokens)


def test_a_table_is_read_only_when_named(attention_launches, monkeypatch, tmp_path):
    from swinir_kernels.triton import launch_configs

    module, recorded = attention_launches
    attention_forward_backward((1, 8, 8, 3 * 20), 2, 8, 0, seed=0)
    (fwd_name, fwd_key, fwd_options), (bwd_name, bwd_key, _) = recorded
    table = tmp_path / "configs.json"
    table.write_text(json.dumps({launch_configs.config_key(fwd_name, fwd_key): {"num_warps": 2, "num_stages": 3}}))
    monkeypatch.setenv(launch_configs.TABLE_ENV, str(table))
    attention_forward_backward((1, 8, 8, 3 * 20), 2, 8, 0, seed=0)
    assert recorded[2] == (fwd_name, fwd_key, {"num_warps": 2, "num_stages": 3})
    assert recorded[3][2] == module.backward_config(bwd_key)  # a key the table does not list: the rule
    table.write_text(json.dumps({"x": {"num_warps": 2}}))
    launch_configs._read_table.cache_clear()
    with pytest.raises(ValueError, match="num_stages"):
        attention_forward_backward((1, 8, 8, 3 * 20), 2, 8, 0, seed=0)
    launch_configs._read_table.cache_clear()
    assert fwd_options == module.forward_config(fwd_key)


def test_no_kernel_is_autotuned():
    """Compiled (no TRITON_INTERPRET), every kernel is a plain JIT function: an autotuner would pick
    warps by timing, and the bias gradient's bits with them (they depend on the warps)."""
    result = run_python(
        """
        import sys
        from triton.runtime.jit import JITFunction
        import swinir_kernels.triton
        kernels = [
            (name, value) for module in ("window_attention", "window_partition", "pixel_shuffle")
            for name, value in vars(sys.modules["swinir_kernels.triton." + module]).items() if name.endswith("_kernel")
        ]
        assert len(kernels) >= 5, kernels
        print([name for name, kernel in kernels if not isinstance(kernel, JITFunction)])
        """,
        TRITON_INTERPRET=None,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]", result.stdout


@pytest.mark.parametrize("num_windows", [1, 5, 12, 64, 65, 1024, 66560])
def test_windows_per_program_cover_every_window_and_bound_the_partials(num_windows):
    """Forward groups of 4 windows (8 at head_dim <= 16); backward groups sized so a head has at most
    MAX_BIAS_PROGRAMS_PER_HEAD bias-gradient partials, with no empty group."""
    import swinir_kernels.triton  # noqa: F401

    module = sys.modules["swinir_kernels.triton.window_attention"]
    for windows_per_program, most_groups in (
        (module.forward_windows_per_program(num_windows, 30), num_windows),
        (module.forward_windows_per_program(num_windows, 10), num_windows),
        (module.backward_windows_per_program(num_windows), module.MAX_BIAS_PROGRAMS_PER_HEAD),
    ):
        groups = -(-num_windows // windows_per_program)
        assert 1 <= groups <= most_groups and (groups - 1) * windows_per_program < num_windows
    assert module.forward_windows_per_program(num_windows, 30) == min(num_windows, 4)
    assert module.forward_windows_per_program(num_windows, 10) == min(num_windows, 8)
