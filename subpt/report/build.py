"""The interpretability report: one self-contained HTML file about one or more runs.

    write_report([run_a, run_b], "report.html")        # what `subpt report RUN [RUN ...]` does

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
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from gradflow import html as H
from gradflow.errors import GradflowError
from gradflow.html import Sentence
from gradflow.report import (
    TRAJECTORY_SECTIONS,
    analyse,
    logger,
    trajectory_section,
    trajectory_sentences,
    warn_skipped,
)
from gradflow.salvage import open_store
from subpt.errors import SubptError
from subpt.evaluate import harmonic_mean
from subpt.report.dense import dense_html
from subpt.report.model import (
    Backbones,
    analyse_classes,
    context_at,
    decode_context,
    saved_epochs,
)
from subpt.report.options import ReportOptions
from subpt.report.rundata import RunData, RunReport, accuracy_summary, load_run, run_names
from subpt.report.sections import SECTIONS, accuracy_html, classes_html, context_html, cue_html, runs_table
from subpt.report.sentences import (
    accuracy_sentences,
    class_sentences,
    comparison_sentences,
    context_sentences,
)
from subpt.runs import load_params

MAX_CSC_CLASSES = 4
# Errors that make one section of one run unavailable (named in its "missing" note) instead of failing the report.
SECTION_ERRORS = (SubptError, GradflowError, OSError, RuntimeError)


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
        run.skipped.extend(open_notes)
    log(f"{run.name}: trajectory analysis")
    rep.trajectory = analyse(store, p, opts, open_notes, log)
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
            rep.skip("context", f"epoch {e}: {err}")
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
        saved = load_params(run.path, final)[0] if src.startswith("ckpt/") else None  # CoCoOp's meta-network
        log(f"{run.name}: per-class accuracy of epoch {final} vs zero-shot")
        rep.classes = analyse_classes(backbone, cfg, ctx, final, src, progress=False, extra=saved)
    except SECTION_ERRORS as e:
        rep.run.skipped.append(f"per-class analysis of epoch {final}: {e}")
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
def _config_json(cfg) -> dict | None:
    if cfg is None:
        return None
    d = asdict(cfg)
    d["method"] = cfg.method
    return d


def _render(reps: list[RunReport], title: str, opts: ReportOptions, log: Callable[[str], None]) -> str:
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
                "notes": {s: r.notes_for(s) for s, _ in SECTIONS if r.notes_for(s)},
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
        summary_html.append(H.summary_list(comparison))
    for r, ss in zip(reps, per_run):
        if multi:
            summary_html.append(f"<h3>{H.esc(r.run.name)}</h3>")
        if ss:
            summary_html.append(H.summary_list(ss))
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
        "summary": H.summary_json(all_sentences),
    }
    log("rendering figures")
    sections = {"summary": "\n".join(summary_html), "runs": runs_table(reps), "accuracy": accuracy_html(reps)}
    for sec, _ in TRAJECTORY_SECTIONS:
        sections[sec] = "\n".join(
            trajectory_section(r.trajectory, r.run.name, sec, r.notes_for(sec), multi) for r in reps
        )
    sections["context"] = "\n".join(context_html(r, multi) for r in reps)
    sections["classes"] = "\n".join(classes_html(r, multi, opts.max_classes) for r in reps)
    sections["dense"] = dense_html([r.run for r in reps], opts.device)
    if any(r.classes is not None and r.classes.cue for r in reps):
        sections["cue"] = "\n".join(cue_html(r, multi) for r in reps)
    what = ", ".join(H.esc(r.run.path) for r in reps)
    meta = f"{len(reps)} run{'s' if multi else ''}: {what}. {opts.describe()} Generated {data['generated']}."
    return H.page(title, meta, sections, H.clean(data), SECTIONS)


# ---------------------------------------------------------------------------------------------- entry points
def write_report(run_dirs: Sequence[str | Path], out: str | Path, **options: Any) -> Path:
    """Write the HTML report of one or more run folders to `out`; returns the path written.

    Options: see ReportOptions (rank, early, late, early_window, late_window, window, source, decode_epochs,
    topk, metric, model, device, max_classes, title, progress).
    """
    opts = ReportOptions.from_kwargs(options)
    paths = [Path(p) for p in run_dirs]
    if not paths:
        raise SubptError("no run folder given: pass at least one RUN written by `subpt train --out RUN`")
    log = logger(opts.progress)
    names = run_names(paths)
    runs = [load_run(p, n) for p, n in zip(paths, names)]  # raises before any work when a path is wrong
    backbones = Backbones(opts.device)
    with ExitStack() as stack:
        reps = [_analyse_run(r, opts, backbones, stack, log) for r in runs]
        title = opts.title or ("Prompt-tuning report: " + ", ".join(r.run.name for r in reps))
        text = _render(reps, title, opts, log)
    out = H.write_html(text, Path(out), error=SubptError)
    log(f"wrote {out}")
    warn_skipped([f"{r.run.name}: {m}" for r in reps for m in r.run.skipped], out)
    return out
