"""The trainer: the steps, the EMA, resuming, and the files a run writes (see :mod:`swinir.train`)."""

from __future__ import annotations

import copy
import csv
import io
import os
import re
import sys
import time

import numpy as np
import torch
from torch.utils.data import DataLoader

from .. import distributed, files
from ..errors import first_line
from ..losses import charbonnier_loss, l1_loss
from ..precision import autocast
from .building import architecture, build_model, choose_degradation
from .data import PatchSampler, RankItems
from .options import TrainError, TrainOptions, TrainResult, check_options, learning_rate
from .validation import load_validation, score_images

__all__ = ["Trainer", "train", "save_atomically", "CHECKPOINT", "FORMAT_VERSION", "PLOT_NAME"]

CHECKPOINT = re.compile(r"step_(\d{8})\.pth")
FORMAT_VERSION = 1
PLOT_NAME = "val.svg"  # the training curves, beside val.csv


class Trainer:
    """One training run (one process of it under torchrun). ``run()`` trains from the current step
    to ``options.until`` or ``options.steps``; see the module docstring for the recipe and files."""

    def __init__(self, options: TrainOptions, context: distributed.Context | None = None):
        self.options = options
        check_options(options)
        self.context = context or distributed.setup(options.device, options.dist_timeout)
        self._check_out()
        if options.batch % self.context.world_size:
            raise TrainError(f"--batch {options.batch}: expected a multiple of the number of processes "
                             f"({self.context.world_size})")
        self.model = build_model(options, self.context)
        if options.grad_checkpoint:
            for layer in self.model.layers:
                layer.residual_group.use_checkpoint = True
        self.degradation = choose_degradation(options, self.model)
        self.loss_fn = l1_loss if self.degradation.scale > 1 else charbonnier_loss
        self.patch = options.patch or self.model.config["img_size"]
        if isinstance(self.patch, (list, tuple)):
            self.patch = min(self.patch)
        self.data = PatchSampler(options.hr, options.lr, self.degradation, self.patch, options.batch,
                                 self.model.in_chans, options.seed, options.image_cache)
        self.validation = load_validation(options, self.degradation, self.model.in_chans) if options.val else []
        self.model.to(self.context.device).train()
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=options.learning_rate, betas=(0.9, 0.99))
        self.scaler = torch.amp.GradScaler(self.context.device.type, enabled=options.dtype == "fp16")
        self.step = 0
        self.history: list[dict] = []
        # the training loss: one row (step, mean loss) per window of log_every steps, windows aligned on
        # multiples of log_every (and the last step); the open window's (sum, count) goes into checkpoints,
        # so that a resumed run records the same means as an uninterrupted one
        self.losses: list[dict] = []
        self._loss_window: list = [0.0, 0]
        self.last_checkpoint: str | None = None
        self.plot_path = self._plot_path()
        self._plotted_step: int | None = None
        if options.resume:
            self._resume(self._resume_path())
        self.net = self.model
        if self.context.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.context.device.index] if self.context.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)

    def _check_out(self) -> None:
        """Before any work: rank 0 writes a file in ``out`` (and removes it), so that a folder that
        refuses files stops the run now, not at the first checkpoint after hours of training."""
        out, problem = self.options.out, None
        if self.context.is_main:
            try:
                files.check_writable_folder(out)
            except NotADirectoryError as error:
                problem = TrainError(f"--out {out}: cannot create it, {error.filename} is a file")
            except OSError as error:
                where = "" if os.path.abspath(error.filename or out) == os.path.abspath(out) else f" in {error.filename}"
                problem = TrainError(f"--out {out}: cannot write there ({error.strerror or error}{where})")
        if not distributed.all_ok(self.context, problem is None):
            raise problem or TrainError(f"--out {out}: rank 0 cannot write there")

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
            raise TrainError(f"--resume {path}: cannot read checkpoint ({type(error).__name__}: {first_line(error, 300)})") from None
        if not isinstance(state, dict) or not isinstance(state.get("trainer"), dict):
            raise TrainError(f"--resume {path}: not a `swinir train` checkpoint (no trainer state); "
                             "to fine-tune from it, use --init")
        ours, theirs = architecture(self.model.config), architecture(state.get("config", {}))
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
        self.losses = list(trainer.get("losses", []))
        window_sum, window_count = trainer.get("loss_window", (0.0, 0))
        self._loss_window = [float(window_sum) if self.context.is_main else 0.0, int(window_count)]
        self.last_checkpoint = path

    # -- training ----------------------------------------------------------------------------------

    def _update_ema(self) -> None:
        decay = self.options.ema_decay
        with torch.no_grad():
            for average, weight in zip(self.ema.parameters(), self.model.parameters()):
                average.mul_(decay).add_(weight, alpha=1.0 - decay)
            for average, buffer in zip(self.ema.buffers(), self.model.buffers()):
                average.copy_(buffer)

    def _train_step(self, lq: torch.Tensor, hq: torch.Tensor) -> torch.Tensor:
        step = self.step + 1
        seed = np.random.SeedSequence([self.options.seed, step, self.context.rank]).generate_state(1)[0]
        torch.manual_seed(int(seed))  # stochastic depth / dropout masks of this step
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.options.learning_rate, step, self.options.steps)
        device = self.context.device
        lq, hq = lq.to(device, non_blocking=True), hq.to(device, non_blocking=True)
        with autocast(self.context.device, self.options.dtype):
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
                            sampler=RankItems(self.step, end, o.batch, context), num_workers=o.workers,
                            pin_memory=context.device.type == "cuda")
        from tqdm.auto import tqdm

        bar = tqdm(total=o.steps, initial=self.step, unit="step", desc="train", file=sys.stderr, dynamic_ncols=True,
                   disable=o.quiet or not context.is_main)
        postfix = {}
        if self.history:
            postfix["val"] = f"{self.history[-1]['psnr']:.2f}dB"
        started, started_step = time.perf_counter(), self.step
        try:
            for lq, hq in loader:
                loss = self._train_step(lq, hq)
                self._loss_window = [loss + self._loss_window[0], self._loss_window[1] + 1]
                bar.update(1)
                if self.step % o.log_every == 0 or self.step in (end, o.steps):
                    loss_sum, loss_count = self._loss_window
                    mean_loss = distributed.total(context, [float(loss_sum)])[0] / (loss_count * context.world_size)
                    if self.step % o.log_every == 0 or self.step == o.steps:  # a whole window: recorded
                        self.losses.append({"step": self.step, "loss": mean_loss})
                        self._loss_window = [0.0, 0]
                    elapsed = time.perf_counter() - started
                    postfix.update(loss=f"{mean_loss:.4g}", lr=f"{self.optimizer.param_groups[0]['lr']:.3g}",
                                   img_s=f"{(self.step - started_step) * o.batch / max(elapsed, 1e-9):.1f}")
                    bar.set_postfix(postfix, refresh=False)
                    started, started_step = time.perf_counter(), self.step
                # not at --until: a stopped and resumed run validates at the steps an uninterrupted one does
                if self.validation and (self.step % o.val_every == 0 or self.step == o.steps):
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
        row = {"step": self.step, **score_images(self.ema, self.validation, context, self.degradation.scale)}
        self.history.append(row)
        if context.is_main:
            # the whole history, rewritten atomically: after a resume from an earlier checkpoint the file
            # holds that run's rows once (not the abandoned rows after it as well)
            text = io.StringIO(newline="")
            writer = csv.DictWriter(text, fieldnames=list(row), lineterminator="\r\n")
            writer.writeheader()
            writer.writerows(self.history)
            try:
                files.atomic_write_bytes(os.path.join(self.options.out, "val.csv"), text.getvalue().encode())
            except OSError as error:
                raise TrainError(f"{os.path.join(self.options.out, 'val.csv')}: cannot write "
                                 f"({error.strerror or first_line(error)})") from None
            self.write_plot()
        return row

    # -- the training curves -----------------------------------------------------------------------

    def _plot_path(self) -> str | None:
        """OUT/val.svg, or None with --no-plot or without matplotlib (then one line says so, on rank 0)."""
        if not self.options.plot:
            return None
        from .. import figures

        try:
            figures.pyplot()
        except figures.PlotUnavailable as missing:
            if self.context.is_main:
                print(f"swinir train: no training plot ({missing}; --no-plot silences this)", file=sys.stderr)
            return None
        return os.path.join(self.options.out, PLOT_NAME)

    def plot_title(self) -> str:
        """What the run trains (the same for a resumed run: no paths, no --until)."""
        o, config = self.options, self.model.config
        model = f"fine-tuned from {os.path.basename(o.init)}" if o.init else (o.preset or "from scratch")
        size = f"embed {config.get('embed_dim')}, depths {list(config.get('depths', []))}"
        d = self.degradation
        kind = {"sr": f"bicubic x{d.scale} SR", "paired": f"paired x{d.scale}",
                "noise": f"noise sigma {d.low:g}-{d.high:g}" if d.high > d.low else f"noise sigma {d.low:g}",
                "jpeg": f"JPEG q{d.low:g}-{d.high:g}" if d.high > d.low else f"JPEG q{d.low:g}"}.get(d.kind, d.kind)
        return f"swinir train: {kind}, {model} ({size}); batch {o.batch}, lr {o.learning_rate:g}, {o.steps} steps"

    def write_plot(self) -> None:
        """Rank 0 draws OUT/val.svg from the validation history and the recorded losses (atomically)."""
        if self.plot_path is None or not self.context.is_main or self._plotted_step == self.step:
            return
        from .. import figures

        try:
            figures.training_curves(self.plot_path, self.history, self.losses, self.plot_title())
        except OSError as error:
            raise TrainError(f"{self.plot_path}: cannot write ({error.strerror or first_line(error)})") from None
        except Exception as error:  # noqa: BLE001  (a plotting failure must not stop the training)
            print(f"swinir train: no training plot from now on ({type(error).__name__}: {first_line(error)})",
                  file=sys.stderr)
            self.plot_path = None
        self._plotted_step = self.step

    # -- files -------------------------------------------------------------------------------------

    def _weights(self) -> dict:
        config = {key: value for key, value in self.model.config.items() if key != "backend"}
        return {"params": self.model.state_dict(), "params_ema": self.ema.state_dict(), "config": config}

    def save_checkpoint(self) -> str:
        """Write OUT/step_<step>.pth (rank 0), then delete all but the newest ``keep``."""
        state = self._weights()
        # the open loss window, summed over the ranks (on resume rank 0 carries it, the others start at 0)
        window_sum = distributed.total(self.context, [float(self._loss_window[0])])[0]
        state["trainer"] = dict(format=FORMAT_VERSION, step=self.step, recipe=self.recipe(),
                                optimizer=self.optimizer.state_dict(), scaler=self.scaler.state_dict(),
                                validation=list(self.history), losses=list(self.losses),
                                loss_window=[window_sum, int(self._loss_window[1])])
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
                kept = "; the earlier checkpoints are kept" if self.last_checkpoint else ""
                error = TrainError(f"{failure}{kept}")
        if not distributed.all_ok(self.context, error is None):
            raise error or TrainError(f"{path}: rank 0 could not write the checkpoint")


def save_atomically(state: dict, path: str) -> None:
    """``torch.save`` into a temporary file next to ``path``, flushed to disk, then renamed over ``path``
    (:func:`swinir.files.atomic_write`): a failure (a full disk) leaves ``path`` and every other file as
    they were, and raises TrainError naming ``path``."""
    try:
        files.atomic_write(path, lambda handle: torch.save(state, handle), overwrite=True, fsync=True)
    except (OSError, RuntimeError) as error:  # torch.save reports failed writes as RuntimeError
        reason = error.strerror if isinstance(error, OSError) and error.strerror else first_line(error, 300)
        raise TrainError(f"{path}: cannot write ({reason})") from None


def train(**options) -> TrainResult:
    """Python entry point: ``swinir.train.train(out=..., hr=..., preset=..., steps=...)`` takes the
    fields of :class:`TrainOptions` and runs (under torchrun: this process's share of) the training."""
    trainer = Trainer(TrainOptions(**options))
    try:
        return trainer.run()
    finally:
        distributed.teardown(trainer.context)
