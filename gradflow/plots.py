"""Seaborn figures for spectra, principal angles, captured energy and drift.

Figures are built on matplotlib's object API with the Agg canvas (no pyplot, no window, no global
backend switch). The `plot_*` functions write a file and return its path (the CLI's --plot); the
`*_figure` functions draw a TrajectoryAnalysis and return a base64 PNG for an inline <img> (the reports).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from gradflow.analysis import TrajectoryAnalysis
from gradflow.errors import GradflowError
from gradflow.spectrum import Spectrum

DPI = 100  # inline report figures
EARLY_COLOR = "#1f77b4"
LATE_COLOR = "#d62728"


def new_figure(width: float, height: float, nrows: int = 1, ncols: int = 1, *, report: bool = False,
               font_scale: float | None = None, **kw: object) -> tuple[Figure, list]:
    """A new Agg-backed figure with nrows x ncols axes (flattened) in seaborn's whitegrid style.

    `report` uses the slightly smaller type of the inline report figures (seaborn's notebook context at 0.9;
    `font_scale` picks another scale of that context); `kw` goes to Figure.subplots.
    """
    scale = 0.9 if report and font_scale is None else font_scale
    context = sns.plotting_context("notebook", font_scale=scale) if scale is not None else nullcontext()
    with sns.axes_style("whitegrid"), context:
        fig = Figure(figsize=(width, height), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, [ax for row in axes for ax in row]


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, list]:
    """A figure of the `plot_*` functions: one row of ``ncols`` axes."""
    return new_figure(width, height, 1, ncols)


def to_png(fig: Figure) -> str:
    """Render `fig` as a base64 PNG and release it."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=DPI)
    finally:
        fig.clear()
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _angle_bars(ax: object, angles: np.ndarray, ymax: float, symbol: str) -> None:
    """Bars of principal angles (degrees), smallest first, on `ax`."""
    sns.barplot(x=np.arange(1, angles.size + 1), y=angles, ax=ax, color="C0")
    ax.set_ylim(0, ymax)
    ax.set_xlabel("principal angle index i (ascending)")
    ax.set_ylabel(f"angle {symbol} (degrees)")


def _drift_heatmap(ax: object, m: np.ndarray, labels: Sequence[str], unit: str, cbar_label: str,
                   **annot_kws: object) -> None:
    """Heatmap of the overlaps of every pair of windows' subspaces (annotated up to 12 windows) on `ax`."""
    sns.heatmap(
        m,
        vmin=0,
        vmax=1,
        cmap="viridis",
        annot=m.shape[0] <= 12,
        fmt=".2f",
        square=True,
        xticklabels=list(labels),
        yticklabels=list(labels),
        ax=ax,
        cbar_kws={"label": cbar_label},
        **({"annot_kws": annot_kws} if annot_kws else {}),
    )
    ax.set_xlabel(f"window ({unit})")
    ax.set_ylabel(f"window ({unit})")


def _save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` (creating the folder) and release it."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(p, dpi=120)
    except (OSError, ValueError) as exc:
        raise GradflowError(f"cannot write the figure {p}: {exc}") from None
    finally:
        fig.clear()
    return p


def plot_spectrum(spectrum: Spectrum, path: str | Path, title: str | None = None) -> Path:
    """Two panels: singular values (log scale) and cumulative explained energy, against component index."""
    s = np.asarray(spectrum.singular_values, dtype=np.float64)
    idx = np.arange(1, s.size + 1)
    fig, (ax1, ax2) = _figure(10, 4, ncols=2)
    positive = s > 0
    sns.lineplot(x=idx[positive], y=s[positive], marker="o", markersize=3, ax=ax1)
    ax1.set_yscale("log")
    ax1.set_xlabel("component index i")
    ax1.set_ylabel("singular value sigma_i (row units, log scale)")
    ax1.set_title("singular values")
    cum = 100.0 * np.asarray(spectrum.cumulative_energy, dtype=np.float64)
    sns.lineplot(x=idx, y=cum, marker="o", markersize=3, ax=ax2, color="C1")
    ax2.set_ylim(0, 101)
    ax2.set_xlabel("number of components r")
    ax2.set_ylabel("cumulative energy (% of total)")
    ax2.set_title(f"cumulative energy ({spectrum.method}, {'centred' if spectrum.centered else 'uncentred'})")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_principal_angles(
    angles: Sequence[float] | np.ndarray, path: str | Path, title: str | None = None
) -> Path:
    """Bar chart of principal angles (degrees), smallest first."""
    a = np.asarray(angles, dtype=np.float64)
    fig, (ax,) = _figure(6, 4)
    _angle_bars(ax, a, 90, "theta_i")
    ax.set_title(title or "principal angles between subspaces")
    return _save(fig, path)


def plot_captured_energy(
    steps: Sequence[int] | np.ndarray,
    fractions: Sequence[float] | np.ndarray,
    path: str | Path,
    epochs: Sequence[int] | np.ndarray | None = None,
    title: str | None = None,
) -> Path:
    """Captured-energy fraction per step (percent), with epoch boundaries marked when ``epochs`` is given."""
    x = np.asarray(steps)
    y = 100.0 * np.asarray(fractions, dtype=np.float64)
    if x.shape != y.shape:
        raise GradflowError(f"steps ({x.shape}) and fractions ({y.shape}) must have the same length")
    fig, (ax,) = _figure(8, 4)
    sns.lineplot(x=x, y=y, ax=ax, linewidth=0.8)
    if epochs is not None:
        e = np.asarray(epochs)
        if e.shape != x.shape:
            raise GradflowError(f"epochs ({e.shape}) and steps ({x.shape}) must have the same length")
        starts = np.nonzero(np.diff(e) != 0)[0] + 1
        for i in starts:
            ax.axvline(x[i], color="0.8", linewidth=0.5, zorder=0)
    ax.set_ylim(0, 101)
    ax.set_xlabel("training step")
    ax.set_ylabel("energy captured by the subspace (%)")
    ax.set_title(title or "share of each row's energy inside the subspace")
    return _save(fig, path)


def plot_drift(matrix: np.ndarray, labels: Sequence[str], path: str | Path, title: str | None = None) -> Path:
    """Heatmap of subspace overlaps between windows (0 = orthogonal, 1 = identical)."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] != len(labels):
        raise GradflowError(f"drift matrix {m.shape} and {len(labels)} labels do not match")
    size = 3 + 0.4 * m.shape[0]
    fig, (ax,) = _figure(size + 1, size)
    _drift_heatmap(ax, m, labels, "steps", "overlap ||U_i U_j^T||_F^2 / r (unitless)")
    ax.set_title(title or "subspace drift between windows")
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------- report figures
def spectrum_figure(t: TrajectoryAnalysis) -> str:
    """Explained energy per component and cumulative energy of the early and late windows."""
    fig, (ax1, ax2) = new_figure(11.5, 4.2, 1, 2, report=True)
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
    fig, (ax1, ax2) = new_figure(11.5, 4.0, 1, 2, report=True, sharex=True)
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
    fig, (ax,) = new_figure(6.5, 4.0, report=True)
    _angle_bars(ax, a, 95, "θ_i")
    for i, v in enumerate(a):
        ax.annotate(
            f"{v:.0f}°", xy=(i, v), xytext=(0, 2), textcoords="offset points", ha="center", fontsize=8
        )
    ax.axhline(90, color="0.5", linestyle=":", linewidth=1)
    ax.set_title(f"early vs late rank-{t.rank} subspaces (overlap {t.overlap:.2f})")
    return to_png(fig)


def drift_figure(t: TrajectoryAnalysis) -> str:
    """Heatmap of the overlap of every pair of windows' top-r subspaces."""
    m = np.asarray(t.drift, dtype=float)
    labels = [w.label.split(":")[1] for w in t.windows]
    unit = t.windows[0].kind
    size = 2.8 + 0.34 * m.shape[0]
    fig, (ax,) = new_figure(size + 1.6, size, report=True)
    _drift_heatmap(ax, m, labels, unit, "overlap ‖U_i U_jᵀ‖²_F / r (0 = orthogonal, 1 = same)", fontsize=7)
    ax.set_title(f"subspace drift between windows (rank {t.drift_rank})")
    return to_png(fig)


def captured_figure(t: TrajectoryAnalysis) -> str:
    """Share of each step's gradient energy inside the early (and late) subspace, with per-epoch means."""
    fig, (ax,) = new_figure(11.5, 4.2, report=True)
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
