"""Figures of training runs: per-epoch accuracy curves against zero-shot."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402


def plot_accuracy_curves(curves: dict, path: Path, title: str | None = None) -> Path:
    """Base and novel test accuracy per epoch (mean over seeds, band = min..max) for each method.

    `curves[method]` holds "epoch" and per-seed lists "base_acc", "novel_acc"; `curves["zero-shot"]`
    holds per-seed zero-shot accuracies, drawn as horizontal lines.
    """
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=False)
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
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
