"""`gradflow report`: the trajectory report of a store or run folder, as one self-contained HTML file.

    write_trajectory_report(store_or_run, "report.html")  # what `gradflow report STORE_OR_RUN` does

Sections: a summary that quotes the numbers, the spectrum of the early and late windows and the effective
rank over time, principal angles between the early and late subspaces and the window-by-window drift, and
the share of each step's gradient captured by the early subspace. Whatever the store lacks (no gradients,
a damaged chunk) is named in a visible "Missing" note in the sections it affects. `subpt report` shows the
same sections for each run, with these functions.
"""

from __future__ import annotations

import datetime as _dt
import sys
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gradflow import html as H
from gradflow import plots
from gradflow.analysis import TrajectoryAnalysis, TrajectoryOptions, analyse_trajectory
from gradflow.errors import GradflowError
from gradflow.html import Sentence
from gradflow.salvage import open_store
from gradflow.trajectory import TrajectoryStore, resolve

TRAJECTORY_SECTIONS = [
    ("spectrum", "Gradient spectrum and effective rank"),
    ("angles", "Early vs late subspaces: principal angles and drift"),
    ("captured", "Gradient captured by the early subspace"),
]


def logger(progress: bool) -> Callable[[str], None]:
    """A function printing `[report] message` lines on stderr (or nothing)."""

    def log(msg: str) -> None:
        if progress:
            print(f"[report] {msg}", file=sys.stderr, flush=True)

    return log


def warn_skipped(skipped: list[str], out: Path) -> None:
    """One warning line on stderr naming what a report skipped because it was damaged (nothing when nothing was)."""
    if skipped:
        text = " ".join("; ".join(skipped).split())
        print(f"warning: {out} was written without {len(skipped)} damaged part(s), named in its notes: {text}",
              file=sys.stderr, flush=True)


def analyse(store: TrajectoryStore | None, path: Path, opts: TrajectoryOptions, notes: list[str],
            log: Callable[[str], None]) -> TrajectoryAnalysis:
    """The gradient-flow analysis of one store with the report's window and rank options."""
    return analyse_trajectory(
        store,
        str(path),
        source=opts.source,
        rank=opts.rank,
        early=opts.early,
        late=opts.late,
        early_window=opts.early_window,
        late_window=opts.late_window,
        window=opts.window,
        open_notes=notes,
        log=log,
    )


def trajectory_notes(t: TrajectoryAnalysis | None, section: str) -> list[str]:
    """What a trajectory section cannot show, and why: the store's notes, then the section's own."""
    if t is None:
        return []
    out = list(t.notes.get("trajectory", [])) if section in ("spectrum", "angles", "captured") else []
    return out + t.notes.get(section, [])


def trajectory_sentences(t: dict, key: str, label: str) -> list[Sentence]:
    """Sentences on the spectra, angles, drift and captured energy (`t` is TrajectoryAnalysis.to_json())."""
    out = []
    what = "gradient" if t.get("source") == "grads" else "ctx-snapshot"
    e, lt, r = t.get("early"), t.get("late"), t.get("rank")
    if e and lt and r:
        s = Sentence().t(label).t("the top ").n(f"{key}.rank", r, "{:d}").t(" directions hold ")
        s.frac(f"{key}.early.energy_at_rank", e["energy_at_rank"]).t(
            f" of the {what} energy of the early window ("
        )
        s.n(f"{key}.early.window", e["window"]).t(") and ").frac(
            f"{key}.late.energy_at_rank", lt["energy_at_rank"]
        )
        s.t(" of the late window (").n(f"{key}.late.window", lt["window"]).t(
            "); the single top direction holds "
        )
        s.frac(f"{key}.early.top1_energy", e["top1_energy"]).t(" early and ")
        s.frac(f"{key}.late.top1_energy", lt["top1_energy"]).t(" late.")
        out.append(s)
    ws = t.get("windows") or []
    if len(ws) >= 2:
        a, b = ws[0]["effective_rank"], ws[-1]["effective_rank"]
        s = Sentence().t(label).t("the effective rank of the ").t(what).t(" windows went from ")
        s.n(f"{key}.windows.0.effective_rank", a, "{:.2f}").t(" (").n(
            f"{key}.windows.0.window", ws[0]["window"]
        ).t(") to ")
        s.n(f"{key}.windows.{len(ws) - 1}.effective_rank", b, "{:.2f}").t(" (")
        s.n(f"{key}.windows.{len(ws) - 1}.window", ws[-1]["window"]).t(")")
        if abs(b - a) >= 0.05 * max(a, b):
            s.t(": the updates became ").t("more concentrated" if b < a else "more spread out").t(
                " over training"
            )
        out.append(s.t("."))
    ang = t.get("principal_angles_deg")
    if ang:
        srt = sorted(ang)
        med = srt[len(srt) // 2] if len(srt) % 2 else 0.5 * (srt[len(srt) // 2 - 1] + srt[len(srt) // 2])
        t["angles_median_deg"] = med
        s = (
            Sentence()
            .t(label)
            .t("the principal angles between the early and late rank-")
            .n(f"{key}.rank", r, "{:d}")
        )
        lo, hi = ang.index(srt[0]), ang.index(srt[-1])
        s.t(" subspaces range from ").n(f"{key}.principal_angles_deg.{lo}", ang[lo], "{:.1f}", "°").t(" to ")
        s.n(f"{key}.principal_angles_deg.{hi}", ang[hi], "{:.1f}", "°").t(" (median ")
        s.n(f"{key}.angles_median_deg", med, "{:.1f}", "°").t("); their projection overlap is ")
        s.n(f"{key}.overlap", t["overlap"], "{:.2f}").t(" (0 = orthogonal, 1 = the same subspace).")
        out.append(s)
    m = t.get("drift")
    if m and len(m) >= 2:
        n = len(m)
        adj = sum(m[i][i + 1] for i in range(n - 1)) / (n - 1)
        t["drift_adjacent_mean"] = adj
        s = (
            Sentence()
            .t(label)
            .t("consecutive windows overlap ")
            .n(f"{key}.drift_adjacent_mean", adj, "{:.2f}")
        )
        s.t(" on average, the first and last windows ").n(f"{key}.drift.0.{n - 1}", m[0][n - 1], "{:.2f}")
        out.append(s.t(" (drift heatmap)."))
    ce, cl, cll = (
        t.get("captured_early_in_early"),
        t.get("captured_early_in_late"),
        t.get("captured_late_in_late"),
    )
    if ce is not None and cl is not None:
        s = Sentence().t(label).t("the early subspace captures on average ")
        s.frac(f"{key}.captured_early_in_early", ce).t(
            " of each step's gradient energy in the early window (where it was fit) and "
        )
        s.frac(f"{key}.captured_early_in_late", cl).t(" in the late window")
        if cll is not None:
            s.t(", where the late subspace captures ").frac(f"{key}.captured_late_in_late", cll)
        if cl < ce:
            s.t(": late gradients point increasingly outside the early subspace")
        out.append(s.t("."))
    return out


def trajectory_section(t: TrajectoryAnalysis | None, name: str, section: str, notes: list[str], multi: bool) -> str:
    """The HTML of one trajectory section ('spectrum', 'angles' or 'captured') of one run: notes, then figures."""
    parts = [f"<h3>{H.esc(name)}</h3>"] if multi else []
    parts.append(H.missing_html(section, name, notes))
    if t is None:
        return "\n".join(parts)
    what = (
        "per-step gradients"
        if t.source == "grads"
        else "ctx snapshots (centred)"
        if t.centered
        else "ctx snapshots"
    )
    if section == "spectrum":
        if t.early is not None and t.late is not None:
            parts.append(
                H.figure_html(
                    plots.spectrum_figure(t),
                    f"spectrum of the early and late windows of {name}",
                    f"Source: {what} of {t.path}. Left: share of each window's energy in component i (SVD of the stacked, "
                    f"flattened rows). Right: cumulative energy; r = {t.rank} is the rank used for the subspaces.",
                    "spectrum",
                )
            )
        if len(t.windows) >= 2:
            parts.append(
                H.figure_html(
                    plots.rank_figure(t),
                    f"effective rank over time of {name}",
                    "Effective rank (entropy of the normalised energies, exponentiated) and participation ratio of each "
                    "window, and the energy held by its leading directions; shaded: early and late windows.",
                    "rank",
                )
            )
    elif section == "angles":
        if t.angles_deg is not None:
            parts.append(
                H.figure_html(
                    plots.angles_figure(t),
                    f"principal angles of {name}",
                    f"Principal angles between the top-{t.rank} subspaces of the early ({t.early.label}) and late "
                    f"({t.late.label}) windows: 0° = shared direction, 90° = orthogonal.",
                    "angles",
                )
            )
        if t.drift is not None:
            parts.append(
                H.figure_html(
                    plots.drift_figure(t),
                    f"subspace drift of {name}",
                    f"Overlap of the rank-{t.drift_rank} subspaces of every pair of windows ({what}).",
                    "drift",
                )
            )
    elif section == "captured":
        if t.captured_early is not None:
            parts.append(
                H.figure_html(
                    plots.captured_figure(t),
                    f"captured gradient energy of {name}",
                    f"‖U g‖² / ‖g‖² for each recorded step g, with U the rank-{t.rank} basis of the early window "
                    f"({t.early.label}, blue) and of the late window ({t.late.label}, red).",
                    "captured",
                )
            )
    return "\n".join(parts)


def write_trajectory_report(path: str | Path, out: str | Path, **options: Any) -> Path:
    """Write the trajectory-only report (spectra, ranks, angles, drift, captured energy) of a store or run folder."""
    opts = TrajectoryOptions.from_kwargs(options)
    p = Path(path)
    if not p.exists():
        raise GradflowError(f"{p} does not exist: pass a trajectory store folder or a run folder")
    log = logger(opts.progress)
    resolve(p)  # a path that holds no store at all is an error; a damaged store is reported on
    with ExitStack() as stack:
        store, notes = open_store(p, stack)
        t = analyse(store, p, opts, notes, log)
        text = _render(p, t, opts.title or f"Gradient-flow report: {p.name}", opts, log)
    out = H.write_html(text, Path(out))
    log(f"wrote {out}")
    warn_skipped(notes, out)
    return out


def _render(p: Path, t: TrajectoryAnalysis, title: str, opts: TrajectoryOptions, log: Callable[[str], None]) -> str:
    name = p.name
    tj = t.to_json()
    notes = {s: trajectory_notes(t, s) for s, _ in TRAJECTORY_SECTIONS if trajectory_notes(t, s)}
    sentences = trajectory_sentences(tj, "runs.0.trajectory", "")
    summary = (H.summary_list(sentences) if sentences
               else H.missing_html("summary", name, ["no numbers to summarise: see the notes below"]))
    generated = _dt.datetime.now().isoformat(timespec="seconds")
    data = {
        "title": title,
        "generated": generated,
        "options": asdict(opts),
        "runs": [{"name": name, "path": str(p), "trajectory": tj, "notes": notes}],
        "summary": H.summary_json(sentences),
    }
    log("rendering figures")
    sections = {"summary": summary}
    for sec, _ in TRAJECTORY_SECTIONS:
        sections[sec] = trajectory_section(t, name, sec, trajectory_notes(t, sec), multi=False)
    meta = f"1 run: {H.esc(p)}. {opts.describe()} Generated {generated}."
    return H.page(title, meta, sections, H.clean(data), [("summary", "Summary"), *TRAJECTORY_SECTIONS])
