"""The training data: degraded patches that are a pure function of ``(seed, step, index in the global
batch)`` (see :mod:`swinir.train`), and which items each process reads."""

from __future__ import annotations

import collections
import dataclasses
import os
import sys

import numpy as np
import torch
from torch.utils.data import Dataset

from .. import degrade, distributed, imageio
from .options import TrainError

__all__ = ["Degradation", "degrade_like_cli", "PatchSampler", "RankItems", "Sample", "list_images", "paired_lr",
           "model_channels", "chw"]


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
    (``--quality level``) by :func:`swinir.degrade.degrade`, quantised to the file's bit depth (the
    input's; 8 for JPEG)."""
    settings = {"sr": dict(scale=degradation.scale), "noise": dict(sigma=level, seed=noise_seed),
                "jpeg": dict(quality=level)}
    if degradation.kind not in settings:
        raise ValueError(f"degradation: expected sr, noise or jpeg, got {degradation.kind!r}")
    lq, bit_depth = degrade.degrade(hq, degradation.kind, bit_depth=bit_depth, **settings[degradation.kind])
    return imageio.round_trip(lq, bit_depth)


def list_images(folder: str, option: str) -> list[str]:
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


def paired_lr(hr_paths: list[str], lr_folder: str, scale: int) -> list[str]:
    """The LR file of each HR file: same name, or ``<name>x<scale>`` (the official LR sets)."""
    by_stem = {os.path.splitext(os.path.basename(p))[0]: p for p in list_images(lr_folder, "--lr")}
    pairs = []
    for path in hr_paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        match = by_stem.get(stem) or by_stem.get(f"{stem}x{scale}")
        if match is None:
            raise TrainError(f"--lr {lr_folder}: no LR image {stem}.* or {stem}x{scale}.* for {path}")
        pairs.append(match)
    return pairs


def model_channels(image: imageio.LoadedImage, in_chans: int, studio_luma: bool) -> np.ndarray:
    """Pixels in the model's channels: gray as ``degrade --gray`` (studio Y for JPEG), gray -> RGB by copying."""
    if image.channels == in_chans:
        return image.pixels
    if in_chans == 1:
        return degrade.to_gray(image.pixels, studio_luma)
    return np.repeat(image.pixels, 3, axis=2)


def _augment(pixels: np.ndarray, flip: bool, turns: int) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(pixels[:, ::-1] if flip else pixels, turns))


def chw(pixels: np.ndarray) -> torch.Tensor:
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
        self.hr_paths = list_images(hr, "--hr")
        self.lr_paths = paired_lr(self.hr_paths, lr, degradation.scale) if lr else None
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
        entry = (model_channels(image, self.in_chans, self.studio_luma), image.bit_depth)
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
        return chw(sample.lq), chw(sample.hq)


class RankItems(torch.utils.data.Sampler):
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
