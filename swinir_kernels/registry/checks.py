"""Argument checks shared by the op descriptions: each error names the argument, the expected and the
actual value. What a backend's kernels can take (sizes, dtypes) is not checked here but declared per
backend (:class:`swinir_kernels.registry.op.Support`): the reference takes every valid call."""

import torch

from .op import FLOAT_DTYPES


def tensor(name: str, t, ndim: int, layout: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor {layout}, got {type(t).__name__}")
    if t.dim() != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D tensor {layout}, got shape {tuple(t.shape)}")


def floating(name: str, t: torch.Tensor) -> None:
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected dtype float16, bfloat16, float32 or float64, got {t.dtype}")


def integer(name: str, value, minimum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, torch.SymInt)):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")


def axis_pair(name: str, value, minimum: int | None = None) -> tuple[int, int]:
    """(along H, along W) of a window size or shift given as an int (both axes) or a pair of ints."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name}: expected an int or 2 ints (along H, along W), got {len(value)} values {value!r}")
        for axis, item in enumerate(value):
            integer(f"{name}[{axis}]", item, minimum)
        return int(value[0]), int(value[1])
    integer(name, value, minimum)
    return int(value), int(value)


def multiple_of(name: str, value, divisor: int, divisor_name: str) -> None:
    if value % divisor != 0:
        raise ValueError(f"{name}: expected a multiple of {divisor_name}={divisor}, got {value}")


def same_device(name: str, t: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if t.device != ref.device:
        raise ValueError(f"{name}: expected device {ref.device} (the device of {ref_name}), got {t.device}")


def shape(name: str, t: torch.Tensor, expected: tuple) -> None:
    if tuple(t.shape) != tuple(expected):
        raise ValueError(f"{name}: expected shape {tuple(expected)}, got {tuple(t.shape)}")


def attention_qkv(qkv: torch.Tensor, num_heads: int) -> tuple[int, int]:
    """Checks the last dim of qkv ([q | k | v]) against num_heads; returns (C, head_dim)."""
    integer("num_heads", num_heads, minimum=1)
    multiple_of("qkv.shape[-1] (3C)", qkv.shape[-1], 3, "3")
    C = qkv.shape[-1] // 3
    multiple_of("C = qkv.shape[-1] // 3", C, num_heads, "num_heads")
    return C, C // num_heads


def attention_bias(rel_bias: torch.Tensor, qkv: torch.Tensor, num_heads: int, tokens: int) -> None:
    tensor("rel_bias", rel_bias, 3, "(nH, N, N)")
    floating("rel_bias", rel_bias)
    same_device("rel_bias", rel_bias, "qkv", qkv)
    shape("rel_bias", rel_bias, (num_heads, tokens, tokens))


def scale(value) -> None:
    if value is not None and not isinstance(value, (int, float)):
        raise TypeError(f"scale: expected a float or None, got {type(value).__name__}")
