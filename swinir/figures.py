"""Figures: matplotlib, imported only when a figure is drawn (the core install does not need it).

:func:`pyplot` gives matplotlib's pyplot on the file-only Agg backend with settings that make an SVG
the same bytes for the same data (no date, a fixed hash salt for element ids, text kept as text,
which also keeps files small), or raises :class:`PlotUnavailable`, whose message is one line with
the install command. :func:`save` writes a figure atomically (:func:`swinir.files.atomic_write`).
:func:`training_curves` is the plot ``swinir train`` writes beside ``val.csv``; ``python -m bench.plot``
draws the benchmark figures with the same helpers.
"""

from __future__ import annotations

import io
import math
import os

__all__ = ["PlotUnavailable", "INSTALL", "pyplot", "save", "caption", "training_curves", "curve_points"]

INSTALL = "pip install swinir-kernels[plot]"

#: rcParams that make the files small and reproducible
_RC = {
    "svg.hashsalt": "swinir-kernels",
    "svg.fonttype": "none",
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "path.simplify": True,
}


class PlotUnavailable(ImportError):
    """matplotlib is not installed; the message is one line with the install command."""


def pyplot():
    """matplotlib.pyplot on the Agg backend with :data:`_RC` applied, or PlotUnavailable."""
    try:
        import matplotlib
    except ImportError:
        raise PlotUnavailable(f"plots need matplotlib, which is not installed: {INSTALL}") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update(_RC)
    return plt


def save(figure, path: str) -> None:
    """Writes ``figure`` to ``path`` (SVG or PNG, by the suffix) atomically, without a date or software
    stamp (the same data give the same file), and closes it."""
    from . import files

    plt = pyplot()
    kind = os.path.splitext(path)[1].lower().lstrip(".") or "svg"
    metadata = {"Date": None, "Creator": None} if kind == "svg" else {"Software": None} if kind == "png" else None
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format=kind, metadata=metadata, bbox_inches="tight", pad_inches=0.05)
    finally:
        plt.close(figure)
    files.atomic_write_bytes(path, buffer.getvalue(), overwrite=True)


def caption(rows: list[dict], extra: str = "") -> str:
    """'device · torch X · commit(s) · date(s)' of data rows having those keys (distinct values joined)."""

    def distinct(key, shorten=lambda value: value):
        seen = []
        for row in rows:
            value = shorten(str(row.get(key) or "").strip())
            if value and value not in seen:
                seen.append(value)
        return seen

    parts = []
    devices, torches = distinct("device"), distinct("torch")
    commits, dates = distinct("commit"), distinct("date", lambda value: value[:10])
    if devices:
        parts.append(", ".join(devices))
    if torches:
        parts.append("torch " + ", ".join(torches))
    if commits:
        parts.append(("commit " if len(commits) == 1 else "commits ") + ", ".join(commits))
    if dates:
        parts.append(dates[0] if len(dates) == 1 else f"{min(dates)} to {max(dates)}")
    if extra:
        parts.append(extra)
    return " · ".join(parts)


def curve_points(history: list[dict], losses: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """The points :func:`training_curves` draws: series name -> [(step, value)] (what the resume test compares)."""
    points = {name: [(int(row["step"]), float(row[name])) for row in history if name in row]
              for name in ("psnr", "psnr_y", "ssim", "ssim_y")}
    points["loss"] = [(int(row["step"]), float(row["loss"])) for row in losses]
    return {name: values for name, values in points.items() if values}


def training_curves(path: str, history: list[dict], losses: list[dict], title: str = "",
                    baseline: dict | None = None) -> None:
    """Validation PSNR (RGB, Y), SSIM (RGB, Y) and the training loss against step, in one figure of
    three panels sharing the step axis, written to ``path``. ``history``: rows with ``step`` and the
    scores (``val.csv``); ``losses``: rows with ``step`` and ``loss`` (mean over the logging window);
    ``baseline``: optional reference levels drawn as dashed lines, e.g. ``{"psnr": 31.8}`` (bicubic)."""
    plt = pyplot()
    points = curve_points(history, losses)
    figure, axes = plt.subplots(3, 1, figsize=(5.6, 5.4), sharex=True)
    styles = {"psnr": ("C0", "RGB"), "psnr_y": ("C1", "Y"), "ssim": ("C0", "RGB"), "ssim_y": ("C1", "Y")}
    for axis, names, label in ((axes[0], ("psnr", "psnr_y"), "validation PSNR (dB)"),
                               (axes[1], ("ssim", "ssim_y"), "validation SSIM")):
        for name in names:
            if name in points:
                steps, values = zip(*points[name])
                color, legend = styles[name]
                axis.plot(steps, values, marker="o", markersize=3, linewidth=1.2, color=color, label=legend)
            if baseline and name in baseline:
                axis.axhline(baseline[name], color=styles[name][0], linestyle="--", linewidth=0.9,
                             label=f"{styles[name][1]} {baseline.get('label', 'baseline')}")
        axis.set_ylabel(label)
        if axis.lines:
            axis.legend(loc="best", ncols=2)
        else:
            axis.text(0.5, 0.5, "no validation (--val)", transform=axis.transAxes, ha="center", va="center")
    if "loss" in points:
        steps, values = zip(*points["loss"])
        axes[2].plot(steps, values, linewidth=1.0, color="C2")
        if all(value > 0 for value in values) and max(values) / min(values) > 10:
            axes[2].set_yscale("log")
    else:
        axes[2].text(0.5, 0.5, "no loss recorded yet", transform=axes[2].transAxes, ha="center", va="center")
    axes[2].set_ylabel("training loss")
    axes[2].set_xlabel("step")
    last = max((values[-1][0] for values in points.values()), default=1)
    axes[2].set_xlim(0, max(1, last) * 1.02 if not math.isnan(last) else 1)
    if title:
        axes[0].set_title(title, loc="left")
    figure.align_ylabels(axes)
    save(figure, path)
