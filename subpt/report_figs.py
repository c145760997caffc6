"""Seaborn figures of the interpretability report, returned as base64 PNG strings for inline <img> tags.

Figures use matplotlib's object API with the Agg canvas (no pyplot state), as gradflow.plots does.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from subpt.report_data import finite
from subpt.report_model import SPLIT_LABELS, ClassAnalysis
from subpt.report_traj import TrajectoryAnalysis

DPI = 100
EARLY_COLOR = "#1f77b4"
LATE_COLOR = "#d62728"


def _figure(width: float, height: float, nrows: int = 1, ncols: int = 1, **kw) -> tuple[Figure, list]:
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.9):
        fig = Figure(figsize=(width, height), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, [ax for row in axes for ax in row]


def to_png(fig: Figure) -> str:
    """Render `fig` as a base64 PNG and release it."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=DPI)
    finally:
        fig.clear()
    return base64.b64encode(buf.getvalue()).decode("ascii")


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


# ---------------------------------------------------------------------------------------------- trajectory
def spectrum_figure(t: TrajectoryAnalysis) -> str:
    """Explained energy per component and cumulative energy of the early and late windows."""
    fig, (ax1, ax2) = _figure(11.5, 4.2, 1, 2)
    what = "gradient" if t.source == "grads" else "centred ctx-snapshot" if t.centered else "ctx-snapshot"
    kmax = 0
    for w, name, color in ((t.early, "early", EARLY_COLOR), (t.late, "late", LATE_COLOR)):
        if w is None:
            continue
        evr = 100 * np.asarray(w.spectrum.explained_variance_ratio, dtype=float)
        k = min(evr.size, max(30, 2 * max(t.rank, 1)))
        kmax = max(kmax, k)
        idx = np.arange(1, k + 1)
        pos = evr[:k] > 0
        sns.lineplot(
            x=idx[pos],
            y=evr[:k][pos],
            ax=ax1,
            marker="o",
            markersize=4,
            color=color,
            label=f"{name} ({w.label}, {w.n_rows} rows)",
        )
        cum = 100 * np.asarray(w.spectrum.cumulative_energy, dtype=float)[:k]
        sns.lineplot(x=idx, y=cum, ax=ax2, marker="o", markersize=4, color=color, label=f"{name} ({w.label})")
    ax1.set_yscale("log")
    ax1.set_xlabel("component i")
    ax1.set_ylabel("energy of component i (% of window total, log)")
    ax1.set_title(f"{what} spectrum of the early and late windows")
    if t.rank:
        ax2.axvline(t.rank, color="0.4", linestyle="--", linewidth=1)
        ax2.annotate(
            f"r = {t.rank}",
            xy=(t.rank, 3),
            xytext=(4, 0),
            textcoords="offset points",
            fontsize=9,
            color="0.3",
        )
    ax2.set_ylim(0, 101)
    ax2.set_xlabel("number of components r")
    ax2.set_ylabel("cumulative energy (% of window total)")
    ax2.set_title("cumulative energy")
    for ax in (ax1, ax2):
        ax.set_xlim(0.5, max(kmax, 1) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return to_png(fig)


def _win_mid(w) -> float:
    return 0.5 * (w.lo + w.hi)


def rank_figure(t: TrajectoryAnalysis) -> str:
    """Effective rank and top-direction energy per window over the run, early and late windows shaded."""
    fig, (ax1, ax2) = _figure(11.5, 4.0, 1, 2, sharex=True)
    x = [_win_mid(w) for w in t.windows]
    unit = t.windows[0].kind[:-1] if t.windows else "epoch"
    sns.lineplot(
        x=x, y=[w.effective_rank for w in t.windows], ax=ax1, marker="o", label="entropy effective rank"
    )
    sns.lineplot(
        x=x, y=[w.participation_ratio for w in t.windows], ax=ax1, marker="s", label="participation ratio"
    )
    sns.lineplot(
        x=x,
        y=[100 * w.energy_at(1) for w in t.windows],
        ax=ax2,
        marker="o",
        color="C2",
        label="top direction",
    )
    if t.rank:
        sns.lineplot(
            x=x,
            y=[100 * w.energy_at(t.rank) for w in t.windows],
            ax=ax2,
            marker="s",
            color="C4",
            label=f"top {t.rank} directions",
        )
    for ax in (ax1, ax2):
        _shade_windows(ax, t)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(f"{unit} (window centre)")
    ax1.set_ylabel("rank (number of directions)")
    ax1.set_title(
        f"effective rank per window ({t.windows[0].hi - t.windows[0].lo + 1} {unit}s each)"
        if t.windows
        else ""
    )
    ax2.set_ylabel("energy share (% of window total)")
    ax2.set_ylim(0, 101)
    ax2.set_title("energy in the leading directions per window")
    return to_png(fig)


def _shade_windows(ax, t: TrajectoryAnalysis, steps: bool = False) -> None:
    for w, name, color in ((t.early, "early", EARLY_COLOR), (t.late, "late", LATE_COLOR)):
        if w is None or (steps and w.kind != "steps" and t.captured_epochs is None):
            continue
        lo, hi = w.lo - 0.5, w.hi + 0.5
        if steps and w.kind == "epochs":
            sel = (t.captured_epochs >= w.lo) & (t.captured_epochs <= w.hi)
            if not sel.any():
                continue
            lo, hi = t.captured_steps[sel].min() - 0.5, t.captured_steps[sel].max() + 0.5
        ax.axvspan(lo, hi, color=color, alpha=0.08, zorder=0)
        ax.annotate(
            f"{name} window",
            xy=(lo, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, -12),
            textcoords="offset points",
            fontsize=8,
            color=color,
        )


def angles_figure(t: TrajectoryAnalysis) -> str:
    """Principal angles between the early and late subspaces, smallest first."""
    a = np.asarray(t.angles_deg, dtype=float)
    fig, (ax,) = _figure(6.5, 4.0)
    sns.barplot(x=np.arange(1, a.size + 1), y=a, ax=ax, color="C0")
    for i, v in enumerate(a):
        ax.annotate(
            f"{v:.0f}°", xy=(i, v), xytext=(0, 2), textcoords="offset points", ha="center", fontsize=8
        )
    ax.set_ylim(0, 95)
    ax.axhline(90, color="0.5", linestyle=":", linewidth=1)
    ax.set_xlabel("principal angle index i (ascending)")
    ax.set_ylabel("angle θ_i (degrees)")
    ax.set_title(f"early vs late rank-{t.rank} subspaces (overlap {t.overlap:.2f})")
    return to_png(fig)


def drift_figure(t: TrajectoryAnalysis) -> str:
    """Heatmap of the overlap of every pair of windows' top-r subspaces."""
    m = np.asarray(t.drift, dtype=float)
    labels = [w.label.split(":")[1] for w in t.windows]
    unit = t.windows[0].kind
    size = 2.8 + 0.34 * m.shape[0]
    fig, (ax,) = _figure(size + 1.6, size)
    sns.heatmap(
        m,
        vmin=0,
        vmax=1,
        cmap="viridis",
        annot=m.shape[0] <= 12,
        fmt=".2f",
        square=True,
        xticklabels=labels,
        yticklabels=labels,
        ax=ax,
        annot_kws={"fontsize": 7},
        cbar_kws={"label": "overlap ‖U_i U_jᵀ‖²_F / r (0 = orthogonal, 1 = same)"},
    )
    ax.set_xlabel(f"window ({unit})")
    ax.set_ylabel(f"window ({unit})")
    ax.set_title(f"subspace drift between windows (rank {t.drift_rank})")
    return to_png(fig)


def captured_figure(t: TrajectoryAnalysis) -> str:
    """Share of each step's gradient energy inside the early (and late) subspace, with per-epoch means."""
    fig, (ax,) = _figure(11.5, 4.2)
    steps = np.asarray(t.captured_steps)
    epochs = np.asarray(t.captured_epochs)
    for fr, name, color in ((t.captured_early, "early", EARLY_COLOR), (t.captured_late, "late", LATE_COLOR)):
        if fr is None:
            continue
        y = 100 * np.asarray(fr, dtype=float)
        ax.plot(steps, y, color=color, linewidth=0.6, alpha=0.22)
        ue = np.unique(epochs)
        mx = [steps[epochs == e].mean() for e in ue]
        my = [np.nanmean(y[epochs == e]) if np.isfinite(y[epochs == e]).any() else np.nan for e in ue]
        sns.lineplot(
            x=mx,
            y=my,
            ax=ax,
            color=color,
            marker="o" if len(ue) <= 60 else None,
            markersize=4,
            linewidth=2,
            label=f"{name} basis (rank {t.rank}): per-epoch mean; thin line: per step",
        )
    _shade_windows(ax, t, steps=True)
    ax.set_ylim(0, 101)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("training step")
    ax.set_ylabel("gradient energy in the subspace (%)")
    ax.set_title("share of each step's gradient captured by the early (and late) subspace")
    handles, labels = ax.get_legend_handles_labels()
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize=9, frameon=False)
    return to_png(fig)


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
