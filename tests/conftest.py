import pytest
import torch

import swinir_kernels
from tests.helpers import TRITON_INTERPRET

if TRITON_INTERPRET and swinir_kernels.triton.UNAVAILABLE is None:
    # Every Triton test runs the interpreter in its GPU-faithful mode (fp32 float arguments, launch-typed
    # integer arguments, TF32 dots): see tests/support/triton_faithful.py.
    from tests.support import triton_faithful

    triton_faithful.activate()


@pytest.fixture(autouse=True)
def _seed_and_backend():
    torch.manual_seed(0)
    with swinir_kernels.use_backend("auto"):
        yield
