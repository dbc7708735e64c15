"""Loading SwinIR weights: official/KAIR/BasicSR/spandrel files, hyper-parameters inferred from the keys.

Rules (the official ``models/network_swinir.py`` state-dict layout; the same rules as spandrel's detection):

* upsampler: ``conv_before_upsample.0.weight`` + ``conv_up1.weight`` -> 'nearest+conv';
  ``conv_before_upsample.0.weight`` alone -> 'pixelshuffle'; ``upsample.0.weight`` -> 'pixelshuffledirect'; else ''.
* upscale: nearest+conv: 2^(number of conv_up* convs); pixelshuffle: the product of the shuffle factors
  implied by ``upsample.{0,2,4..}.weight`` (4*64 out channels -> 2, 9*64 -> 3); pixelshuffledirect:
  sqrt(upsample.0 out channels / in_chans); '' -> 1.
* in_chans, embed_dim from ``conv_first.weight``; window_size from the (2ws-1)^2 rows of the bias table;
  num_heads from each group's bias table; depths by counting blocks; mlp_ratio = fc1 out / embed_dim;
  resi_connection '1conv' iff ``conv_after_body.weight`` exists; qkv_bias from the presence of
  ``qkv.bias``; ape from ``absolute_pos_embed``; patch_norm from ``patch_embed.norm.weight``.
* img_size = sqrt(nW) * window_size from the first shifted block's ``attn_mask``. The official block
  registers that mask only when it shifts, and it shifts only when img_size > window_size: a file that
  keeps its buffers (``relative_position_index``) but has no mask in block 1 was trained at
  img_size <= window_size, where every block is unshifted (img_size = window_size here). A file with no
  buffers at all cannot tell; the released img_size 64 (or the window multiple below it) is assumed.
* img_range is not stored in the weights (``swinir train`` checkpoints record it in their "config",
  which is used). Known files (the presets, or a file with an official name)
  give it; otherwise 255 is assumed for window 7 (the released JPEG models) and 1 for the rest, and a
  :class:`AssumptionWarning` says so and how to override it (``img_range=`` / ``--img-range``).
"""

import math
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping

import torch

from .errors import first_sentence
from .model import SwinIR

__all__ = ["AssumptionWarning", "CheckpointError", "load", "read_state_dict", "unwrap_state_dict", "infer_config"]

# Wrapper keys seen in the wild, first match wins (params_ema preferred over params, as spandrel).
WRAPPER_KEYS = ("params_ema", "params-ema", "params", "model_state_dict", "state_dict", "model", "net", "netG")
PREFIXES = ("module.", "netG.", "model.")
BLOCK_KEYS = ("norm1.weight", "mlp.fc1.bias", "attn.relative_position_bias_table")
REQUIRED_KEYS = ("conv_first.weight", *(f"layers.0.residual_group.blocks.0.{key}" for key in BLOCK_KEYS))
EXPECTED = "expected a SwinIR state dict saved with torch.save (.pth/.pt) or as .safetensors"
# Hyper-parameters that decide what a model computes from an image (scale, channels, kind of tail,
# window); a file cached under a preset's name must match them.
PRESET_FIELDS = ("upscale", "in_chans", "upsampler", "window_size")


class CheckpointError(ValueError):
    """A file or object that is not a usable SwinIR checkpoint; the message says what it is and what we expected."""


class AssumptionWarning(UserWarning):
    """A hyper-parameter the checkpoint cannot tell was assumed; the message says how to override it."""


def _describe_text(head: bytes) -> str | None:
    """What a file that starts with ``head`` is, if it is text (a failed download, an LFS pointer), else None."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text or not all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        return None
    if text.startswith("version https://git-lfs"):
        return "a Git LFS pointer, not the weights (run `git lfs pull` where it came from)"
    if text.lstrip().lower().startswith(("<!doctype html", "<html")):
        return "an HTML page (a failed download?)"
    return f"a text file (starts with {text.strip()[:40]!r})"


def read_state_dict(path: str | os.PathLike) -> Mapping:
    """The raw object stored in a .pth/.pt/.ckpt (``torch.load(weights_only=True)``) or .safetensors file.

    Raises FileNotFoundError for a missing file and :class:`CheckpointError` (one line: what the file
    is, what we expected) for an empty, text, truncated or corrupt file or a pickled whole model.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError(f"{path}: the file is empty (0 bytes); {EXPECTED}")
    with open(path, "rb") as handle:
        head = handle.read(64)
    text = _describe_text(head)
    if text is not None:
        raise CheckpointError(f"{path}: {text}; {EXPECTED}")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu")
        except Exception as error:  # noqa: BLE001  (safetensors raises its own error types)
            raise CheckpointError(f"{path}: a truncated or corrupt .safetensors file of {size} bytes "
                                  f"({first_sentence(error)}); {EXPECTED}") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        classes = re.findall(r"GLOBAL (\S+)", str(error))
        if classes:
            raise CheckpointError(
                f"{path}: holds a pickled Python object ({classes[0]}, e.g. a whole model saved with "
                f"torch.save(model)), not a state dict; {EXPECTED} (re-save it with "
                "torch.save(model.state_dict(), path))") from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({size} bytes that torch.load cannot "
                              f"unpickle); {EXPECTED}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        if head.startswith(b"PK\x03\x04"):
            kind = "zip-format PyTorch checkpoint" + ("" if zipfile.is_zipfile(path) else " (its end is missing)")
        elif head.startswith(b"\x80"):
            kind = "pickle-format PyTorch checkpoint"
        else:
            kind = "file"
        reason = "" if isinstance(error, EOFError) else f" ({first_sentence(error)})"
        raise CheckpointError(f"{path}: a truncated or corrupt {kind} of {size} bytes{reason}; {EXPECTED} "
                              "(download or copy it again)") from None


def unwrap_state_dict(obj: Mapping, *, origin: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The bare state dict inside a checkpoint: descends into the first wrapper key present
    (params_ema, params, state_dict, model, ...) and strips ``module.``-style prefixes.
    origin: what errors name (the file's path, when it came from a file)."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{origin}: holds a {type(obj).__name__}, not a dict; {EXPECTED}")
    while not any(isinstance(value, torch.Tensor) for value in obj.values()):
        inner = next((obj[key] for key in WRAPPER_KEYS if isinstance(obj.get(key), Mapping)), None)
        if inner is None:
            raise CheckpointError(f"{origin}: found no tensors and none of the wrapper keys {WRAPPER_KEYS}; "
                                  f"keys: {list(obj)[:10]}; {EXPECTED}")
        obj = inner
    state = {key: value for key, value in obj.items() if isinstance(value, torch.Tensor)}
    for prefix in PREFIXES:
        if state and all(key.startswith(prefix) for key in state):
            state = {key[len(prefix) :]: value for key, value in state.items()}
    return state


def _count(state: Mapping, pattern: str) -> int:
    regex = re.compile(pattern)
    return len({match.group(1) for key in state for match in [regex.match(key)] if match})


def _listed(keys: list[str], limit: int = 3) -> str:
    return ", ".join(keys[:limit]) + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def infer_config(state: Mapping, *, origin: str = "state dict") -> dict:
    """SwinIR constructor kwargs from a bare state dict (see the module docstring).
    Raises :class:`CheckpointError` naming the missing keys if it is not a (complete) SwinIR state
    dict; its message starts with ``origin`` (:func:`load` passes the file's path)."""
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{origin}: not a SwinIR checkpoint, missing keys {missing} (has {len(state)} "
                              f"keys, e.g. {list(state)[:5]})")
    in_chans = state["conv_first.weight"].shape[1]
    embed_dim = state["conv_first.weight"].shape[0]
    num_groups = _count(state, r"layers\.(\d+)\.residual_group\.")
    depths = [_count(state, rf"layers\.{i}\.residual_group\.blocks\.(\d+)\.") for i in range(num_groups)]
    missing = [f"layers.{i}.residual_group.blocks.0.{key}" for i in range(num_groups) for key in BLOCK_KEYS
               if f"layers.{i}.residual_group.blocks.0.{key}" not in state]
    if missing:
        raise CheckpointError(f"{origin}: incomplete SwinIR state dict: missing {_listed(missing)}; expected every key "
                              f"of the {num_groups} residual groups the file has")
    num_heads = [state[f"layers.{i}.residual_group.blocks.0.attn.relative_position_bias_table"].shape[1] for i in range(num_groups)]
    table_rows = state["layers.0.residual_group.blocks.0.attn.relative_position_bias_table"].shape[0]
    window_size = (math.isqrt(table_rows) + 1) // 2  # the table has (2ws-1)^2 rows
    mlp_ratio = state["layers.0.residual_group.blocks.0.mlp.fc1.bias"].shape[0] / embed_dim

    shifted = next((f"layers.{i}.residual_group.blocks.1." for i in range(num_groups) if depths[i] > 1), None)
    mask = None if shifted is None else state.get(shifted + "attn_mask")
    if mask is not None:
        img_size = math.isqrt(mask.shape[0]) * window_size
    elif shifted is not None and shifted + "attn.relative_position_index" in state:
        img_size = window_size  # buffers kept but no mask: trained at img_size <= window_size, nothing shifts
    else:  # no shifted block, or no buffers at all: the released training size
        img_size = window_size * max(1, 64 // window_size)

    if "conv_before_upsample.0.weight" in state and "conv_up1.weight" in state:
        upsampler = "nearest+conv"
        upscale = 2 ** _count(state, r"conv_up(\d+)\.weight")
    elif "conv_before_upsample.0.weight" in state:
        upsampler = "pixelshuffle"
        upscale = 1
        for key in sorted(k for k in state if re.fullmatch(r"upsample\.\d+\.weight", k)):
            weight = state[key]
            upscale *= math.isqrt(weight.shape[0] // weight.shape[1])
    elif "upsample.0.weight" in state:
        upsampler = "pixelshuffledirect"
        upscale = math.isqrt(state["upsample.0.weight"].shape[0] // in_chans)
    else:
        upsampler = ""
        upscale = 1

    return dict(
        img_size=img_size,
        in_chans=in_chans,
        embed_dim=embed_dim,
        depths=depths,
        num_heads=num_heads,
        window_size=window_size,
        mlp_ratio=mlp_ratio,
        qkv_bias="layers.0.residual_group.blocks.0.attn.qkv.bias" in state,
        ape="absolute_pos_embed" in state,
        patch_norm="patch_embed.norm.weight" in state,
        upscale=upscale,
        img_range=255.0 if window_size == 7 else 1.0,
        upsampler=upsampler,
        resi_connection="1conv" if "conv_after_body.weight" in state else "3conv",
    )


def _check_keys(model: SwinIR, state: Mapping, config: dict, origin: str) -> None:
    """One-line errors for keys strict loading would reject (torch's message spans many lines)."""
    expected = model.state_dict()
    summary = (f"x{config['upscale']} {config['upsampler'] or 'restoration'}, {config['in_chans']} channels, "
               f"embed_dim {config['embed_dim']}, depths {config['depths']}")
    missing = [key for key in expected if key not in state]
    if missing:
        raise CheckpointError(f"{origin}: incomplete SwinIR state dict: {len(missing)} of the {len(expected)} keys of the "
                              f"model it describes ({summary}) are missing: {_listed(missing)}")
    unexpected = [key for key in state if key not in expected]
    if unexpected:
        raise CheckpointError(f"{origin}: keys that the SwinIR it describes ({summary}) does not have: "
                              f"{_listed(unexpected)}")
    for key, value in expected.items():
        if state[key].shape != value.shape and not key.endswith("attn_mask"):
            raise CheckpointError(f"{origin}: {key} has shape {tuple(state[key].shape)}, the SwinIR it "
                                  f"describes ({summary}) needs {tuple(value.shape)}")


def _preset_named(name: str):
    """The preset with this name or official checkpoint file name, else None."""
    from .presets import PRESETS

    return PRESETS.get(name) or next((p for p in PRESETS.values() if p.checkpoint == name), None)


def _check_preset(model: SwinIR, preset, origin: str) -> None:
    for field in PRESET_FIELDS:
        if model.config[field] != preset.kwargs[field]:
            raise CheckpointError(
                f"{origin}: holds a different model than {preset.name} ({field} {model.config[field]!r}, expected "
                f"{preset.kwargs[field]!r}); if it is a cached download, delete it and its .sha256 to download it again")


def _stored_img_range(obj) -> float | None:
    """The img_range a checkpoint records (``swinir train`` writes it in its "config"), else None."""
    config = obj.get("config") if isinstance(obj, Mapping) else None
    value = config.get("img_range") if isinstance(config, Mapping) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _build(obj, overrides: dict, preset, origin: str) -> SwinIR:
    state = unwrap_state_dict(obj, origin=origin)
    config = infer_config(state, origin=origin)
    stored_img_range = _stored_img_range(obj)
    if preset is not None:
        config["img_range"] = preset.kwargs["img_range"]
    elif stored_img_range is not None:
        config["img_range"] = stored_img_range
    elif "img_range" not in overrides:
        warnings.warn(
            f"{origin}: the file does not store img_range; assumed {config['img_range']:g} "
            f"({'window 7, as the released JPEG models' if config['window_size'] == 7 else 'as every released model but the JPEG ones'}). "
            "If the model was trained otherwise, pass img_range= to swinir.load (--img-range on the command line)",
            AssumptionWarning, stacklevel=3)
    config.update(overrides)
    model = SwinIR(**config)
    for key, value in model.state_dict().items():
        if key.endswith(("attn_mask", "relative_position_index")) and key not in state:
            state[key] = value
    _check_keys(model, state, config, origin)
    model.load_state_dict(state, strict=True)
    if preset is not None:
        _check_preset(model, preset, origin)
    return model.eval()


def load(checkpoint, *, progress: bool = True, **overrides) -> SwinIR:
    """A :class:`SwinIR` in eval mode with the weights of `checkpoint`.

    Args:
        checkpoint: a path (.pth/.pt via ``torch.load(weights_only=True)``, or .safetensors), a preset
            name (``"classical_sr_x4"``) or official file name, downloaded once and cached as the
            ``swinir`` command does (:mod:`swinir.hub`), or an already loaded dict; wrappers
            (params_ema preferred, params, state_dict, model, ...) and ``module.`` prefixes are handled.
        progress: show a progress bar while downloading.
        **overrides: constructor kwargs that win over the inferred ones (e.g. ``img_range=255.``,
            ``backend='reference'``).

    A named checkpoint (or a file with an official name) must hold the preset's architecture (scale,
    channels, upsampler, window). The ``attn_mask``/``relative_position_index`` buffers are
    deterministic and unused by the forward: files lacking them still load (ours are kept), and a mask
    of any img_size is accepted. Raises FileNotFoundError (or :class:`swinir.hub.HubError` when a
    download fails) and :class:`CheckpointError` with one line saying what is wrong.
    """
    if not isinstance(checkpoint, (str, os.PathLike)):
        return _build(checkpoint, overrides, None, "checkpoint")
    from . import hub

    spec = os.fspath(checkpoint)
    preset = _preset_named(os.path.basename(spec))

    def verify(path: str) -> None:  # a fresh download, before it enters the cache
        _build(read_state_dict(path), {}, preset, hub.download_url(preset.checkpoint))

    path = hub.resolve(spec, verify=verify, progress=progress)
    return _build(read_state_dict(path), overrides, preset, path)
