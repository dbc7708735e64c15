"""Training and fine-tuning SwinIR (``swinir train`` and :func:`train`), on one process or many.

The package, by job: :mod:`.options` (what a run takes and the checks on it), :mod:`.data` (the
degraded patches and which process reads which), :mod:`.validation` (the scores ``swinir eval`` would
give), :mod:`.building` (the model and its degradation), :mod:`.loop` (the trainer and its files).

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
:func:`degrade_like_cli` (:func:`swinir.degrade.degrade`), which gives exactly the pixels ``swinir degrade`` writes for that patch.
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
Validation scores go to ``OUT/val.csv`` (the run's whole history, rewritten atomically at each
validation), and ``OUT/val.svg`` plots them with the training loss (the mean of each window of
``log_every`` steps, windows aligned on multiples of ``log_every``) against step (:mod:`swinir.figures`;
``plot=False`` or ``--no-plot`` turns it off; without matplotlib one line says so and the run goes on).
The losses and the open window are in the checkpoints, so a resumed run draws the same points.
"""

from .data import Degradation, PatchSampler, degrade_like_cli
from .loop import Trainer, train
from .options import TrainError, TrainOptions, TrainResult, check_options, learning_rate

__all__ = [
    "TrainError",
    "TrainOptions",
    "TrainResult",
    "Trainer",
    "check_options",
    "PatchSampler",
    "Degradation",
    "degrade_like_cli",
    "learning_rate",
    "train",
]
