"""Figures of the dense tasks: scenes with predicted boxes and masks beside the truth (seen classes green, unseen
orange), and CoOp's seen and unseen AP50 / mIoU after every epoch against zero-shot."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from gradflow.plots import new_figure

SEEN_COLOUR = (0.1, 0.65, 0.2)
UNSEEN_COLOUR = (0.95, 0.5, 0.05)


def _boxes(ax, boxes: np.ndarray, labels: Sequence[int], names: Sequence[str], seen: set[int]) -> None:
    for (x0, y0, x1, y1), c in zip(np.asarray(boxes).reshape(-1, 4), labels):
        colour = SEEN_COLOUR if int(c) in seen else UNSEEN_COLOUR
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec=colour, lw=1.4))
        ax.text(x0, y0 - 1, names[int(c)], color=colour, fontsize=5, va="bottom")


def _overlay(image: np.ndarray, semantic: np.ndarray, seen: set[int]) -> np.ndarray:
    out = image.astype(float) / 255.0
    for c in np.unique(semantic[semantic >= 0]).tolist():
        colour = np.array(SEEN_COLOUR if c in seen else UNSEEN_COLOUR)
        m = semantic == c
        out[m] = 0.45 * out[m] + 0.55 * colour
    return out


def scenes_figure(examples: list[dict], names: Sequence[str], seen: Sequence[int]) -> Figure:
    """One row per scene: truth (boxes and masks), predicted boxes, predicted masks. Each example holds `image`,
    `boxes`, `labels`, `semantic` (truth, -1 background), `pred_boxes`, `pred_labels`, `pred_semantic`."""
    seen_set = {int(c) for c in seen}
    fig, axes = new_figure(9, 3 * len(examples), len(examples), 3, font_scale=0.8)
    axes = np.asarray(axes).reshape(len(examples), 3)
    for row, ex in zip(axes, examples):
        row[0].imshow(_overlay(ex["image"], ex["semantic"], seen_set))
        _boxes(row[0], ex["boxes"], ex["labels"], names, seen_set)
        row[1].imshow(ex["image"])
        _boxes(row[1], ex["pred_boxes"], ex["pred_labels"], names, seen_set)
        row[2].imshow(_overlay(ex["image"], ex["pred_semantic"], seen_set))
        for ax, title in zip(row, ("truth", "predicted boxes (score >= 0.5)", "predicted masks")):
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    return fig


def curve_figure(curves: list[list[dict]], zero_shot: dict, keys: Sequence[tuple[str, str]]) -> Figure:
    """Per-epoch values (mean over seeds, band: min to max) of each (key, label) in `keys`, from `curves` (one list
    of {epoch, key: value} rows per seed), with zero-shot's value of each key as a dashed line."""
    fig, axes = new_figure(5 * len(keys), 4, 1, len(keys), font_scale=1.0)
    axes = np.atleast_1d(axes)
    for ax, (key, label) in zip(axes, keys):
        epochs = [r["epoch"] for r in curves[0]]
        vals = np.array([[r[key] for r in c] for c in curves], dtype=float)
        ax.plot(epochs, np.nanmean(vals, axis=0), lw=1.8, label="CoOp")
        ax.fill_between(epochs, np.nanmin(vals, axis=0), np.nanmax(vals, axis=0), alpha=0.15)
        zs = zero_shot.get(key)
        if zs is not None and np.isfinite(zs):
            ax.axhline(zs, color="black", ls="--", lw=1.2, label=f"zero-shot ({zs:.1f})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{label} (%)")
        ax.legend(loc="best", fontsize=8)
    return fig
