"""The public functional API: the ops (each described once in :mod:`swinir_kernels.registry`) and the
backend's explanation.

A call checks its arguments, asks the plan (:func:`swinir_kernels._dispatch.plan`) which backend runs
it, and calls that backend's function with the reference's positional arguments:

* ``cpu`` / ``cuda``: ``torch.ops.swinir_kernels.<op>`` (C++ kernels, dispatched on the device);
* ``triton``: ``torch.ops.swinir_kernels.<op>_triton`` (Python custom ops around the Triton kernels);
* ``reference``: :mod:`swinir_kernels.reference`.
"""

import torch

from . import _dispatch, registry
from .registry.pixel_shuffle import pixel_shuffle
from .registry.window_attention import shifted_window_attention, window_attention
from .registry.window_partition import window_partition, window_reverse

# Every registered op's public function (imported above from its description), and the explanations.
__all__ = [*registry.OPS, "explain_backend", "backends_used"]


def explain_backend(op: str, tensor: torch.Tensor, *args, **kwargs) -> str:
    """Which backend a call of `op` (a public function's name) would use under the current setting, and
    why. Pass the call's arguments (``explain_backend("shifted_window_attention", qkv, rel_bias,
    num_heads=6, window_size=8, shift=4)``) to get the answer for that call: on a GPU, ``auto`` chooses
    per kernel specialization and says whether (and when) it was verified on this device. With the
    first tensor only, it answers for the device, e.g. ``explain_backend("window_partition", x)`` ->
    ``"cpu: auto: C++ CPU kernel for a CPU tensor"``. Runs no kernel and no check, and changes nothing
    (safe from any thread). When the requested backend cannot run the call, says why (the call itself
    raises RuntimeError with that reason). Bad arguments raise as the call would."""
    description = registry.get(op)
    if args or kwargs:
        return _dispatch.plan(description, description.prepare(tensor, *args, **kwargs)).explanation()
    return _dispatch.plan(description, None, tensor).explanation()


def backends_used() -> dict[str, str]:
    """op -> "backend: reason" of the latest eager call of each op in this process."""
    return dict(_dispatch._last_used)
