"""Argument types and checks shared by the sub-commands. Nothing here imports torch at module level:
``--help`` and most usage errors never load it."""

from __future__ import annotations

import argparse
import difflib
import math
import os

from .. import files
from ..precision import DTYPE_NAMES
from .errors import CliError, UsageError, cannot_write, first_line

__all__ = ["DTYPES", "BACKENDS", "IMG_RANGES", "positive_int", "non_negative_int", "int_between", "seed",
           "positive_float", "size", "img_range", "did_you_mean", "device_problem", "default_device",
           "check_output_folder"]

DTYPES = DTYPE_NAMES
# swinir_kernels.BACKENDS (a test checks they agree); spelled out so that --help needs no torch import
BACKENDS = ("auto", "cuda", "triton", "cpu", "reference")
IMG_RANGES = (1.0, 255.0)  # the input ranges of the released models (1; 255 for the JPEG ones)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def int_between(low: int, high: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer from {low} to {high}, got {text!r}")
        return value

    parse.__name__ = f"integer {low}..{high}"
    return parse


seed = int_between(0, 2**32 - 1)  # numpy.random.RandomState's range


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def img_range(text: str) -> float:
    """1 or 255: a model's input range is one of these two (other values would scale its input wrongly)."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value not in IMG_RANGES:
        raise argparse.ArgumentTypeError(f"expected 1 or 255 (the input range the model was trained with: 255 for "
                                         f"the released JPEG models, 1 for the others), got {text}")
    return value


def size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        values = [int(part) for part in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or HxW, got {text}") from None
    if len(values) not in (1, 2) or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected N or HxW with positive sizes, got {text}")
    return (values[0], values[-1])


def did_you_mean(name: str, known) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def default_device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_problem(spec: str) -> str | None:
    """Why torch device ``spec`` cannot be used here, or None."""
    import torch

    try:
        device = torch.device(spec)
    except RuntimeError as error:
        return f"{spec!r} is not a torch device ({first_line(error)})"
    if device.type == "cpu":
        return None
    if device.type == "cuda":
        if torch.version.cuda is None and torch.version.hip is None:
            return f"{spec}: this torch ({torch.__version__}) is a build without CUDA; use --device cpu"
        count = torch.cuda.device_count()
        if count == 0:
            return f"{spec}: no CUDA GPU is visible (torch.cuda.is_available() is False); use --device cpu"
        if device.index is not None and device.index >= count:
            return f"{spec}: there {'is' if count == 1 else 'are'} only {count} CUDA device(s) (cuda:0..cuda:{count - 1})"
        return None
    if device.type == "mps":
        built = torch.backends.mps.is_built()
        if not torch.backends.mps.is_available():
            why = "MPS (Apple GPU) is not available on this machine" if built else "this torch is a build without MPS"
            return f"{spec}: {why}; use --device cpu"
        return None
    try:
        torch.empty(0, device=device)
    except Exception as error:  # noqa: BLE001  (each device type fails its own way)
        return f"{spec}: not usable here ({first_line(error)}); use --device cpu"
    return None


def check_output_folder(folder: str, option: str) -> None:
    """Before any work: ``folder`` is, or can become, a folder that takes files. A file is written there
    (or a folder made in its nearest existing parent) and removed: permission bits say nothing on a
    read-only mount, under /sys, or as root."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UsageError(f"argument {option}: {folder} exists and is not a folder")
    try:
        files.check_writable_folder(folder)
    except NotADirectoryError as error:
        raise UsageError(f"argument {option}: cannot create {folder}: {error.filename} is a file") from None
    except OSError as error:
        raise CliError(cannot_write(folder, error)) from None
