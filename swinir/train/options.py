"""What a training run takes (:class:`TrainOptions`, the fields of ``swinir train``'s options), what it
returns, and the checks made on the options before any work."""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import os

from .. import distributed
from ..precision import DTYPE_NAMES

__all__ = ["TrainError", "TrainOptions", "TrainResult", "MILESTONES", "learning_rate", "check_options",
           "architecture_keys"]

MILESTONES = (0.5, 0.8, 0.9, 0.95)  # fractions of the steps after which the learning rate halves


class TrainError(Exception):
    """A problem with the options, the data or a file; its message is one line naming it."""


@dataclasses.dataclass
class TrainOptions:
    """Everything ``swinir train`` takes (the command's options, by the same names).

    Model: ``init`` (a checkpoint file or a preset name, to fine-tune), else ``preset`` (random
    weights), else ``arch`` alone (the official constructor's arguments); ``arch`` also overrides the
    other two (e.g. ``{"drop_path_rate": 0.0}``). Data: ``hr`` (folder of clean images), optional
    ``lr`` (paired LR folder); ``noise`` (sigma range, 0..255 scale) or ``jpeg`` (quality range) for x1
    models, bicubic for SR models; ``patch`` in LR pixels (default: the model's img_size).
    """

    out: str
    hr: str
    lr: str | None = None
    init: str | None = None
    preset: str | None = None
    arch: dict = dataclasses.field(default_factory=dict)
    noise: tuple[float, float] | None = None
    jpeg: tuple[int, int] | None = None
    patch: int | None = None
    batch: int = 32
    steps: int = 500_000
    learning_rate: float = 2e-4
    ema_decay: float = 0.999
    seed: int = 0
    dtype: str = "fp32"
    grad_checkpoint: bool = False
    val: str | None = None
    val_lr: str | None = None
    val_every: int = 5000
    save_every: int = 5000
    keep: int = 3
    resume: str | None = None  # a checkpoint file, or "latest" (the newest in ``out``)
    until: int | None = None  # stop after this step (checkpoint written); --resume continues
    workers: int = 2
    image_cache: int = 16  # decoded images kept in memory per data process
    device: str | None = None
    dist_timeout: float = distributed.DEFAULT_TIMEOUT_S
    log_every: int = 10  # steps per recorded training-loss mean (and progress-bar update)
    quiet: bool = False
    plot: bool = True  # OUT/val.svg: validation PSNR/SSIM and training loss against step (needs matplotlib)


@dataclasses.dataclass
class TrainResult:
    step: int
    checkpoint: str | None  # the last checkpoint written
    model: str | None  # OUT/model.pth when the run reached ``steps``
    validation: list[dict]  # one dict per validation: step, psnr, ssim, psnr_y, ssim_y


def learning_rate(base: float, step: int, steps: int) -> float:
    """The rate of (1-based) ``step``: ``base`` halved once per milestone in MILESTONES * steps already passed."""
    passed = sum(step > int(fraction * steps) for fraction in MILESTONES)
    return base * 0.5**passed


def architecture_keys() -> list[str]:
    """The keyword arguments of the :class:`swinir.SwinIR` constructor (what ``arch`` may set)."""
    from ..model import SwinIR

    parameters = inspect.signature(SwinIR.__init__).parameters.values()
    return [p.name for p in parameters if p.name != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD]


def _check_arch(arch: dict) -> None:
    """Unknown keys would be swallowed by the constructor's ``**kwargs`` (as the official one does) and
    the run would train the defaults: refuse them, naming the closest valid key."""
    known = architecture_keys()
    for key in arch:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]}?" if close else f"the keys are {', '.join(known)}"
            raise TrainError(f"--arch {key}={arch[key]!r}: not a SwinIR constructor argument ({hint})")


def check_options(o: TrainOptions) -> None:
    """Raises TrainError naming the first option out of range or combination that cannot work."""
    if o.init and o.preset:
        raise TrainError("--init and --preset: give one (--init fine-tunes a checkpoint, --preset starts from scratch)")
    for name in ("batch", "steps", "val_every", "save_every", "keep", "log_every", "image_cache"):
        if getattr(o, name) < 1:
            raise TrainError(f"--{name.replace('_', '-')}: expected a positive integer, got {getattr(o, name)}")
    if o.workers < 0:
        raise TrainError(f"--workers: expected >= 0, got {o.workers}")
    if o.patch is not None and o.patch < 1:
        raise TrainError(f"--patch: expected a positive integer, got {o.patch}")
    if o.dtype not in DTYPE_NAMES:
        raise TrainError(f"--dtype: expected one of {', '.join(DTYPE_NAMES)}, got {o.dtype!r}")
    if o.until is not None and not 1 <= o.until <= o.steps:
        raise TrainError(f"--until: expected 1..{o.steps} (--steps), got {o.until}")
    if not o.learning_rate > 0:
        raise TrainError(f"--learning-rate: expected a positive number, got {o.learning_rate}")
    if not 0.0 <= o.ema_decay < 1.0:
        raise TrainError(f"--ema-decay: expected 0 <= decay < 1, got {o.ema_decay}")
    if o.val_lr and not o.val:
        raise TrainError("--val-lr: needs --val (the ground truth of the validation images)")
    if os.path.exists(o.out) and not os.path.isdir(o.out):
        raise TrainError(f"--out {o.out}: exists and is not a folder (checkpoints go into a folder)")
    _check_arch(o.arch)
