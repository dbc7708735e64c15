"""The model a run trains (``init``, ``preset`` or ``arch``) and the degradation its data gets."""

from __future__ import annotations

import os

import torch

from .. import degrade, distributed
from ..errors import first_line
from ..model import SwinIR
from ..presets import PRESETS, build
from .data import Degradation
from .options import TrainError, TrainOptions

__all__ = ["build_model", "load_init", "choose_degradation", "architecture"]


def build_model(options: TrainOptions, context: distributed.Context) -> SwinIR:
    torch.manual_seed(options.seed)
    arch = dict(options.arch)
    try:
        if options.init:
            return load_init(options.init, arch, context, options.quiet)
        if options.preset:
            if options.preset not in PRESETS:
                raise TrainError(f"--preset: expected one of {', '.join(sorted(PRESETS))}, got {options.preset!r}")
            return build(options.preset, **arch)
        if not arch:
            raise TrainError("no model: give --init CHECKPOINT, --preset NAME or --arch KEY=VALUE ...")
        return SwinIR(**arch)
    except (TypeError, ValueError) as error:
        raise TrainError(f"--arch: {first_line(error, 300)}") from None


def load_init(spec: str, arch: dict, context: distributed.Context, quiet: bool) -> SwinIR:
    from .. import hub
    from ..checkpoint import load, read_state_dict

    if os.path.isdir(spec):
        raise TrainError(f"--init {spec}: is a directory, not a checkpoint file")

    def resolve() -> str:
        try:
            return hub.resolve(spec, verify=load, progress=not quiet and context.is_main)
        except hub.HubError as error:
            raise TrainError(f"--init: {hub.command_wording(error, '--init')}") from None

    if context.distributed:  # rank 0 downloads a named checkpoint, the others then find it cached
        path = resolve() if context.is_main else None
        torch.distributed.barrier()
        path = path or resolve()
    else:
        path = resolve()
    try:
        stored = read_state_dict(path)  # our files store the constructor arguments; img_range is not in the weights
        if isinstance(stored, dict) and isinstance(stored.get("config"), dict) and "img_range" in stored["config"]:
            arch.setdefault("img_range", stored["config"]["img_range"])
        return load(path, **arch).train()
    except (TypeError, ValueError) as error:
        raise TrainError(f"--init {spec}: {first_line(error, 300)}") from None
    except Exception as error:  # noqa: BLE001  (torch.load on a broken file raises many kinds)
        raise TrainError(f"--init {spec}: cannot load checkpoint ({type(error).__name__}: {first_line(error, 300)})") from None


def choose_degradation(options: TrainOptions, model: SwinIR) -> Degradation:
    scale = model.upscale
    named = PRESETS.get(options.preset or options.init or "")
    if options.lr:
        if options.noise or options.jpeg:
            raise TrainError("--noise/--jpeg: not with --lr (the LR images are given)")
        return Degradation("paired", scale)
    if scale > 1:
        if options.noise or options.jpeg:
            raise TrainError(f"--noise/--jpeg: the model upscales x{scale}; SR training uses bicubic inputs only")
        if scale not in degrade.SR_SCALES:
            raise TrainError(f"the model upscales x{scale}; bicubic degradation supports {degrade.SR_SCALES} (or use --lr)")
        return Degradation("sr", scale)
    if options.noise and options.jpeg:
        raise TrainError("--noise and --jpeg: give one")
    if options.noise:
        low, high = options.noise
        if not 0 <= low <= high:
            raise TrainError(f"--noise: expected 0 <= low <= high, got {low}-{high}")
        return Degradation("noise", 1, float(low), float(high))
    if options.jpeg:
        low, high = options.jpeg
        if not 1 <= low <= high <= 100:
            raise TrainError(f"--jpeg: expected qualities 1 <= low <= high <= 100, got {low}-{high}")
        return Degradation("jpeg", 1, low, high)
    if named is not None and named.level is not None:
        kind = "noise" if named.task.endswith("_dn") else "jpeg"
        return Degradation(kind, 1, named.level, named.level)
    raise TrainError("the model does not upscale: give --noise SIGMA[-SIGMA] or --jpeg QUALITY[-QUALITY] (or --lr DIR)")


def architecture(config: dict) -> dict:
    """The constructor arguments that decide the weights' shapes and meaning (not backend or training knobs)."""
    ignored = ("backend", "use_checkpoint", "drop_rate", "attn_drop_rate", "drop_path_rate", "img_size")
    return {key: value for key, value in config.items() if key not in ignored}
