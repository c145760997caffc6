"""Seaborn figures for spectra, principal angles, captured energy and drift.

Figures are built on matplotlib's object API with the Agg canvas (no pyplot, no window, no global
backend switch), written to a file and released; every function returns the path written.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gradflow.errors import GradflowError
from gradflow.spectrum import Spectrum


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, list]:
    """A new Agg-backed figure with ``ncols`` axes in seaborn's whitegrid style."""
    with sns.axes_style("whitegrid"):
        fig = Figure(figsize=(width, height), layout="constrained")
        FigureCanvasAgg(fig)
        axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


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
    sns.barplot(x=np.arange(1, a.size + 1), y=a, ax=ax, color="C0")
    ax.set_ylim(0, 90)
    ax.set_xlabel("principal angle index i (ascending)")
    ax.set_ylabel("angle theta_i (degrees)")
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
    annot = m.shape[0] <= 12
    sns.heatmap(
        m,
        vmin=0,
        vmax=1,
        cmap="viridis",
        annot=annot,
        fmt=".2f",
        square=True,
        xticklabels=list(labels),
        yticklabels=list(labels),
        ax=ax,
        cbar_kws={"label": "overlap ||U_i U_j^T||_F^2 / r (unitless)"},
    )
    ax.set_xlabel("window (steps)")
    ax.set_ylabel("window (steps)")
    ax.set_title(title or "subspace drift between windows")
    return _save(fig, path)
