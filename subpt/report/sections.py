"""The HTML sections of `subpt report` that need more than a trajectory: runs, accuracy, decoded context,
classes and cue (the trajectory sections are gradflow.report's)."""

from __future__ import annotations

import math
from typing import Any

from gradflow import html as H
from gradflow.report import TRAJECTORY_SECTIONS
from subpt.report import figures as figs
from subpt.report.rundata import RunReport

SECTIONS = [
    ("summary", "Summary"),
    ("runs", "Runs"),
    ("accuracy", "Accuracy per epoch"),
    *TRAJECTORY_SECTIONS,
    ("context", "Learned context, decoded"),
    ("classes", "Classes that gain or lose against zero-shot"),
    ("cue", "Reliance on the spurious cue"),
    ("dense", "Detection and segmentation on scenes"),
]


def context_html(rep: RunReport, multi: bool) -> str:
    """The decoded-context section of one run: nearest vocabulary tokens of each context vector per epoch."""
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


def classes_html(rep: RunReport, multi: bool, max_classes: int) -> str:
    """The classes section of one run: per-class change against zero-shot, largest gains and losses."""
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


def cue_html(rep: RunReport, multi: bool) -> str:
    """The cue section of one run: accuracy with the cue as trained, absent and flipped."""
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


def runs_table(reps: list[RunReport]) -> str:
    """The runs section: method, dataset, model, shots, epochs and context of every run."""
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


def accuracy_html(reps: list[RunReport]) -> str:
    """The accuracy section: curves of every run against zero-shot, and peak and final numbers."""
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
