"""Analysis of one trajectory over time: spectra of windows, ranks, angles, drift and captured energy.

It knows only the store and its tensors (no model, no prompts): `gradflow report` shows it for a bare store,
and `subpt report` for each run's trajectory. Every SVD, angle and overlap comes from gradflow's own functions.
A damaged store is opened with gradflow.salvage.open_store, which names what it left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from gradflow.errors import GradflowError
from gradflow.spectrum import Spectrum, compute_spectrum
from gradflow.subspace import captured_energy, overlap, principal_angles
from gradflow.trajectory import STREAMS, TrajectoryStore
from gradflow.windows import parse_window, resolve_window

DEFAULT_FRACTION = 0.3
DEFAULT_RANK = 10
TARGET_WINDOWS = 10  # windows of the effective-rank and drift panels
MIN_WINDOW_ROWS = 4
SOURCES = ("auto", "grads", "snapshots")


@dataclass
class TrajectoryOptions:
    """Settings of the trajectory analysis of a report (the keyword arguments of `write_trajectory_report`)."""

    error: ClassVar[type[Exception]] = GradflowError  # raised for an unknown or impossible setting

    rank: int = 10  # rank of the early/late subspaces (capped by the rows of the windows)
    early: float = 0.3  # early window: the first 30% of epochs
    late: float = 0.3  # late window: the last 30% of epochs
    early_window: str | None = None  # or an explicit gradflow window, e.g. "epochs:1-10"
    late_window: str | None = None
    # epochs per window of the rank-over-time and drift panels (default: about ten windows)
    window: int | None = None
    source: str = "auto"  # trajectory stream: auto (grads when recorded), grads or snapshots
    title: str | None = None
    progress: bool = True

    def checks(self) -> list[tuple[bool, str]]:
        """(condition, message) of every setting; a false condition is refused with its message."""
        return [
            (self.rank >= 1, f"--rank must be at least 1, got {self.rank}"),
            (0 < self.early <= 1, f"--early must be a fraction in (0, 1], got {self.early}"),
            (0 < self.late <= 1, f"--late must be a fraction in (0, 1], got {self.late}"),
            (self.window is None or self.window >= 1, f"--window must be at least 1 epoch, got {self.window}"),
            (self.source in SOURCES, f"--source must be one of {', '.join(SOURCES)}, got {self.source!r}"),
        ]

    @classmethod
    def from_kwargs(cls, options: dict[str, Any]) -> TrajectoryOptions:
        """Build and validate; unknown or impossible settings are one-line errors of `cls.error`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise cls.error(f"unknown report option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        o = cls(**options)
        for ok, msg in o.checks():
            if not ok:
                raise cls.error(msg)
        for w in (o.early_window, o.late_window):
            if w is not None:
                parse_window(w)  # GradflowError with the accepted syntax
        return o

    def describe(self) -> str:
        """The windows and rank of the analysis, for the page's header."""
        return (f"Early/late windows: first {self.early:.0%} / last {self.late:.0%} of epochs unless set; subspace "
                f"rank {self.rank} (capped by the rows of a window).")


@dataclass
class WindowStats:
    """The spectrum of one window of the trajectory and the numbers the report quotes from it."""

    label: str  # e.g. "epochs:1-6"
    kind: str  # "epochs" or "steps"
    lo: int
    hi: int
    n_rows: int
    spectrum: Spectrum

    @property
    def effective_rank(self) -> float:
        """Entropy effective rank of the window's spectrum."""
        return float(self.spectrum.effective_rank_entropy)

    @property
    def participation_ratio(self) -> float:
        """Participation ratio of the window's spectrum."""
        return float(self.spectrum.participation_ratio)

    def energy_at(self, r: int) -> float:
        """Share of the window's energy in its top r directions (0..1)."""
        cum = self.spectrum.cumulative_energy
        return float(cum[min(r, cum.size) - 1]) if cum.size else float("nan")


@dataclass
class TrajectoryAnalysis:
    """Everything the trajectory sections of the report show, plus the notes on what is missing."""

    path: str
    source: str | None = None
    centered: bool = False
    dim: int = 0
    rank: int = 0
    early: WindowStats | None = None
    late: WindowStats | None = None
    angles_deg: np.ndarray | None = None
    overlap: float | None = None
    windows: list[WindowStats] = field(default_factory=list)
    drift: np.ndarray | None = None
    drift_rank: int = 0
    captured_steps: np.ndarray | None = None
    captured_epochs: np.ndarray | None = None
    captured_early: np.ndarray | None = None
    captured_late: np.ndarray | None = None
    notes: dict[str, list[str]] = field(default_factory=dict)

    def note(self, section: str, message: str) -> None:
        """Record what a section could not show, and why."""
        self.notes.setdefault(section, []).append(message)

    def captured_mean(self, which: str, window: WindowStats | None) -> float | None:
        """Mean share (0..1) of the gradient energy captured by the `which` basis over the steps of `window`."""
        fr = self.captured_early if which == "early" else self.captured_late
        if fr is None or window is None or self.captured_steps is None:
            return None
        key = self.captured_epochs if window.kind == "epochs" else self.captured_steps
        sel = (key >= window.lo) & (key <= window.hi) & np.isfinite(fr)
        return float(np.mean(fr[sel])) if sel.any() else None

    def to_json(self) -> dict:
        """The numbers of this analysis as plain JSON values (what the report embeds)."""

        def win(w: WindowStats | None) -> dict | None:
            if w is None:
                return None
            s = w.spectrum
            return {
                "window": w.label,
                "kind": w.kind,
                "lo": w.lo,
                "hi": w.hi,
                "rows": w.n_rows,
                "effective_rank": w.effective_rank,
                "participation_ratio": w.participation_ratio,
                "top1_energy": w.energy_at(1),
                "energy_at_rank": w.energy_at(self.rank) if self.rank else None,
                "explained_variance_ratio": [float(v) for v in s.explained_variance_ratio[:50]],
            }

        out = {
            "path": self.path,
            "source": self.source,
            "centered": self.centered,
            "dim": self.dim,
            "rank": self.rank,
            "early": win(self.early),
            "late": win(self.late),
            "principal_angles_deg": None if self.angles_deg is None else [float(a) for a in self.angles_deg],
            "overlap": self.overlap,
            "windows": [win(w) for w in self.windows],
            "drift": None if self.drift is None else self.drift.tolist(),
            "drift_rank": self.drift_rank,
            "captured_early_in_early": self.captured_mean("early", self.early),
            "captured_early_in_late": self.captured_mean("early", self.late),
            "captured_late_in_late": self.captured_mean("late", self.late),
            "notes": self.notes,
        }
        return out


# ---------------------------------------------------------------------------------------------- windows
def _distinct(store: TrajectoryStore, source: str) -> tuple[str, np.ndarray]:
    """The unit of the windows ('epochs' when the stream spans at least two epochs) and its distinct values."""
    sc = store.scalars(source)
    epochs = np.unique(sc["epoch"])
    if source == "snapshots":
        epochs = epochs[epochs >= 1]  # epoch 0 is the initialisation, not a training epoch
    if epochs.size >= 2:
        return "epochs", epochs
    return "steps", np.unique(sc["step"])


def fraction_windows(values: np.ndarray, kind: str, early: float, late: float) -> tuple[str, str]:
    """Window strings of the first `early` and last `late` share of the distinct values (at least one each)."""
    n = values.size
    ne = max(1, math.ceil(early * n - 1e-9))
    nl = max(1, math.ceil(late * n - 1e-9))
    return f"{kind}:{values[0]}-{values[ne - 1]}", f"{kind}:{values[n - nl]}-{values[-1]}"


def _window_stats(
    store: TrajectoryStore, window: str, source: str, center: bool, k: int | None = None
) -> WindowStats:
    win = resolve_window(window, store, source)
    kw = win.as_kwargs()
    spec = compute_spectrum(lambda: store.iter_chunks(source, **kw), center=center, k=k)
    return WindowStats(str(win), win.kind, win.lo, win.hi, spec.n_rows, spec)


def _cap_rank(rank: int, stats: list[WindowStats], dim: int, centered: bool) -> int:
    """The rank all of `stats` support: at most their rows (minus one when centred), the dim and their k."""
    caps = [w.n_rows - (1 if centered else 0) for w in stats] + [w.spectrum.k for w in stats] + [dim, rank]
    return int(min(caps))


def window_grid(values: np.ndarray, kind: str, rows_per_value: float, window: int | None) -> list[str]:
    """Consecutive non-overlapping windows over the distinct values, about TARGET_WINDOWS of them."""
    n = values.size
    if window is None:
        window = max(math.ceil(n / TARGET_WINDOWS), math.ceil(MIN_WINDOW_ROWS / max(rows_per_value, 1e-9)))
    window = max(1, int(window))
    out = []
    for i in range(0, n, window):
        chunk = values[i : i + window]
        if chunk.size < window and out:  # a short tail joins the previous window
            lo = out[-1].split(":")[1].split("-")[0]
            out[-1] = f"{kind}:{lo}-{chunk[-1]}"
        else:
            out.append(f"{kind}:{chunk[0]}-{chunk[-1]}")
    return out


# ---------------------------------------------------------------------------------------------- analysis
def analyse_trajectory(
    store: TrajectoryStore | None,
    path: str,
    *,
    source: str = "auto",
    rank: int = DEFAULT_RANK,
    early: float = DEFAULT_FRACTION,
    late: float = DEFAULT_FRACTION,
    early_window: str | None = None,
    late_window: str | None = None,
    window: int | None = None,
    center: bool | None = None,
    open_notes: list[str] | None = None,
    log=None,
) -> TrajectoryAnalysis:
    """Spectra of the early and late windows, ranks over time, angles, drift and captured energy.

    `source` 'auto' uses per-step gradients when recorded, ctx snapshots otherwise (centred, as the
    reference recipe builds its basis). `window` is the width, in epochs (or steps), of the windows of
    the rank-over-time and drift panels (default: about ten windows).
    """
    out = TrajectoryAnalysis(path=str(path))
    for n in open_notes or []:
        out.note("trajectory", n)
    if store is None:
        for sec in ("spectrum", "angles", "captured"):
            out.note(
                sec,
                "no readable trajectory: record one with `subpt train --record` (gradients) to see this section",
            )
        return out
    if source not in SOURCES:
        raise GradflowError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    rows = {s: store.num_rows(s) for s in STREAMS}
    if source == "auto":
        source = "grads" if rows["grads"] else "snapshots"
        if source == "snapshots":
            out.note(
                "spectrum",
                f"{store.path} has no per-step gradients (run not recorded with --record): the spectra below use "
                "the per-epoch ctx snapshots, centred, instead of gradients",
            )
    if rows.get(source, 0) == 0:
        for sec in ("spectrum", "angles", "captured"):
            out.note(
                sec,
                f"the '{source}' stream of {store.path} holds no rows: record it with `subpt train --record`",
            )
        return out
    out.source = source
    out.dim = store.dim
    out.centered = (source == "snapshots") if center is None else bool(center)
    if source != "grads":
        out.note("captured", "needs per-step gradients: rerun the training with --record to see this section")

    kind, values = _distinct(store, source)
    if values.size < 2:
        for sec in ("spectrum", "angles", "captured"):
            out.note(sec, f"the '{source}' stream has a single {kind[:-1]}: nothing to compare over time")
        return out
    ew, lw = fraction_windows(values, kind, early, late)
    ew, lw = early_window or ew, late_window or lw
    if log:
        log(f"trajectory {store.path}: {source}, early {ew}, late {lw}")
    for which, given, text in (("early", early_window, ew), ("late", late_window, lw)):
        try:
            setattr(out, which, _window_stats(store, text, source, out.centered))
        except GradflowError as e:
            if given:  # the user's own window is impossible for this run: an error, not a note
                raise GradflowError(f"--{which}-window {given}: {e}") from None
            out.note("spectrum", f"{which} spectrum: {e}")
            out.note("angles", f"{which} spectrum: {e}")
            break
    if out.early is not None and out.late is not None:
        r = _cap_rank(rank, [out.early, out.late], store.dim, out.centered)
        if r < 1:
            out.note(
                "angles",
                f"the windows have too few rows for a subspace ({out.early.n_rows}, {out.late.n_rows})",
            )
        else:
            if r < rank:
                out.note("angles", f"rank {rank} capped at {r} by the rows of the early and late windows")
            out.rank = r
            ue = out.early.spectrum.components[:r]
            ul = out.late.spectrum.components[:r]
            out.angles_deg = principal_angles(ue, ul, degrees=True)
            out.overlap = overlap(ue, ul)
            if source == "grads":
                _captured(out, store, ue, ul)

    # rank over time and window-by-window drift
    n_rows = int(store.scalars(source)["step"].size)
    grid = window_grid(values, kind, n_rows / values.size, window)
    if len(grid) < 2:
        out.note("spectrum", "the run is too short for more than one window of the rank-over-time panel")
    stats: list[WindowStats] = []
    for w in grid:
        try:
            stats.append(_window_stats(store, w, source, out.centered))
        except GradflowError as e:
            out.note("spectrum", f"window {w}: {e}")
    out.windows = stats
    if len(stats) >= 2:
        dr = _cap_rank(rank, stats, store.dim, out.centered)
        if dr >= 1:
            out.drift_rank = dr
            bases = [w.spectrum.components[:dr] for w in stats]
            m = np.ones((len(bases), len(bases)))
            for i in range(len(bases)):
                for j in range(i + 1, len(bases)):
                    m[i, j] = m[j, i] = overlap(bases[i], bases[j])
            out.drift = m
        else:
            out.note(
                "angles",
                "the drift windows have too few rows for a subspace: use fewer, wider windows (--window)",
            )
    return out


def _captured(out: TrajectoryAnalysis, store: TrajectoryStore, ue: np.ndarray, ul: np.ndarray) -> None:
    sc = store.scalars("grads")
    out.captured_steps = sc["step"]
    out.captured_epochs = sc["epoch"]
    out.captured_early = captured_energy(ue, store.iter_chunks("grads"))
    out.captured_late = captured_energy(ul, store.iter_chunks("grads"))
