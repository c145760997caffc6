"""Seaborn figures of the interpretability report, returned as base64 PNG strings for inline <img> tags.

Figures use matplotlib's object API with the Agg canvas (no pyplot state) through gradflow.plots, which also
draws the trajectory figures.
"""

from __future__ import annotations

import numpy as np
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from gradflow.plots import new_figure, to_png
from subpt.report.model import SPLIT_LABELS, ClassAnalysis
from subpt.report.rundata import finite


def _figure(width: float, height: float, nrows: int = 1, ncols: int = 1, **kw: object) -> tuple:
    return new_figure(width, height, nrows, ncols, report=True, **kw)


# ---------------------------------------------------------------------------------------------- accuracy
def accuracy_figure(runs: list[tuple[str, list[dict], dict | None]]) -> str:
    """Base, novel, HM and train accuracy per epoch for every run, zero-shot dashed, peaks marked.

    `runs` holds (name, metrics rows, accuracy summary) per run.
    """
    fig, axes = _figure(11.5, 7.5, 2, 2, sharex=True)
    palette = sns.color_palette("tab10", max(3, len(runs)))
    panels = [
        ("base_acc", "zs_base", "base classes (test)"),
        ("novel_acc", "zs_novel", "novel classes (test)"),
        ("hm", "zs_hm", "harmonic mean of base and novel"),
        ("train_acc", None, "training set (few-shot)"),
    ]
    for ax, (col, zs_key, title) in zip(axes, panels):
        drawn = False
        for i, (name, metrics, acc) in enumerate(runs):
            pts = [(m["epoch"], m[col]) for m in metrics if finite(m.get(col))]
            if not pts:
                continue
            drawn = True
            x, y = zip(*pts)
            color = palette[i % len(palette)]
            sns.lineplot(
                x=list(x),
                y=list(y),
                ax=ax,
                color=color,
                label=name,
                marker="o" if len(x) <= 40 else None,
                markersize=4,
                linewidth=1.8,
                legend=False,
            )
            if acc and zs_key and acc.get(zs_key) is not None:
                ax.axhline(acc[zs_key], color=color, linestyle="--", linewidth=1.2, alpha=0.9)
                ax.annotate(
                    f"zero-shot {acc[zs_key]:.1f}%",
                    xy=(1.0, acc[zs_key]),
                    xycoords=("axes fraction", "data"),
                    xytext=(-4, 3),
                    textcoords="offset points",
                    ha="right",
                    fontsize=8,
                    color=color,
                )
            if acc and col == "base_acc":
                ax.plot(
                    [acc["base_peak_epoch"]],
                    [acc["base_peak"]],
                    marker="*",
                    markersize=16,
                    color=color,
                    markeredgecolor="black",
                    zorder=5,
                    linestyle="none",
                )
                right = acc["base_peak_epoch"] > 0.5 * (x[0] + x[-1])
                ax.annotate(
                    f"peak {acc['base_peak']:.1f}% (epoch {acc['base_peak_epoch']})",
                    xy=(acc["base_peak_epoch"], acc["base_peak"]),
                    xytext=(-6 if right else 6, 6),
                    textcoords="offset points",
                    ha="right" if right else "left",
                    fontsize=8,
                    color=color,
                )
            if acc and col == "novel_acc" and acc.get("novel_below_epoch") is not None:
                k = acc["novel_below_epoch"]
                ax.axvline(k, color=color, linestyle=":", linewidth=1.5)
                ax.annotate(
                    f"below zero-shot from epoch {k}",
                    xy=(k, 0.02),
                    xycoords=("data", "axes fraction"),
                    xytext=(4, 0),
                    textcoords="offset points",
                    fontsize=8,
                    color=color,
                    rotation=90,
                    va="bottom",
                )
        ax.set_title(title)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)")
        if not drawn:
            ax.text(0.5, 0.5, "not recorded", transform=ax.transAxes, ha="center", va="center", color="0.4")
    handles = [_line(palette[i % len(palette)], "-", name) for i, (name, _, _) in enumerate(runs)] + [
        _line("0.3", "--", "zero-shot (dataset template)"),
        _line("0.3", ":", "novel first below zero-shot"),
    ]
    handles.append(_line("0.3", "none", "base peak", marker="*"))
    fig.legend(
        handles=handles, loc="outside lower center", ncol=min(6, len(handles)), fontsize=9, frameon=False
    )
    return to_png(fig)


def _line(color, style, label, marker=None):
    from matplotlib.lines import Line2D

    return Line2D([], [], color=color, linestyle=style, label=label, marker=marker, markersize=10)


# ---------------------------------------------------------------------------------------------- classes and cue
def shown_classes(d: np.ndarray, max_classes: int) -> list[int]:
    """Indices of the classes to draw: the largest gains and losses (changed classes first), best first."""
    fin = [i for i in range(d.size) if np.isfinite(d[i])]
    if len(fin) <= max_classes:
        return sorted(fin, key=lambda i: (-d[i], i))
    gains = sorted((i for i in fin if d[i] > 0), key=lambda i: (-d[i], i))
    losses = sorted((i for i in fin if d[i] < 0), key=lambda i: (d[i], i))
    half = max_classes // 2
    ng = min(len(gains), max(half, max_classes - len(losses)))
    nl = min(len(losses), max_classes - ng)
    pick = gains[:ng] + losses[:nl]  # unchanged classes are counted in the title, not drawn
    return sorted(pick, key=lambda i: (-d[i], i))


def classes_figure(ca: ClassAnalysis, max_classes: int = 24) -> str:
    """Per-class accuracy change of the context against zero-shot, largest gains and losses, per group."""
    groups = ca.groups
    shown = []
    for g in groups:
        d = np.array([f - z for f, z in zip(g.final, g.zero_shot)], dtype=float)
        idx = shown_classes(d, max_classes)
        shown.append((g, d, idx))
    height = max(3.0, 0.26 * max(len(s[2]) for s in shown) + 1.9)
    fig, axes = _figure(5.8 * len(groups), height, 1, len(groups))
    for ax, (g, d, idx) in zip(axes, shown):
        vals = d[idx]
        names = [g.classes[i] for i in idx]
        if idx:
            colors = ["#2ca02c" if v >= 0 else "#d62728" for v in vals]
            sns.barplot(x=vals, y=names, ax=ax, palette=colors, hue=names, legend=False, orient="h")
        else:
            ax.text(0.5, 0.5, "no class changed accuracy", transform=ax.transAxes, ha="center", color="0.4")
            ax.set_yticks([])
        for j, i in enumerate(idx):
            ax.annotate(
                f"{g.zero_shot[i]:.0f}→{g.final[i]:.0f}",
                xy=(vals[j], j),
                xytext=(3 if vals[j] >= 0 else -3, 0),
                textcoords="offset points",
                ha="left" if vals[j] >= 0 else "right",
                va="center",
                fontsize=7,
            )
        lim = max(5.0, float(np.nanmax(np.abs(vals))) * 1.35) if len(vals) else 5.0
        ax.set_xlim(-lim, lim)
        ax.axvline(0, color="0.3", linewidth=1)
        ax.set_xlabel("accuracy change vs zero-shot (points)")
        ax.set_ylabel("")
        finite = int(np.isfinite(d).sum())
        unchanged = int(np.sum(d == 0))
        if len(idx) == finite:
            sub = f"all {finite} classes"
        elif unchanged and not np.any(d[idx] == 0):
            sub = f"{len(idx)} changed classes shown, {unchanged} unchanged"
        else:
            sub = f"{len(idx)} of {finite} classes shown"
        ax.set_title(f"{g.group} classes: {g.zero_shot_acc:.1f}% → {g.final_acc:.1f}%\n({sub})")
    return to_png(fig)


def cue_figure(ca: ClassAnalysis) -> str:
    """Accuracy on the ordinary test set, with the cue absent and with the cue flipped, zero-shot vs context.

    Points joined by lines (no bars): the differences are often a few points near the top of the scale, so
    the y axis is fitted to the values rather than starting at zero.
    """
    cue = ca.cue or {}
    fig, axes = _figure(5.5 * len(cue), 4.2, 1, max(1, len(cue)), sharey=True)
    values = [v for rows in cue.values() for who in ("zero-shot", "context") for v in rows[who].values()]
    lo = max(0.0, min(values) - 3.0) if values else 0.0
    hi = min(101.0, max(values) + 2.0) if values else 100.0
    handles, labels = [], []
    for ax, (g, rows) in zip(axes, cue.items()):
        for who, label, color, dx in (
            ("zero-shot", "zero-shot", "0.45", -0.06),
            ("context", f"learned context (epoch {ca.epoch})", "C0", 0.06),
        ):
            splits = list(rows[who])
            xs = np.arange(len(splits)) + dx
            ys = [rows[who][s] for s in splits]
            ax.plot(xs, ys, marker="o", markersize=8, color=color, linewidth=1.6, label=label)
            above = who == "zero-shot"
            for x, y in zip(xs, ys):
                ax.annotate(
                    f"{y:.1f}",
                    xy=(x, y),
                    xytext=(0, 9 if above else -9),
                    textcoords="offset points",
                    ha="center",
                    va="bottom" if above else "top",
                    fontsize=8,
                    color=color,
                    bbox={
                        "boxstyle": "round,pad=0.15",
                        "facecolor": "white",
                        "edgecolor": "none",
                        "alpha": 0.85,
                    },
                )
            ax.set_xticks(np.arange(len(splits)), [SPLIT_LABELS.get(s, s) for s in splits])
        ax.set_xlim(-0.5, len(splits) - 0.5)
        ax.set_ylim(lo, hi)
        ax.set_xlabel("test images")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{g} classes")
        handles, labels = ax.get_legend_handles_labels()
    if cue:
        fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize=9, frameon=False)
    return to_png(fig)
