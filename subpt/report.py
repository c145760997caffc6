"""The interpretability report: one self-contained HTML file about one or more runs (or a bare trajectory).

    write_report([run_a, run_b], "report.html")        # what `subpt report RUN [RUN ...]` does
    write_trajectory_report(store_or_run, "report.html")  # what `gradflow report STORE_OR_RUN` does

Sections: accuracy per epoch against zero-shot (peak base and the epoch novel falls below zero-shot marked),
the spectrum of the early and late windows and the effective rank over time, principal angles between the
early and late subspaces and the window-by-window drift, the share of each step's gradient captured by the
early subspace, the learned context decoded into its nearest vocabulary tokens, the classes that gain or lose
against zero-shot, and (when the dataset has the cue test splits) the reliance on the spurious cue. A short
summary quotes the numbers; they are embedded as JSON (<script id="report-data">) next to the figures.

Whatever a run lacks (no trajectory, no gradients, a damaged chunk, no metrics, no config, no checkpoints)
is named in a visible "Missing" note in each section it affects; the rest still renders.
"""

from __future__ import annotations

import datetime as _dt
import math
import sys
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from gradflow.atomic import atomic_write_text
from gradflow.errors import GradflowError
from gradflow.trajectory import resolve
from gradflow.windows import parse_window
from subpt import report_figs as figs
from subpt import report_html as H
from subpt.errors import SubptError
from subpt.evaluate import harmonic_mean
from subpt.report_data import (
    RunData,
    Sentence,
    accuracy_sentences,
    accuracy_summary,
    class_sentences,
    comparison_sentences,
    context_sentences,
    load_run,
    run_names,
    trajectory_sentences,
)
from subpt.report_model import (
    METRICS,
    Backbones,
    ClassAnalysis,
    analyse_classes,
    context_at,
    decode_context,
    saved_epochs,
)
from subpt.report_traj import SOURCES, TrajectoryAnalysis, analyse_trajectory, open_store

MAX_CSC_CLASSES = 4
# Errors that make one section of one run unavailable (named in its "missing" note) instead of failing the report.
SECTION_ERRORS = (SubptError, GradflowError, OSError, RuntimeError)


@dataclass
class ReportOptions:
    """Settings of a report (the keyword arguments of `write_report`)."""

    rank: int = 10  # rank of the early/late subspaces (capped by the rows of the windows)
    early: float = 0.3  # early window: the first 30% of epochs
    late: float = 0.3  # late window: the last 30% of epochs
    early_window: str | None = None  # or an explicit gradflow window, e.g. "epochs:1-10"
    late_window: str | None = None
    # epochs per window of the rank-over-time and drift panels (default: about ten windows)
    window: int | None = None
    source: str = "auto"  # trajectory stream: auto (grads when recorded), grads or snapshots
    decode_epochs: list[int] | None = None  # default: first, peak-base and last epoch
    topk: int = 5  # nearest tokens shown per context vector
    metric: str = "cosine"  # or "euclidean"
    model: bool = True  # compute the model-dependent sections (decoded context, classes, cue)
    device: str = "cpu"
    max_classes: int = 24  # classes shown per group in the gains/losses figure
    title: str | None = None
    progress: bool = True

    @classmethod
    def from_kwargs(cls, options: dict[str, Any]) -> ReportOptions:
        """Build and validate; unknown or impossible settings are one-line SubptErrors."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise SubptError(
                f"unknown report option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        o = cls(**options)
        checks = [
            (o.rank >= 1, f"--rank must be at least 1, got {o.rank}"),
            (0 < o.early <= 1, f"--early must be a fraction in (0, 1], got {o.early}"),
            (0 < o.late <= 1, f"--late must be a fraction in (0, 1], got {o.late}"),
            (o.window is None or o.window >= 1, f"--window must be at least 1 epoch, got {o.window}"),
            (o.source in SOURCES, f"--source must be one of {', '.join(SOURCES)}, got {o.source!r}"),
            (o.topk >= 1, f"--topk must be at least 1, got {o.topk}"),
            (o.metric in METRICS, f"--metric must be one of {', '.join(METRICS)}, got {o.metric!r}"),
            (o.max_classes >= 2, f"--max-classes must be at least 2, got {o.max_classes}"),
            (
                not o.decode_epochs or min(o.decode_epochs) >= 0,
                "--epochs must be non-negative (0 = initialisation)",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise SubptError(msg)
        for w in (o.early_window, o.late_window):
            if w is not None:
                parse_window(w)  # GradflowError with the accepted syntax
        return o


@dataclass
class RunReport:
    """Everything computed for one run."""

    run: RunData
    accuracy: dict | None = None
    trajectory: TrajectoryAnalysis | None = None
    context: list[dict] = field(default_factory=list)
    context_shape: list[int] | None = None
    classes: ClassAnalysis | None = None
    notes: dict[str, list[str]] = field(default_factory=dict)

    def note(self, section: str, message: str) -> None:
        """Record what a section could not show, and why."""
        self.notes.setdefault(section, []).append(message)

    def notes_for(self, section: str) -> list[str]:
        """Every note that concerns `section` (from the run folder, the trajectory and the model)."""
        out = list(self.run.notes.get(section, []))
        if self.trajectory is not None:
            if section in ("spectrum", "angles", "captured"):
                out += self.trajectory.notes.get("trajectory", [])
            out += self.trajectory.notes.get(section, [])
        if section in ("context", "classes", "cue"):
            out += self.run.notes.get("config", [])
        return out + self.notes.get(section, [])


def _logger(progress: bool) -> Callable[[str], None]:
    def log(msg: str) -> None:
        if progress:
            print(f"[report] {msg}", file=sys.stderr, flush=True)

    return log


# ---------------------------------------------------------------------------------------------- computing
def _analyse_run(run: RunData, opts: ReportOptions, backbones: Backbones, stack: ExitStack, log) -> RunReport:
    rep = RunReport(run=run)
    p = run.path
    if not run.has_trajectory:
        store, open_notes = (
            None,
            [f"{p / 'trajectory'} is missing: train with `subpt train --record` to record gradients"],
        )
    else:
        store, open_notes = open_store(p, stack)
    log(f"{run.name}: trajectory analysis")
    rep.trajectory = _trajectory(store, p, opts, open_notes, log)
    acc = accuracy_summary(run)
    if opts.model and run.config is not None:
        _model_sections(rep, store, acc, opts, backbones, log)
    elif not opts.model:
        for sec in ("context", "classes", "cue"):
            rep.note(
                sec, "left out on request (model-dependent sections off: drop --no-model to compute them)"
            )
    if run.zeroshot is None and rep.classes is not None and run.metrics:
        by = {g.group: g.zero_shot_acc for g in rep.classes.groups}
        run.zeroshot = {"base_acc": by.get("base", by.get("all")), "novel_acc": by.get("novel", float("nan"))}
        run.zeroshot["hm"] = harmonic_mean(run.zeroshot["base_acc"], run.zeroshot["novel_acc"])
        rep.note(
            "accuracy",
            "zero-shot lines recomputed by this report with the dataset template (zeroshot.json missing)",
        )
    rep.accuracy = accuracy_summary(run)
    return rep


def _default_epochs(acc: dict | None, have: list[int]) -> list[tuple[int, str]]:
    trained = [e for e in have if e >= 1]
    if not trained:
        return []
    picks = [
        (trained[0], "first"),
        (acc["base_peak_epoch"], "peak base") if acc else None,
        (trained[-1], "last"),
    ]
    out: list[tuple[int, str]] = []
    for pick in picks:
        if pick is None:
            continue
        e, role = pick
        for i, (e2, r2) in enumerate(out):
            if e2 == e:
                out[i] = (e2, f"{r2}, {role}")
                break
        else:
            out.append((e, role))
    return out


def _model_sections(
    rep: RunReport, store, acc: dict | None, opts: ReportOptions, backbones: Backbones, log
) -> None:
    run, cfg = rep.run, rep.run.config
    try:
        log(f"{run.name}: loading {cfg.model} ({cfg.pretrained})")
        backbone = backbones.get(cfg)
    except SECTION_ERRORS as e:
        for sec in ("context", "classes", "cue"):
            rep.note(sec, f"the model of {run.path / 'config.json'} could not be loaded: {e}")
        return
    if cfg.pretrained == "random":
        for sec in ("context", "classes", "cue"):
            rep.note(
                sec,
                "the run's model has random weights (--pretrained random), drawn anew on every load: this section "
                "describes the model loaded now, which may differ from the one trained",
            )
    have = saved_epochs(run.path, store)
    if opts.decode_epochs:
        chosen = [(e, "chosen") for e in opts.decode_epochs]
    else:
        chosen = _default_epochs(acc, have)
    if not chosen:
        rep.note(
            "context",
            f"{run.path / 'ckpt'} holds no ctx_*.pt and the trajectory no snapshot: nothing to decode",
        )
    for e, role in chosen:
        try:
            ctx, src = context_at(run.path, e, store)
        except SECTION_ERRORS as err:
            rep.note("context", f"epoch {e}: {err}")
            continue
        rep.context_shape = list(ctx.shape)
        if ctx.dim() == 3:
            if len(rep.context) == 0:
                rep.note(
                    "context",
                    f"class-specific context: showing the first {MAX_CSC_CLASSES} of {ctx.shape[0]} classes",
                )
            ctx = ctx[:MAX_CSC_CLASSES]
        dec = decode_context(backbone, ctx, opts.topk, opts.metric)
        top = [pos[0][2] for pos in dec["tokens"]]
        rep.context.append(
            {
                "epoch": e,
                "role": role,
                "source": src,
                "metric": dec["metric"],
                "tokens": dec["tokens"],
                "norms": dec["norms"],
                "norm_mean": float(np.mean(dec["norms"])),
                "token_norm_median": dec["token_norm_median"],
                "nearest_mean": float(np.mean(top)),
            }
        )
    # per-class and cue analysis of the final context
    final = acc["final_epoch"] if acc else (max(have) if have else None)
    if final is None or final < 1:
        for sec in ("classes", "cue"):
            rep.note(sec, "no trained context saved (no checkpoint, no snapshot after epoch 0)")
        return
    try:
        ctx, src = context_at(run.path, final, store)
        log(f"{run.name}: per-class accuracy of epoch {final} vs zero-shot")
        rep.classes = analyse_classes(backbone, cfg, ctx, final, src, progress=False)
    except SECTION_ERRORS as e:
        for sec in ("classes", "cue"):
            rep.note(sec, f"per-class analysis of epoch {final}: {e}")
        return
    for n in rep.classes.notes:
        rep.note("classes", n)
    if rep.classes.cue is None:
        rep.note("cue", f"dataset {cfg.dataset} has no cue test splits (test_cue_flipped / test_cue_fixed)")
    if acc:
        last = next((m for m in reversed(run.metrics) if m["epoch"] == final), {})
        for g in rep.classes.groups:
            k = {"base": "base_acc", "all": "base_acc", "novel": "novel_acc"}[g.group]
            logged = last.get(k)
            if (
                isinstance(logged, (int, float))
                and math.isfinite(logged)
                and abs(logged - g.final_acc) > 0.05
            ):
                rep.note(
                    "classes",
                    f"recomputed {g.group} accuracy {g.final_acc:.2f}% differs from metrics.jsonl "
                    f"({logged:.2f}%) at epoch {final}: were the data or the model changed since training?",
                )


# ---------------------------------------------------------------------------------------------- rendering
def _clean(obj: Any) -> Any:
    """JSON-safe values: numpy to python, non-finite floats to None."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, np.generic):
        return _clean(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _config_json(cfg) -> dict | None:
    if cfg is None:
        return None
    d = asdict(cfg)
    d["method"] = cfg.method
    return d


def _traj_html(rep: RunReport, section: str, multi: bool) -> str:
    t = rep.trajectory
    name = rep.run.name
    parts = [f"<h3>{H.esc(name)}</h3>"] if multi else []
    parts.append(H.missing_html(section, name, rep.notes_for(section)))
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
                    figs.spectrum_figure(t),
                    f"spectrum of the early and late windows of {name}",
                    f"Source: {what} of {t.path}. Left: share of each window's energy in component i (SVD of the stacked, "
                    f"flattened rows). Right: cumulative energy; r = {t.rank} is the rank used for the subspaces.",
                    "spectrum",
                )
            )
        if len(t.windows) >= 2:
            parts.append(
                H.figure_html(
                    figs.rank_figure(t),
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
                    figs.angles_figure(t),
                    f"principal angles of {name}",
                    f"Principal angles between the top-{t.rank} subspaces of the early ({t.early.label}) and late "
                    f"({t.late.label}) windows: 0° = shared direction, 90° = orthogonal.",
                    "angles",
                )
            )
        if t.drift is not None:
            parts.append(
                H.figure_html(
                    figs.drift_figure(t),
                    f"subspace drift of {name}",
                    f"Overlap of the rank-{t.drift_rank} subspaces of every pair of windows ({what}).",
                    "drift",
                )
            )
    elif section == "captured":
        if t.captured_early is not None:
            parts.append(
                H.figure_html(
                    figs.captured_figure(t),
                    f"captured gradient energy of {name}",
                    f"‖U g‖² / ‖g‖² for each recorded step g, with U the rank-{t.rank} basis of the early window "
                    f"({t.early.label}, blue) and of the late window ({t.late.label}, red).",
                    "captured",
                )
            )
    return "\n".join(parts)


def _context_html(rep: RunReport, multi: bool) -> str:
    name = rep.run.name
    parts = [f"<h3>{H.esc(name)}</h3>"] if multi else []
    parts.append(H.missing_html("context", name, rep.notes_for("context")))
    cols = rep.context
    if not cols:
        return "\n".join(parts)
    metric = cols[0]["metric"]
    score = "cosine similarity" if metric == "cosine" else "euclidean distance"
    n_pos = len(cols[0]["tokens"])
    n_ctx = rep.context_shape[-2] if rep.context_shape and len(rep.context_shape) >= 2 else n_pos
    header = ["context vector"] + [f"epoch {c['epoch']} ({c['role']})" for c in cols]
    rows = []
    for i in range(n_pos):
        label = f"{i + 1}" if n_pos == n_ctx else f"class {i // n_ctx + 1}, vector {i % n_ctx + 1}"
        row: list[Any] = [label]
        for c in cols:
            toks = c["tokens"][i]
            cells = "".join(
                f'<span class="tok{" top" if j == 0 else ""}">{H.esc(t)} <small>{s:.2f}</small></span>'
                for j, (t, _, s) in enumerate(toks)
            )
            row.append(("html", cells + f"<br><small>‖ctx‖ = {c['norms'][i]:.3f}</small>"))
        rows.append(row)
    parts.append(H.table_html(header, rows))
    parts.append(
        f'<p class="meta">Nearest rows of the model\'s token embedding to each context vector by {score} '
        f"(shown next to each token; a trailing '-' marks a word piece), decoded with the model's tokenizer. "
        f"Median norm of a token embedding: {cols[0]['token_norm_median']:.3f}. Sources: "
        + H.esc("; ".join(f"epoch {c['epoch']}: {c['source']}" for c in cols))
        + ".</p>"
    )
    return "\n".join(parts)


def _classes_html(rep: RunReport, multi: bool, max_classes: int) -> str:
    name = rep.run.name
    parts = [f"<h3>{H.esc(name)}</h3>"] if multi else []
    parts.append(H.missing_html("classes", name, rep.notes_for("classes")))
    ca = rep.classes
    if ca is None or not ca.groups:
        return "\n".join(parts)
    parts.append(
        H.figure_html(
            figs.classes_figure(ca, max_classes),
            f"per-class accuracy change of {name}",
            f"Accuracy of each test class with the context of epoch {ca.epoch} minus zero-shot CLIP with the dataset "
            f"template “{ca.template}” (labels: zero-shot → context, in %).",
            "classes",
        )
    )
    rows = []
    for g in ca.groups:
        d = [(f - z, i) for i, (f, z) in enumerate(zip(g.final, g.zero_shot)) if math.isfinite(f - z)]
        gains = sorted((x for x in d if x[0] > 0), key=lambda x: (-x[0], x[1]))[:3]
        losses = sorted((x for x in d if x[0] < 0), key=lambda x: (x[0], x[1]))[:3]
        for label, picks in (("largest gain", gains), ("largest loss", losses)):
            for delta, i in picks:
                rows.append(
                    [
                        g.group,
                        label,
                        g.classes[i],
                        H.pct(g.zero_shot[i]),
                        H.pct(g.final[i]),
                        f"{delta:+.1f}",
                        g.counts[i],
                    ]
                )
            if not picks:
                verb = "gained" if label.endswith("gain") else "lost"
                rows.append([g.group, label, f"none: no {g.group} class {verb} accuracy", "", "", "", ""])
    parts.append(
        H.table_html(
            [
                "group",
                "",
                "class",
                "zero-shot (%)",
                f"epoch {ca.epoch} (%)",
                "change (points)",
                "test images",
            ],
            rows,
            numeric={3, 4, 5, 6},
        )
    )
    return "\n".join(parts)


def _cue_html(rep: RunReport, multi: bool) -> str:
    name = rep.run.name
    ca = rep.classes
    parts = [f"<h3>{H.esc(name)}</h3>"] if multi else []
    parts.append(H.missing_html("cue", name, rep.notes_for("cue")))
    if ca is None or not ca.cue:
        return "\n".join(parts)
    parts.append(
        H.figure_html(
            figs.cue_figure(ca),
            f"cue reliance of {name}",
            "Accuracy on the ordinary test images (cue not tied to the class), on images whose background is one "
            "neutral colour (background cue only), and on images drawn with the cue of another class (cue flipped). "
            "A model that reads the class from the cue loses accuracy when the cue is flipped.",
            "cue",
        )
    )
    return "\n".join(parts)


def _runs_table(reps: list[RunReport]) -> str:
    rows = []
    for r in reps:
        c = r.run.config
        if c is None:
            rows.append([r.run.name, str(r.run.path), "n/a", "n/a", "n/a", "n/a", "n/a", "n/a"])
            continue
        model = f"{c.model} ({c.pretrained})"
        rows.append(
            [
                r.run.name,
                str(r.run.path),
                c.method,
                c.dataset,
                model,
                c.shots,
                c.epochs,
                f"{c.n_ctx}{' CSC' if c.csc else ''}" if not c.ctx_init else f"'{c.ctx_init}'",
            ]
        )
    html = H.table_html(["run", "folder", "method", "dataset", "model", "shots", "epochs", "context"], rows)
    for r in reps:
        html += H.missing_html("runs", r.run.name, r.run.notes.get("config", []))
    return html


def _accuracy_html(reps: list[RunReport]) -> str:
    parts = []
    for r in reps:
        parts.append(H.missing_html("accuracy", r.run.name, r.notes_for("accuracy")))
    data = [(r.run.name, r.run.metrics, r.accuracy) for r in reps if r.run.metrics]
    if data:
        parts.append(
            H.figure_html(
                figs.accuracy_figure(data),
                "accuracy per epoch",
                "Test accuracy on base and novel classes, their harmonic mean and training accuracy after each epoch. "
                "Dashed: zero-shot CLIP with the dataset template. Star: peak base accuracy. Dotted: first epoch whose "
                "novel accuracy is below zero-shot.",
                "accuracy",
            )
        )
    rows = []
    for r in reps:
        a = r.accuracy
        if a is None:
            continue
        rows.append([r.run.name, "zero-shot", H.pct(a["zs_base"]), H.pct(a["zs_novel"]), H.pct(a["zs_hm"])])
        peak = next(m for m in r.run.metrics if m["epoch"] == a["base_peak_epoch"])
        rows.append(
            [
                r.run.name,
                f"peak base (epoch {a['base_peak_epoch']})",
                H.pct(peak.get("base_acc")),
                H.pct(peak.get("novel_acc")),
                H.pct(peak.get("hm")),
            ]
        )
        rows.append(
            [
                r.run.name,
                f"final (epoch {a['final_epoch']})",
                H.pct(a["base_final"]),
                H.pct(a["novel_final"]),
                H.pct(a["hm_final"]),
            ]
        )
    if rows:
        parts.append(H.table_html(["run", "", "base (%)", "novel (%)", "HM (%)"], rows, numeric={2, 3, 4}))
    return "\n".join(parts)


def _render(
    reps: list[RunReport], title: str, opts: ReportOptions, log, trajectory_only: bool = False
) -> str:
    multi = len(reps) > 1
    # JSON data first: the sentence builders add the derived values they quote
    runs_json = []
    for r in reps:
        runs_json.append(
            {
                "name": r.run.name,
                "path": str(r.run.path),
                "config": _config_json(r.run.config),
                "zeroshot": r.run.zeroshot,
                "metrics": r.run.metrics,
                "accuracy": r.accuracy,
                "trajectory": r.trajectory.to_json() if r.trajectory is not None else None,
                "context": {"shape": r.context_shape, "columns": r.context},
                "classes": r.classes.to_json() if r.classes is not None else None,
                "notes": {s: r.notes_for(s) for s, _ in H.SECTIONS if r.notes_for(s)},
            }
        )
    per_run: list[list[Sentence]] = []
    for i, rj in enumerate(runs_json):
        ss: list[Sentence] = []
        if rj["accuracy"]:
            ss += accuracy_sentences(rj["accuracy"], f"runs.{i}.accuracy", "")
        if rj["trajectory"]:
            ss += trajectory_sentences(rj["trajectory"], f"runs.{i}.trajectory", "")
        if rj["context"]["columns"]:
            ss += context_sentences(rj["context"], f"runs.{i}.context", "")
        if rj["classes"]:
            ss += class_sentences(rj["classes"], f"runs.{i}.classes", "")
        per_run.append(ss)
    comparison = comparison_sentences([(r.run.name, rj["accuracy"]) for r, rj in zip(reps, runs_json)])
    summary_html = []
    if comparison:
        summary_html.append(
            '<ul class="summary">' + "".join(f"<li>{H.sentence_html(s)}</li>" for s in comparison) + "</ul>"
        )
    for r, ss in zip(reps, per_run):
        if multi:
            summary_html.append(f"<h3>{H.esc(r.run.name)}</h3>")
        if ss:
            summary_html.append(
                '<ul class="summary">' + "".join(f"<li>{H.sentence_html(s)}</li>" for s in ss) + "</ul>"
            )
        else:
            summary_html.append(
                H.missing_html("summary", r.run.name, ["no numbers to summarise: see the notes below"])
            )
    all_sentences = comparison + [s for ss in per_run for s in ss]
    data = {
        "title": title,
        "generated": _dt.datetime.now().isoformat(timespec="seconds"),
        "options": asdict(opts),
        "runs": runs_json,
        "summary": [
            {
                "text": s.plain(),
                "nums": [{"key": n.key, "value": n.value, "text": n.text()} for n in s.nums()],
            }
            for s in all_sentences
        ],
    }
    log("rendering figures")
    sections = {"summary": "\n".join(summary_html)}
    if not trajectory_only:
        sections["runs"] = _runs_table(reps)
        sections["accuracy"] = _accuracy_html(reps)
    for sec in ("spectrum", "angles", "captured"):
        sections[sec] = "\n".join(_traj_html(r, sec, multi) for r in reps)
    if not trajectory_only:
        sections["context"] = "\n".join(_context_html(r, multi) for r in reps)
        sections["classes"] = "\n".join(_classes_html(r, multi, opts.max_classes) for r in reps)
        if any(r.classes is not None and r.classes.cue for r in reps):
            sections["cue"] = "\n".join(_cue_html(r, multi) for r in reps)
    what = ", ".join(H.esc(r.run.path) for r in reps)
    meta = (
        f"{len(reps)} run{'s' if multi else ''}: {what}. Early/late windows: first {opts.early:.0%} / last "
        f"{opts.late:.0%} of epochs unless set; subspace rank {opts.rank} (capped by the rows of a window). "
        f"Generated {data['generated']}."
    )
    return H.page(title, meta, sections, _clean(data))


def _write(text: str, out: Path) -> Path:
    out = Path(out)
    try:
        atomic_write_text(out, text, mkdir=True)
    except OSError as e:
        raise SubptError(f"cannot write the report {out} ({e.strerror or e}): choose another -o path") from e
    return out


# ---------------------------------------------------------------------------------------------- entry points
def _trajectory(store: Any, path: Path, opts: ReportOptions, notes: list[str], log: Any) -> Any:
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


def write_report(run_dirs: Sequence[str | Path], out: str | Path, **options: Any) -> Path:
    """Write the HTML report of one or more run folders to `out`; returns the path written.

    Options: see ReportOptions (rank, early, late, early_window, late_window, window, source, decode_epochs,
    topk, metric, model, device, max_classes, title, progress).
    """
    opts = ReportOptions.from_kwargs(options)
    paths = [Path(p) for p in run_dirs]
    if not paths:
        raise SubptError("no run folder given: pass at least one RUN written by `subpt train --out RUN`")
    log = _logger(opts.progress)
    names = run_names(paths)
    runs = [load_run(p, n) for p, n in zip(paths, names)]  # raises before any work when a path is wrong
    backbones = Backbones(opts.device)
    with ExitStack() as stack:
        reps = [_analyse_run(r, opts, backbones, stack, log) for r in runs]
        title = opts.title or ("Prompt-tuning report: " + ", ".join(r.run.name for r in reps))
        text = _render(reps, title, opts, log)
    out = _write(text, Path(out))
    log(f"wrote {out}")
    return out


def write_trajectory_report(path: str | Path, out: str | Path, **options: Any) -> Path:
    """Write the trajectory-only report (spectra, ranks, angles, drift, captured energy) of a store or run folder."""
    opts = ReportOptions.from_kwargs(options)
    p = Path(path)
    if not p.exists():
        raise GradflowError(f"{p} does not exist: pass a trajectory store folder or a run folder")
    log = _logger(opts.progress)
    run = RunData(path=p, name=p.name)
    resolve(p)  # a path that holds no store at all is an error; a damaged store is reported on
    with ExitStack() as stack:
        store, notes = open_store(p, stack)
        rep = RunReport(run=run)
        rep.trajectory = _trajectory(store, p, opts, notes, log)
        title = opts.title or f"Gradient-flow report: {p.name}"
        text = _render([rep], title, opts, log, trajectory_only=True)
    out = _write(text, Path(out))
    log(f"wrote {out}")
    return out
