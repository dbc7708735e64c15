"""The op registry is the one description of each op: every registered op is public, has a reference,
has the kernels its backends declare, and its small check input keeps its specialization; nothing else
in the package keeps its own list of ops."""

import pathlib
import re

import pytest
import torch

import swinir_kernels
from swinir_kernels import _backend, reference, registry
from tests.helpers import HAS_C_EXTENSION, ROOT

OPS = list(registry.OPS.values())
IDS = list(registry.OPS)


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_every_registered_op_is_public_with_its_reference(op):
    assert op.name in swinir_kernels.__all__
    assert getattr(reference, op.name) is op.reference
    public = getattr(swinir_kernels, op.name)
    assert public.__doc__ and "Args:" in public.__doc__ and "Returns:" in public.__doc__


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_declared_backends_have_their_kernels(op):
    assert set(op.backends) <= set(registry.KERNEL_BACKENDS)
    if "triton" in op.backends and swinir_kernels.triton.UNAVAILABLE is None:
        assert hasattr(torch.ops.swinir_kernels, f"{op.name}_triton")
    if HAS_C_EXTENSION and "cpu" in op.backends:  # (this CPU-only build has no CUDA kernels to look for)
        assert (op.name, "CPU") in _backend._KERNELS


@pytest.mark.parametrize("op", OPS, ids=IDS)
@pytest.mark.parametrize("size", [16, 24, 40])
def test_example_calls_and_their_small_inputs(op, size):
    """selftest's example call is valid for the public checks (prepare gives it back unchanged in
    meaning), and its small input has the same specialization key and is no larger."""
    for dtype in (torch.float32, torch.float16):
        args = op.example(size, dtype, "cpu")
        small = op.small_input(args, 0)
        assert op.key(small) == op.key(args)
        assert small[0].numel() <= args[0].numel()
        assert all(i < len(args) for i in op.differentiable(args))
        assert op.exact(args) in (True, False)


def test_exact_ops_are_those_that_only_move_bits():
    for op in OPS:
        if op.moves_bits_only:
            assert op.exact(op.example(16, torch.float32, "cpu"))


def test_no_other_module_lists_the_ops():
    """Adding an op is its kernels, its description and its tests: no tuple of op names elsewhere in
    the package must be extended (registry/__init__.py holds the one list)."""
    names = "|".join(registry.OPS)
    listing = re.compile(rf"""\(\s*["']({names})["']\s*,\s*["']({names})["']""")
    package = pathlib.Path(ROOT, "swinir_kernels")
    offenders = [str(path.relative_to(ROOT)) for path in package.rglob("*.py")
                 if path.parent.name != "registry" and listing.search(path.read_text())]  # fmt: skip
    assert offenders == []


def test_unknown_op_names_the_known_ones():
    with pytest.raises(ValueError, match="op: expected one of window_partition, .*got 'window_roll'"):
        registry.get("window_roll")
