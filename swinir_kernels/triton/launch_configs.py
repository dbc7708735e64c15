"""Launch configurations (warps, pipeline stages) of the Triton kernels: a pure function of each
kernel specialization's key (the kernel and its constexprs: shape, layout, dtype), never of a timing.
So every process compiles each specialization once, the same binary everywhere, and results whose
bits depend on the configuration (a reduction's order across warps) depend on the inputs alone.

Each kernel file states its rule (e.g. :func:`swinir_kernels.triton.window_attention.attention_config`)
and asks :func:`launch_config` for the configuration. Tuning is an opt-in that writes a table, never
used implicitly: ``python -m swinir_kernels.triton.tune`` times candidate configurations on a GPU and
writes a JSON table; the kernels read a table only when ``SWINIR_KERNELS_TRITON_CONFIGS`` names it,
and use the rule for every key the table does not list.
"""

import functools
import json
import os
from typing import Callable

TABLE_ENV = "SWINIR_KERNELS_TRITON_CONFIGS"
CONFIG_FIELDS = ("num_warps", "num_stages")

# kernel name -> the configuration every launch of it gets, and the keys it was launched with: set only
# by swinir_kernels.triton.tune while it times one candidate.
_forced: dict[str, dict] = {}
_forced_keys: dict[str, set] = {}


def config_key(kernel: str, constexprs: dict) -> str:
    """The table key of one specialization: the kernel's name and its constexprs, as canonical JSON."""
    return json.dumps([kernel, sorted(constexprs.items())], separators=(",", ":"))


@functools.lru_cache(maxsize=4)
def _read_table(path: str) -> dict:
    try:
        with open(path) as file:
            table = json.load(file)
    except (OSError, ValueError) as error:
        raise ValueError(f"{TABLE_ENV}: cannot read the launch-configuration table {path!r}: {error}") from error
    for key, config in table.items():
        if not isinstance(config, dict) or set(config) != set(CONFIG_FIELDS):
            raise ValueError(f"{TABLE_ENV}: {path!r}: entry {key}: expected keys {CONFIG_FIELDS}, got {config!r}")
    return table


def launch_config(kernel: str, constexprs: dict, rule: Callable[[dict], dict]) -> dict:
    """{"num_warps", "num_stages"} for `kernel` specialized by `constexprs`: the entry of the table named
    by SWINIR_KERNELS_TRITON_CONFIGS if it lists this key, else rule(constexprs)."""
    if kernel in _forced:
        _forced_keys.setdefault(kernel, set()).add(config_key(kernel, constexprs))
        return dict(_forced[kernel])
    path = os.environ.get(TABLE_ENV)
    if path:
        entry = _read_table(path).get(config_key(kernel, constexprs))
        if entry is not None:
            return dict(entry)
    return rule(constexprs)
