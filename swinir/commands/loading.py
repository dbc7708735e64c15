"""Loading the model a sub-command runs (``-m`` / ``CHECKPOINT``), with one-line errors, and checking a
``--backend`` asked for by name."""

from __future__ import annotations

import os
import warnings

from .errors import CliError, UsageError, first_line, note

__all__ = ["load_model", "check_model_path", "check_backend"]


def check_model_path(spec: str, option: str = "-m") -> None:
    """A folder is not a checkpoint (it would otherwise be reported as a file that is not found)."""
    if os.path.isdir(spec):
        raise CliError(f"{spec}: is a directory, not a checkpoint file (pass the .pth or .safetensors file in it to "
                       f"{option})")


def load_model(args, option: str = "-m"):
    """``swinir.load(args.model)`` with the command's overrides (``args.backend``, ``args.img_range``); an
    assumption the checkpoint cannot tell is a note; any failure is a CliError of one line."""
    import swinir

    from .. import checkpoint, hub

    check_model_path(args.model, option)
    overrides = {name: value for name, value in (("backend", args.backend), ("img_range", args.img_range))
                 if value is not None}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", checkpoint.AssumptionWarning)
            model = swinir.load(args.model, progress=not args.quiet, **overrides)
    except (hub.HubError, checkpoint.CheckpointError) as error:
        wording = getattr(hub, "command_wording", None)
        raise CliError(wording(error, option) if wording else str(error)) from None
    except Exception as error:  # noqa: BLE001  (anything else: one line, never a traceback)
        raise CliError(f"{args.model}: cannot load checkpoint ({type(error).__name__}: {first_line(error)})") from None
    for warning in caught:
        if issubclass(warning.category, checkpoint.AssumptionWarning):
            note(str(warning.message).replace("pass img_range= to swinir.load (--img-range on the command line)",
                                              "pass --img-range"), args.quiet)
    return model


def check_backend(backend: str, device: str | None) -> None:
    """A backend asked for by name must run on the device (else every image would fail the same way):
    one window of a tiny attention runs on it, pinned, before any work."""
    import torch

    import swinir_kernels

    from .arguments import default_device

    device = torch.device(device) if device else default_device()
    qkv = torch.zeros(1, 8, 8, 3 * 32, device=device)  # one 8x8 window, 2 heads of 16 channels
    rel_bias = torch.zeros(2, 64, 64, device=device)
    with swinir_kernels.use_backend(backend):
        try:
            swinir_kernels.shifted_window_attention(qkv, rel_bias, num_heads=2, window_size=8, shift=4)
        except RuntimeError as error:
            raise UsageError(f"argument --backend: {first_line(error)}") from None
