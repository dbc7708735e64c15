"""Training and fine-tuning SwinIR (``swinir train`` and :func:`train`), on one process or many.

Recipe (the paper's, scaled to ``steps``): Adam (betas 0.9/0.99, no weight decay), learning rate
2e-4 halved after 50%, 80%, 90% and 95% of the steps; L1 loss for super-resolution, Charbonnier
(eps 1e-3) for denoising and JPEG; an exponential moving average of the weights
(``ema = decay * ema + (1 - decay) * weights`` after every step, decay 0.999) that is validated and
saved as ``params_ema``, next to the raw weights as ``params`` (BasicSR's layout, which
:func:`swinir.load`, the official test script and spandrel read).

Data. Every training sample is a pure function of ``(seed, step, index in the global batch)``: a
NumPy generator seeded with that triple picks the image, the patch position, a horizontal flip, a
number of 90-degree turns, the degradation level (noise sigma or JPEG quality, uniform in the range)
and the noise seed. The HR patch (``patch * scale`` pixels, after the flip and turns) is degraded by
:func:`degrade_like_cli`, which gives exactly the pixels ``swinir degrade`` writes for that patch.
With paired folders (``lr``), the LR patch is cut at the same place as the HR one.

Hence (a) resuming needs only the step number to continue the data stream, (b) with N processes
(torchrun), rank r takes samples ``[r * B/N, (r + 1) * B/N)`` of each global batch of B, and the
gradients DistributedDataParallel averages are those of the whole batch: 1 and N processes train
the same model up to float rounding. The other randomness (stochastic depth, dropout) comes from
torch's generator, reseeded from ``(seed, step, rank)`` before every step, so it needs no saved
state either (it does depend on the rank: pass ``drop_path_rate=0`` for runs that must not depend
on the number of processes).

Checkpoints (rank 0 writes): ``OUT/step_<8 digits>.pth`` every ``save_every`` steps, at ``until``
and at the end, written to a temporary file and renamed, the last ``keep`` kept; at the end also
``OUT/model.pth`` (weights only). A checkpoint holds ``params``, ``params_ema``, ``config`` (the
constructor arguments) and ``trainer`` (step, recipe, optimizer and GradScaler states): enough for an
exact resume, which on the CPU gives the same weights, bit for bit, as an uninterrupted run.
Validation scores go to ``OUT/val.csv``.
"""

from __future__ import annotations

import collections
import copy
import csv
import dataclasses
import os
import re
import sys
import tempfile
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from . import degrade, distributed, imageio, metrics
from .losses import charbonnier_loss, l1_loss
from .model import SwinIR
from .presets import PRESETS, build

__all__ = [
    "TrainError",
    "TrainOptions",
    "TrainResult",
    "Trainer",
    "check_options",
    "PatchSampler",
    "degrade_like_cli",
    "learning_rate",
    "train",
]

MILESTONES = (0.5, 0.8, 0.9, 0.95)  # fractions of the steps after which the learning rate halves
CHECKPOINT = re.compile(r"step_(\d{8})\.pth")
FORMAT_VERSION = 1
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


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
    log_every: int = 10
    quiet: bool = False


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


# ---------------------------------------------------------------------------------------------------
# Data


@dataclasses.dataclass(frozen=True)
class Degradation:
    """kind 'sr' (bicubic x scale), 'noise' (sigma in [low, high]), 'jpeg' (quality in [low, high]) or
    'paired' (LR files given). Gray models (in_chans 1) see colour images as ``degrade --gray`` makes them."""

    kind: str
    scale: int
    low: float = 0.0
    high: float = 0.0

    def draw(self, rng: np.random.Generator):
        if self.kind == "noise":
            return float(rng.uniform(self.low, self.high)) if self.high > self.low else float(self.low)
        if self.kind == "jpeg":
            return int(rng.integers(int(self.low), int(self.high) + 1))
        return None

    @property
    def validation_level(self):
        """The hardest level of the range: the largest sigma, the lowest quality."""
        return {"noise": float(self.high), "jpeg": int(self.low)}.get(self.kind)


def degrade_like_cli(hq: np.ndarray, degradation: Degradation, level, noise_seed: int, bit_depth: int) -> np.ndarray:
    """The LR pixels ``swinir degrade`` writes for an image ``hq`` ((H, W, C) float32, already in the
    model's channels) and reads back: bicubic / noise (``--sigma level --seed noise_seed``) / JPEG
    (``--quality level``), quantised to the file's bit depth (the input's; 8 for JPEG)."""
    if degradation.kind == "sr":
        lq = degrade.bicubic_downscale(hq, degradation.scale)
    elif degradation.kind == "noise":
        lq = degrade.add_gaussian_noise(hq, level, noise_seed)
    elif degradation.kind == "jpeg":
        lq, bit_depth = degrade.jpeg_compress(hq, level), 8
    else:
        raise ValueError(f"degradation: expected sr, noise or jpeg, got {degradation.kind!r}")
    return imageio.quantize(lq, bit_depth).astype(np.float32) / (255.0 if bit_depth == 8 else 65535.0)


def _list_images(folder: str, option: str) -> list[str]:
    if not os.path.isdir(folder):
        raise TrainError(f"{option} {folder}: no such folder")
    names = sorted(n for n in os.listdir(folder) if not n.startswith(".") and imageio.is_image_file(n))
    if not names:
        raise TrainError(f"{option} {folder}: no images ({', '.join(sorted(imageio.FORMATS))})")
    return [os.path.join(folder, name) for name in names]


def _image_size(path: str) -> tuple[int, int]:
    """(height, width) as read_image will return it (EXIF rotations included), from the header only."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
            if image.getexif().get(0x0112) in (5, 6, 7, 8):  # orientations that swap the axes
                width, height = height, width
    except Exception as error:  # noqa: BLE001  (Pillow raises many kinds for broken files)
        raise TrainError(f"{path}: cannot read image ({type(error).__name__}: {error})") from None
    return height, width


def _paired_lr(hr_paths: list[str], lr_folder: str, scale: int) -> list[str]:
    """The LR file of each HR file: same name, or ``<name>x<scale>`` (the official LR sets)."""
    by_stem = {os.path.splitext(os.path.basename(p))[0]: p for p in _list_images(lr_folder, "--lr")}
    pairs = []
    for path in hr_paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        match = by_stem.get(stem) or by_stem.get(f"{stem}x{scale}")
        if match is None:
            raise TrainError(f"--lr {lr_folder}: no LR image {stem}.* or {stem}x{scale}.* for {path}")
        pairs.append(match)
    return pairs


def _model_channels(image: imageio.LoadedImage, in_chans: int, studio_luma: bool) -> np.ndarray:
    """Pixels in the model's channels: gray as ``degrade --gray`` (studio Y for JPEG), gray -> RGB by copying."""
    if image.channels == in_chans:
        return image.pixels
    if in_chans == 1:
        return degrade.to_gray(image.pixels, studio_luma)
    return np.repeat(image.pixels, 3, axis=2)


def _augment(pixels: np.ndarray, flip: bool, turns: int) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(pixels[:, ::-1] if flip else pixels, turns))


def _chw(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))


@dataclasses.dataclass
class Sample:
    lq: np.ndarray  # (patch, patch, C) float32
    hq: np.ndarray  # (patch * scale, patch * scale, C) float32
    path: str  # the HR image it was cut from
    level: float | int | None  # noise sigma or JPEG quality
    noise_seed: int | None


class PatchSampler(Dataset):
    """Training pairs; item ``step * batch + index`` is sample ``index`` of the global batch of ``step``
    (see the module docstring). Images are decoded on demand, the last ``cache`` kept per process."""

    def __init__(self, hr: str, lr: str | None, degradation: Degradation, patch: int, batch: int, in_chans: int,
                 seed: int, cache: int = 16):
        self.degradation, self.patch, self.batch, self.seed = degradation, patch, batch, seed
        self.in_chans, self.cache_size = in_chans, cache
        self.studio_luma = degradation.kind == "jpeg"
        self.hr_paths = _list_images(hr, "--hr")
        self.lr_paths = _paired_lr(self.hr_paths, lr, degradation.scale) if lr else None
        self._cache: collections.OrderedDict = collections.OrderedDict()
        self._check_sizes(hr)

    def _check_sizes(self, hr: str) -> None:
        scale, patch = self.degradation.scale, self.patch
        if self.lr_paths is None:
            need, option, paths = patch * scale, f"--hr {hr}", self.hr_paths
            small = [(p, _image_size(p)) for p in paths]
        else:
            need, option, paths = patch, f"--lr {os.path.dirname(self.lr_paths[0])}", self.lr_paths
            small = []
            for hr_path, lr_path in zip(self.hr_paths, self.lr_paths):
                (h, w), (lh, lw) = _image_size(hr_path), _image_size(lr_path)
                if not (0 <= h - lh * scale < scale and 0 <= w - lw * scale < scale):
                    raise TrainError(f"{lr_path}: {lw}x{lh} is not {hr_path} ({w}x{h}) divided by the scale {scale}")
                small.append((lr_path, (lh, lw)))
        small = [(p, size) for p, size in small if min(size) < need]
        if small:
            path, (h, w) = small[0]
            raise TrainError(f"{option}: {len(small)} of {len(paths)} images are smaller than a {need}x{need} patch "
                             f"(--patch {patch} at scale {scale}), e.g. {os.path.basename(path)} {w}x{h}; "
                             "use a smaller --patch or remove them")

    def __len__(self) -> int:
        return sys.maxsize  # indexed by (step, index); the sampler says which items a rank reads

    def _load(self, path: str) -> tuple[np.ndarray, int]:
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        try:
            image = imageio.read_image(path)
        except imageio.ImageError as error:
            raise TrainError(str(error)) from None
        entry = (_model_channels(image, self.in_chans, self.studio_luma), image.bit_depth)
        self._cache[path] = entry
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return entry

    def sample(self, step: int, index: int) -> Sample:
        rng = np.random.default_rng([self.seed, step, index])
        choice = int(rng.integers(len(self.hr_paths)))
        flip, turns = bool(rng.integers(2)), int(rng.integers(4))
        hr, bit_depth = self._load(self.hr_paths[choice])
        scale, patch = self.degradation.scale, self.patch
        if self.lr_paths is not None:
            lr, _ = self._load(self.lr_paths[choice])
            top, left = int(rng.integers(lr.shape[0] - patch + 1)), int(rng.integers(lr.shape[1] - patch + 1))
            lq = _augment(lr[top:top + patch, left:left + patch], flip, turns)
            hq = _augment(hr[top * scale:(top + patch) * scale, left * scale:(left + patch) * scale], flip, turns)
            return Sample(lq, hq, self.hr_paths[choice], None, None)
        size = patch * scale
        top, left = int(rng.integers(hr.shape[0] - size + 1)), int(rng.integers(hr.shape[1] - size + 1))
        hq = _augment(hr[top:top + size, left:left + size], flip, turns)
        level = self.degradation.draw(rng)
        noise_seed = int(rng.integers(2**32)) if self.degradation.kind == "noise" else None
        lq = degrade_like_cli(hq, self.degradation, level, noise_seed, bit_depth)
        return Sample(lq, hq, self.hr_paths[choice], level, noise_seed)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.sample(*divmod(item, self.batch))
        return _chw(sample.lq), _chw(sample.hq)


class _RankItems(torch.utils.data.Sampler):
    """The items of this rank for steps start+1 .. end: its contiguous slice of every global batch."""

    def __init__(self, start: int, end: int, batch: int, context: distributed.Context):
        self.start, self.end, self.batch = start, end, batch
        self.local = batch // context.world_size
        self.offset = context.rank * self.local

    def __iter__(self):
        for step in range(self.start + 1, self.end + 1):
            for index in range(self.offset, self.offset + self.local):
                yield step * self.batch + index

    def __len__(self) -> int:
        return (self.end - self.start) * self.local


# ---------------------------------------------------------------------------------------------------
# Validation (the numbers `swinir degrade` + `swinir restore` + `swinir eval` give)


@dataclasses.dataclass
class _ValImage:
    lq: torch.Tensor  # (1, C, h, w)
    truth: np.ndarray  # (H, W, C) on the 0..255 scale, as `swinir eval` reads the ground truth
    bit_depth: int  # of the restored file `swinir restore` would write


def _on_255_scale(pixels: np.ndarray, bit_depth: int) -> np.ndarray:
    """As `swinir eval` reads a file of that bit depth: uint8 values, or unrounded 0..255 floats for 16 bits."""
    if bit_depth == 8:
        return imageio.quantize(pixels, 8)
    return pixels.astype(np.float64) * 255.0


def _load_validation(options: TrainOptions, degradation: Degradation, in_chans: int) -> list[_ValImage]:
    hr_paths = _list_images(options.val, "--val")
    lr_paths = _paired_lr(hr_paths, options.val_lr, degradation.scale) if options.val_lr else None
    if degradation.kind == "paired" and lr_paths is None:
        raise TrainError("--val-lr: needed with --lr (the validation LR images to pair with --val)")
    studio = degradation.kind == "jpeg"
    images = []
    for index, path in enumerate(hr_paths):
        try:
            hr = imageio.read_image(path)
            truth = _model_channels(hr, in_chans, studio)
            if lr_paths is not None:
                lr = imageio.read_image(lr_paths[index])
                lq, bit_depth = _model_channels(lr, in_chans, studio), lr.bit_depth
            else:
                level = degradation.validation_level
                lq, bit_depth = degrade_like_cli(truth, degradation, level, 0, hr.bit_depth), hr.bit_depth
                bit_depth = 8 if degradation.kind == "jpeg" else bit_depth
        except (imageio.ImageError, ValueError) as error:
            raise TrainError(f"--val {path}: {error}") from None
        images.append(_ValImage(_chw(lq)[None], _on_255_scale(truth, hr.bit_depth), bit_depth))
    return images


def _scores(restored: np.ndarray, image: _ValImage, border: int) -> list[float]:
    """PSNR, SSIM, PSNR_Y, SSIM_Y of a (H, W, C) float32 output, written and read back as `swinir restore`
    and `swinir eval` do (quantised to the file's bit depth, ground truth cropped to the output)."""
    top = 255.0 if image.bit_depth == 8 else 65535.0
    as_read = imageio.quantize(restored, image.bit_depth).astype(np.float32) / np.float32(top)
    output = _on_255_scale(as_read, image.bit_depth)
    truth = image.truth[: output.shape[0], : output.shape[1]]
    return [metrics.psnr(output, truth, border), metrics.ssim(output, truth, border),
            metrics.psnr(output, truth, border, y_channel=True), metrics.ssim(output, truth, border, y_channel=True)]


# ---------------------------------------------------------------------------------------------------
# Model


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0][:300]


def _build_model(options: TrainOptions, context: distributed.Context) -> SwinIR:
    torch.manual_seed(options.seed)
    arch = dict(options.arch)
    try:
        if options.init:
            return _load_init(options.init, arch, context, options.quiet)
        if options.preset:
            if options.preset not in PRESETS:
                raise TrainError(f"--preset: expected one of {', '.join(sorted(PRESETS))}, got {options.preset!r}")
            return build(options.preset, **arch)
        if not arch:
            raise TrainError("no model: give --init CHECKPOINT, --preset NAME or --arch KEY=VALUE ...")
        return SwinIR(**arch)
    except (TypeError, ValueError) as error:
        raise TrainError(f"--arch: {_first_line(error)}") from None


def _load_init(spec: str, arch: dict, context: distributed.Context, quiet: bool) -> SwinIR:
    from . import hub
    from .checkpoint import load, read_state_dict

    def resolve() -> str:
        try:
            return hub.resolve(spec, verify=load, progress=not quiet and context.is_main)
        except hub.HubError as error:
            raise TrainError(f"--init: {error}") from None

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
        raise TrainError(f"--init {spec}: {_first_line(error)}") from None
    except Exception as error:  # noqa: BLE001  (torch.load on a broken file raises many kinds)
        raise TrainError(f"--init {spec}: cannot load checkpoint ({type(error).__name__}: {_first_line(error)})") from None


def _degradation(options: TrainOptions, model: SwinIR) -> Degradation:
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


def _architecture(config: dict) -> dict:
    """The constructor arguments that decide the weights' shapes and meaning (not backend or training knobs)."""
    ignored = ("backend", "use_checkpoint", "drop_rate", "attn_drop_rate", "drop_path_rate", "img_size")
    return {key: value for key, value in config.items() if key not in ignored}


# ---------------------------------------------------------------------------------------------------
# The trainer


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
    if o.dtype not in DTYPES:
        raise TrainError(f"--dtype: expected one of {', '.join(DTYPES)}, got {o.dtype!r}")
    if o.until is not None and not 1 <= o.until <= o.steps:
        raise TrainError(f"--until: expected 1..{o.steps} (--steps), got {o.until}")
    if not o.learning_rate > 0:
        raise TrainError(f"--learning-rate: expected a positive number, got {o.learning_rate}")
    if not 0.0 <= o.ema_decay < 1.0:
        raise TrainError(f"--ema-decay: expected 0 <= decay < 1, got {o.ema_decay}")
    if o.val_lr and not o.val:
        raise TrainError("--val-lr: needs --val (the ground truth of the validation images)")


class Trainer:
    """One training run (one process of it under torchrun). ``run()`` trains from the current step
    to ``options.until`` or ``options.steps``; see the module docstring for the recipe and files."""

    def __init__(self, options: TrainOptions, context: distributed.Context | None = None):
        self.options = options
        check_options(options)
        self.context = context or distributed.setup(options.device, options.dist_timeout)
        if options.batch % self.context.world_size:
            raise TrainError(f"--batch {options.batch}: expected a multiple of the number of processes "
                             f"({self.context.world_size})")
        self.model = _build_model(options, self.context)
        if options.grad_checkpoint:
            for layer in self.model.layers:
                layer.residual_group.use_checkpoint = True
        self.degradation = _degradation(options, self.model)
        self.loss_fn = l1_loss if self.degradation.scale > 1 else charbonnier_loss
        self.patch = options.patch or self.model.config["img_size"]
        if isinstance(self.patch, (list, tuple)):
            self.patch = min(self.patch)
        self.data = PatchSampler(options.hr, options.lr, self.degradation, self.patch, options.batch,
                                 self.model.in_chans, options.seed, options.image_cache)
        self.validation = _load_validation(options, self.degradation, self.model.in_chans) if options.val else []
        self.model.to(self.context.device).train()
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=options.learning_rate, betas=(0.9, 0.99))
        self.scaler = torch.amp.GradScaler(self.context.device.type, enabled=options.dtype == "fp16")
        self.step = 0
        self.history: list[dict] = []
        self.last_checkpoint: str | None = None
        if options.resume:
            self._resume(self._resume_path())
        self.net = self.model
        if self.context.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.context.device.index] if self.context.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)

    # -- what a checkpoint must match to be resumed -------------------------------------------------

    def recipe(self) -> dict:
        o, d = self.options, self.degradation
        return dict(seed=o.seed, batch=o.batch, patch=self.patch, steps=o.steps, learning_rate=o.learning_rate,
                    ema_decay=o.ema_decay, dtype=o.dtype, degradation=d.kind, scale=d.scale, low=d.low, high=d.high)

    def _resume_path(self) -> str:
        if self.options.resume != "latest":
            return self.options.resume
        found = sorted(n for n in os.listdir(self.options.out) if CHECKPOINT.fullmatch(n)) \
            if os.path.isdir(self.options.out) else []
        if not found:
            raise TrainError(f"--resume: no checkpoint step_*.pth in {self.options.out}")
        return os.path.join(self.options.out, found[-1])

    def _resume(self, path: str) -> None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise TrainError(f"--resume {path}: no such file") from None
        except Exception as error:  # noqa: BLE001  (a truncated or foreign file raises many kinds)
            raise TrainError(f"--resume {path}: cannot read checkpoint ({type(error).__name__}: {_first_line(error)})") from None
        if not isinstance(state, dict) or not isinstance(state.get("trainer"), dict):
            raise TrainError(f"--resume {path}: not a `swinir train` checkpoint (no trainer state); "
                             "to fine-tune from it, use --init")
        ours, theirs = _architecture(self.model.config), _architecture(state.get("config", {}))
        different = [f"{key} {theirs.get(key)!r} vs {ours[key]!r}" for key in ours if theirs.get(key) != ours[key]]
        if different:
            raise TrainError(f"--resume {path}: a checkpoint of another architecture ({', '.join(different)}; "
                             "checkpoint vs this run)")
        trainer = state["trainer"]
        recipe = self.recipe()
        different = [f"{key} {trainer['recipe'].get(key)!r} vs {value!r}" for key, value in recipe.items()
                     if trainer["recipe"].get(key) != value]
        if different:
            raise TrainError(f"--resume {path}: trained with other settings ({', '.join(different)}; "
                             "checkpoint vs this run); resume with the same options")
        self.model.load_state_dict(state["params"])
        self.ema.load_state_dict(state["params_ema"])
        self.optimizer.load_state_dict(trainer["optimizer"])
        self.scaler.load_state_dict(trainer["scaler"])
        self.step = int(trainer["step"])
        self.history = list(trainer.get("validation", []))
        self.last_checkpoint = path

    # -- training ----------------------------------------------------------------------------------

    def _update_ema(self) -> None:
        decay = self.options.ema_decay
        with torch.no_grad():
            for average, weight in zip(self.ema.parameters(), self.model.parameters()):
                average.mul_(decay).add_(weight, alpha=1.0 - decay)
            for average, buffer in zip(self.ema.buffers(), self.model.buffers()):
                average.copy_(buffer)

    def _autocast(self):
        dtype = DTYPES[self.options.dtype]
        return torch.autocast(self.context.device.type, dtype=dtype, enabled=dtype is not None)

    def _train_step(self, lq: torch.Tensor, hq: torch.Tensor) -> torch.Tensor:
        step = self.step + 1
        seed = np.random.SeedSequence([self.options.seed, step, self.context.rank]).generate_state(1)[0]
        torch.manual_seed(int(seed))  # stochastic depth / dropout masks of this step
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.options.learning_rate, step, self.options.steps)
        device = self.context.device
        lq, hq = lq.to(device, non_blocking=True), hq.to(device, non_blocking=True)
        with self._autocast():
            loss = self.loss_fn(self.net(lq), hq)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self._update_ema()
        self.step = step
        return loss.detach()

    def run(self) -> TrainResult:
        o, context = self.options, self.context
        end = o.until or o.steps
        loader = DataLoader(self.data, batch_size=o.batch // context.world_size,
                            sampler=_RankItems(self.step, end, o.batch, context), num_workers=o.workers,
                            pin_memory=context.device.type == "cuda")
        from tqdm.auto import tqdm

        bar = tqdm(total=o.steps, initial=self.step, unit="step", desc="train", file=sys.stderr, dynamic_ncols=True,
                   disable=o.quiet or not context.is_main)
        postfix = {}
        if self.history:
            postfix["val"] = f"{self.history[-1]['psnr']:.2f}dB"
        loss_sum, loss_count, started, started_step = 0.0, 0, time.perf_counter(), self.step
        try:
            for lq, hq in loader:
                loss_sum = self._train_step(lq, hq) + loss_sum
                loss_count += 1
                bar.update(1)
                if self.step % o.log_every == 0 or self.step == end:
                    mean_loss = distributed.total(context, [float(loss_sum)])[0] / (loss_count * context.world_size)
                    elapsed = time.perf_counter() - started
                    postfix.update(loss=f"{mean_loss:.4g}", lr=f"{self.optimizer.param_groups[0]['lr']:.3g}",
                                   img_s=f"{(self.step - started_step) * o.batch / max(elapsed, 1e-9):.1f}")
                    bar.set_postfix(postfix, refresh=False)
                    loss_sum, loss_count, started, started_step = 0.0, 0, time.perf_counter(), self.step
                if self.validation and (self.step % o.val_every == 0 or self.step == end):
                    scores = self.validate()
                    postfix["val"] = f"{scores['psnr']:.2f}dB"
                    bar.set_postfix(postfix, refresh=False)
                if self.step % o.save_every == 0 or self.step == end:
                    self.save_checkpoint()
        finally:
            bar.close()
        model_path = None
        if self.step == o.steps:
            model_path = os.path.join(o.out, "model.pth")
            self._write_on_main(model_path, self._weights())
        return TrainResult(self.step, self.last_checkpoint, model_path, list(self.history))

    # -- validation --------------------------------------------------------------------------------

    def validate(self) -> dict:
        """PSNR/SSIM (RGB and Y, as `swinir eval`) of the EMA weights on the validation images, each rank
        scoring its share; the means go to OUT/val.csv and the history."""
        context = self.context
        scale = self.degradation.scale
        border = scale if scale > 1 else 0  # as `swinir eval --task classical_sr --scale s`; 0 for x1 models
        sums = [0.0, 0.0, 0.0, 0.0, 0.0]
        with torch.inference_mode():
            for image in self.validation[context.rank::context.world_size]:
                restored = self.ema(image.lq.to(context.device)).float().cpu()[0].permute(1, 2, 0).numpy()
                for i, value in enumerate(_scores(restored, image, border)):
                    sums[i] += value
                sums[4] += 1
        sums = distributed.total(context, sums)
        row = {"step": self.step, **{name: sums[i] / sums[4] for i, name in enumerate(("psnr", "ssim", "psnr_y", "ssim_y"))}}
        self.history.append(row)
        if context.is_main:
            path = os.path.join(self.options.out, "val.csv")
            os.makedirs(self.options.out, exist_ok=True)
            new = not os.path.exists(path)
            with open(path, "a", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(row))
                if new:
                    writer.writeheader()
                writer.writerow(row)
        return row

    # -- files -------------------------------------------------------------------------------------

    def _weights(self) -> dict:
        config = {key: value for key, value in self.model.config.items() if key != "backend"}
        return {"params": self.model.state_dict(), "params_ema": self.ema.state_dict(), "config": config}

    def save_checkpoint(self) -> str:
        """Write OUT/step_<step>.pth (rank 0), then delete all but the newest ``keep``."""
        state = self._weights()
        state["trainer"] = dict(format=FORMAT_VERSION, step=self.step, recipe=self.recipe(),
                                optimizer=self.optimizer.state_dict(), scaler=self.scaler.state_dict(),
                                validation=list(self.history))
        path = os.path.join(self.options.out, f"step_{self.step:08d}.pth")
        self._write_on_main(path, state)
        self.last_checkpoint = path
        if self.context.is_main:
            names = sorted(n for n in os.listdir(self.options.out) if CHECKPOINT.fullmatch(n))
            for name in names[: -self.options.keep]:
                os.unlink(os.path.join(self.options.out, name))
        return path

    def _write_on_main(self, path: str, state: dict) -> None:
        """Rank 0 writes; every rank learns whether it worked, and all stop with one error if not."""
        error = None
        if self.context.is_main:
            try:
                save_atomically(state, path)
            except TrainError as failure:
                error = failure
        if not distributed.all_ok(self.context, error is None):
            raise error or TrainError(f"{path}: rank 0 could not write the checkpoint")


def save_atomically(state: dict, path: str) -> None:
    """``torch.save`` into a temporary file next to ``path``, flushed to disk, then renamed over ``path``:
    a failure (a full disk) leaves ``path`` and every other file as they were."""
    folder = os.path.dirname(os.path.abspath(path))
    temp_path = None
    try:
        os.makedirs(folder, exist_ok=True)
        descriptor, temp_path = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp_path, 0o666 & ~umask)  # mkstemp makes 0600; a checkpoint gets the mode any new file gets
        with os.fdopen(descriptor, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_path, path)
    except (OSError, RuntimeError) as error:  # torch.save reports failed writes as RuntimeError
        reason = error.strerror if isinstance(error, OSError) and error.strerror else _first_line(error)
        raise TrainError(f"{path}: cannot write ({reason}); the earlier checkpoints are kept") from None
    finally:
        if temp_path is not None and os.path.exists(temp_path):
            os.unlink(temp_path)


def train(**options) -> TrainResult:
    """Python entry point: ``swinir.train.train(out=..., hr=..., preset=..., steps=...)`` takes the
    fields of :class:`TrainOptions` and runs (under torchrun: this process's share of) the training."""
    trainer = Trainer(TrainOptions(**options))
    try:
        return trainer.run()
    finally:
        distributed.teardown(trainer.context)
