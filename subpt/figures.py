"""Figures of training runs: per-epoch accuracy curves against zero-shot (matplotlib's object API and Agg
canvas through gradflow.plots: no pyplot, no global backend or theme)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import seaborn as sns

from gradflow.plots import new_figure


def plot_accuracy_curves(curves: dict, path: Path, title: str | None = None) -> Path:
    """Base and novel test accuracy per epoch (mean over seeds, band = min..max) for each method.

    `curves[method]` holds "epoch" and per-seed lists "base_acc", "novel_acc"; `curves["zero-shot"]`
    holds per-seed zero-shot accuracies, drawn as horizontal lines.
    """
    fig, axes = new_figure(12, 4.5, 1, 2, font_scale=1.0)
    palette = sns.color_palette("tab10")
    methods = [m for m in curves if m != "zero-shot"]
    for ax, key, label in zip(axes, ("base_acc", "novel_acc"), ("Base classes", "Novel classes")):
        for i, m in enumerate(methods):
            c = curves[m]
            vals = np.array(c[key], dtype=float)
            epochs = np.array(c["epoch"])
            mean = np.nanmean(vals, axis=0)
            ax.plot(epochs, mean, color=palette[i % 10], label=m, lw=1.8)
            ax.fill_between(epochs, np.nanmin(vals, axis=0), np.nanmax(vals, axis=0), color=palette[i % 10], alpha=0.12)
        if "zero-shot" in curves:
            zs = float(np.mean(curves["zero-shot"][key]))
            ax.axhline(zs, color="black", ls="--", lw=1.2, label=f"zero-shot ({zs:.1f})")
        ax.set_title(label)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (%)")
    axes[1].legend(loc="best", fontsize=8)
    if title:
        fig.suptitle(title)
    path = Path(path)
    try:
        fig.savefig(path, dpi=110)
    finally:
        fig.clear()
    return path
