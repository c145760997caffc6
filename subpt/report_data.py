"""Run folders read back for the report, the accuracy analysis, and the data-driven summary sentences.

Every number of a summary sentence is a `Num` that names the key of the value in the report's embedded
JSON block, so the rendered HTML can be checked against the data it came from.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from subpt import runs
from subpt.config import TrainConfig
from subpt.errors import SubptError


def finite(x: Any) -> bool:
    """True for a real, finite number."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass
class RunData:
    """What a run folder holds, and notes (per report section) on what it lacks."""

    path: Path
    name: str
    config: TrainConfig | None = None
    metrics: list[dict] = field(default_factory=list)
    zeroshot: dict | None = None
    notes: dict[str, list[str]] = field(default_factory=dict)

    def note(self, section: str, message: str) -> None:
        """Record what a section could not show, and why."""
        self.notes.setdefault(section, []).append(message)

    @property
    def has_trajectory(self) -> bool:
        """Whether the folder has a trajectory/ folder (readable or not)."""
        return runs.trajectory_path(self.path).exists()


def load_run(path: str | Path, name: str | None = None) -> RunData:
    """Read a run folder of `subpt train`; missing files become notes, a folder that is no run an error."""
    p = Path(path)
    if not p.exists():
        raise SubptError(f"{p} does not exist: pass a run folder written by `subpt train --out RUN`")
    if not p.is_dir():
        raise SubptError(f"{p} is not a folder: pass a run folder written by `subpt train --out RUN`")
    if not any((p / f).exists() for f in runs.RUN_FILES):
        raise SubptError(
            f"{p} is not a run folder (none of {', '.join(runs.RUN_FILES)} is there): pass the --out folder of `subpt train`"
        )
    run = RunData(path=p, name=name or p.name)
    try:
        run.config = runs.load_config(p)
    except SubptError as e:
        run.note(
            "config", f"{e}; the sections that need the model (decoded context, classes, cue) are left out"
        )
    mpath = p / runs.METRICS
    if not mpath.is_file():
        run.note("accuracy", f"{mpath} is missing: no accuracy curves (train the run with `subpt train`)")
    else:
        run.metrics = runs.read_metrics(p)
        if runs.metrics_lines(p) > len(run.metrics):
            run.note(
                "accuracy",
                f"{mpath} line {len(run.metrics) + 1} is incomplete (interrupted run?): "
                f"showing the {len(run.metrics)} complete epochs; `subpt train --resume` completes it",
            )
        if not run.metrics:
            run.note("accuracy", f"{mpath} holds no complete epoch yet")
    zpath = p / runs.ZEROSHOT
    try:
        run.zeroshot = runs.read_zeroshot(p)
    except FileNotFoundError:
        run.note("accuracy", f"{zpath} is missing: no zero-shot reference line")
    except (OSError, json.JSONDecodeError) as e:
        run.note("accuracy", f"{zpath} is unreadable ({type(e).__name__}): no zero-shot reference line")
    return run


def run_names(paths: list[Path]) -> list[str]:
    """Short unique labels of run folders: the folder name, with parents added where names clash."""
    parts = [Path(p).resolve().parts for p in paths]
    depth = 1
    while True:
        names = ["/".join(pp[-depth:]) for pp in parts]
        if len(set(names)) == len(names) or depth >= max(len(pp) for pp in parts):
            return names
        depth += 1


# ---------------------------------------------------------------------------------------------- accuracy
def accuracy_summary(run: RunData) -> dict | None:
    """Peak, final and zero-shot numbers of one run, and where novel accuracy fell below zero-shot."""
    ev = [m for m in run.metrics if finite(m.get("base_acc"))]
    if not ev:
        return None
    zs = run.zeroshot or {}
    peak = max(ev, key=lambda m: m["base_acc"])  # first epoch reaching the maximum
    last = ev[-1]
    out: dict[str, Any] = {
        "epochs": [m["epoch"] for m in run.metrics],
        "evaluated_epochs": len(ev),
        "final_epoch": last["epoch"],
        "base_peak": peak["base_acc"],
        "base_peak_epoch": peak["epoch"],
        "base_final": last["base_acc"],
        "base_first": ev[0]["base_acc"],
        "first_epoch": ev[0]["epoch"],
        "base_drop": peak["base_acc"] - last["base_acc"],
        "novel_final": last.get("novel_acc") if finite(last.get("novel_acc")) else None,
        "hm_final": last.get("hm") if finite(last.get("hm")) else None,
        "train_final": last.get("train_acc") if finite(last.get("train_acc")) else None,
        "zs_base": zs.get("base_acc") if finite(zs.get("base_acc")) else None,
        "zs_novel": zs.get("novel_acc") if finite(zs.get("novel_acc")) else None,
        "zs_hm": zs.get("hm") if finite(zs.get("hm")) else None,
        "novel_below_epoch": None,
        "novel_below_count": 0,
        "novel_after_count": 0,
        "hm_peak": None,
        "hm_peak_epoch": None,
    }
    hm = [m for m in ev if finite(m.get("hm"))]
    if hm:
        best = max(hm, key=lambda m: m["hm"])
        out["hm_peak"], out["hm_peak_epoch"] = best["hm"], best["epoch"]
    nov = [m for m in ev if finite(m.get("novel_acc"))]
    if nov:
        out["novel_first"] = nov[0]["novel_acc"]
        best_n = max(nov, key=lambda m: m["novel_acc"])
        out["novel_peak"], out["novel_peak_epoch"] = best_n["novel_acc"], best_n["epoch"]
    if nov and out["zs_novel"] is not None:
        below = [m for m in nov if m["novel_acc"] < out["zs_novel"]]
        if below:
            k = below[0]["epoch"]
            after = [m for m in nov if m["epoch"] >= k]
            out["novel_below_epoch"] = k
            out["novel_after_count"] = len(after)
            out["novel_below_count"] = sum(m["novel_acc"] < out["zs_novel"] for m in after)
    return out


# ---------------------------------------------------------------------------------------------- sentences
@dataclass
class Num:
    """A number quoted in a sentence, with the key of its value in the report's JSON."""

    key: str
    value: Any
    fmt: str = "{:.1f}"
    unit: str = ""
    scale: float = 1  # shown as value * scale (e.g. 100 for a fraction shown in percent)

    def text(self) -> str:
        """The number as shown."""
        if isinstance(self.value, str):
            return self.value
        return self.fmt.format(self.value * self.scale if self.scale != 1 else self.value) + self.unit


class Sentence:
    """A sentence assembled from text and `Num` parts."""

    def __init__(self, section: str = "summary"):
        self.section = section
        self.parts: list[str | Num] = []

    def t(self, text: str) -> Sentence:
        """Append text (the first non-empty text of a sentence starts with a capital)."""
        if text and all(p == "" for p in self.parts):
            text = text[0].upper() + text[1:]
        self.parts.append(text)
        return self

    def n(self, key: str, value: Any, fmt: str = "{:.1f}", unit: str = "", scale: float = 1) -> Sentence:
        """Append a number (or a string value from the data) with its JSON key."""
        self.parts.append(Num(key, value, fmt, unit, scale))
        return self

    def frac(self, key: str, value: float) -> Sentence:
        """Append a fraction (0..1) shown in percent."""
        return self.n(key, value, "{:.1f}", "%", 100)

    def pct(self, key: str, value: float) -> Sentence:
        """Append a percentage (value already in percent)."""
        return self.n(key, value, "{:.1f}", "%")

    def plain(self) -> str:
        """The sentence as plain text."""
        return "".join(p if isinstance(p, str) else p.text() for p in self.parts)

    def nums(self) -> list[Num]:
        """The numbers of the sentence."""
        return [p for p in self.parts if isinstance(p, Num)]


def accuracy_sentences(acc: dict, key: str, label: str) -> list[Sentence]:
    """Sentences on base, novel and HM accuracy of one run; `key` is the JSON path of `acc`."""
    out = []
    s = Sentence().t(label)
    fe, pe = acc["final_epoch"], acc["base_peak_epoch"]
    if pe < fe and acc["base_drop"] > 0:
        s.t("base accuracy peaked at ").pct(f"{key}.base_peak", acc["base_peak"]).t(" at epoch ")
        s.n(f"{key}.base_peak_epoch", pe, "{:d}").t(" and ended at ").pct(
            f"{key}.base_final", acc["base_final"]
        )
        s.t(" at epoch ").n(f"{key}.final_epoch", fe, "{:d}").t(" (").n(
            f"{key}.base_drop", acc["base_drop"], "{:.1f}"
        )
        s.t(" points lower)")
    elif pe < fe:
        s.t("base accuracy reached its maximum, ").pct(f"{key}.base_peak", acc["base_peak"]).t(", at epoch ")
        s.n(f"{key}.base_peak_epoch", pe, "{:d}").t(" and ended at that value, ")
        s.pct(f"{key}.base_final", acc["base_final"]).t(", at epoch ").n(f"{key}.final_epoch", fe, "{:d}")
    else:
        s.t("base accuracy was highest at the last evaluated epoch, ").n(f"{key}.final_epoch", fe, "{:d}")
        s.t(": ").pct(f"{key}.base_final", acc["base_final"])
    zb = acc["zs_base"]
    if zb is not None:
        diff = acc["base_final"] - zb
        acc["base_vs_zs"] = abs(diff)
        s.t("; that is ").n(f"{key}.base_vs_zs", abs(diff), "{:.1f}").t(" points ")
        s.t("above" if diff >= 0 else "below").t(" zero-shot (").pct(f"{key}.zs_base", zb).t(")")
    out.append(s.t("."))

    s = Sentence().t(label)
    zn, nf = acc["zs_novel"], acc["novel_final"]
    if nf is None:
        s.t(
            "no novel-class accuracy was recorded (the run trained on all classes or used a class-specific context)."
        )
        out.append(s)
    elif zn is None:
        s.t("novel accuracy ended at ").pct(f"{key}.novel_final", nf).t(
            " (no zero-shot reference to compare with)."
        )
        out.append(s)
    else:
        if acc["novel_below_epoch"] is None:
            s.t("novel accuracy never fell below zero-shot (").pct(f"{key}.zs_novel", zn).t(")")
        else:
            k = acc["novel_below_epoch"]
            if k == acc["first_epoch"]:
                s.t("novel accuracy was below zero-shot (").pct(f"{key}.zs_novel", zn)
                s.t(") at the first evaluated epoch (").n(f"{key}.novel_below_epoch", k, "{:d}").t(")")
            else:
                s.t("novel accuracy fell below zero-shot (").pct(f"{key}.zs_novel", zn).t(") at epoch ")
                s.n(f"{key}.novel_below_epoch", k, "{:d}")
            later, below = acc["novel_after_count"], acc["novel_below_count"]
            if later > 1 and below == later:
                s.t(" and stayed below it through the last epoch (").n(
                    f"{key}.novel_after_count", later, "{:d}"
                )
                s.t(" evaluated epochs)")
            elif later > 1:
                s.t(" and was below it at ").n(f"{key}.novel_below_count", below, "{:d}").t(" of the ")
                s.n(f"{key}.novel_after_count", later, "{:d}").t(" evaluated epochs from then on")
        pk, pke = acc.get("novel_peak"), acc.get("novel_peak_epoch")
        if pk is not None and pke != acc["final_epoch"] and pk > nf:
            s.t("; it peaked at ").pct(f"{key}.novel_peak", pk).t(" at epoch ").n(
                f"{key}.novel_peak_epoch", pke, "{:d}"
            )
            s.t(" and ended at ")
        else:
            s.t("; it ended at ")
        s.pct(f"{key}.novel_final", nf)
        if acc["novel_below_epoch"] is not None:
            s.t(", above zero-shot" if nf >= zn else ", below zero-shot")
        out.append(s.t("."))

    if acc["hm_final"] is not None:
        s = (
            Sentence()
            .t(label)
            .t("the harmonic mean of base and novel ended at ")
            .pct(f"{key}.hm_final", acc["hm_final"])
        )
        if acc["zs_hm"] is not None:
            s.t(" against ").pct(f"{key}.zs_hm", acc["zs_hm"]).t(" for zero-shot")
        if acc["hm_peak_epoch"] is not None and acc["hm_peak_epoch"] != acc["final_epoch"]:
            s.t("; its best was ").pct(f"{key}.hm_peak", acc["hm_peak"]).t(" at epoch ")
            s.n(f"{key}.hm_peak_epoch", acc["hm_peak_epoch"], "{:d}")
        out.append(s.t("."))
    if acc["train_final"] is not None:
        gap = acc["train_final"] - acc["base_final"]
        acc["train_gap"] = abs(gap)
        s = Sentence().t(label).t("training accuracy ended at ").pct(f"{key}.train_final", acc["train_final"])
        s.t(", ").n(f"{key}.train_gap", abs(gap), "{:.1f}").t(" points ").t("above" if gap >= 0 else "below")
        out.append(s.t(" base test accuracy."))
    return out


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


def _fmt_tokens(col: dict) -> str:
    return ", ".join(f"'{pos[0][0]}'" for pos in col["tokens"])


def context_sentences(dec: dict, key: str, label: str) -> list[Sentence]:
    """Sentences on the decoded context (`dec` holds 'columns', one per decoded epoch)."""
    cols = dec.get("columns") or []
    out = []
    for col in cols:
        col["nearest_words"] = _fmt_tokens(col)
    if not cols:
        return out
    first, last = cols[0], cols[-1]
    metric = first["metric"]
    score = "mean cosine similarity" if metric == "cosine" else "mean euclidean distance"
    s = Sentence().t(label).t("at epoch ").n(f"{key}.columns.{len(cols) - 1}.epoch", last["epoch"], "{:d}")
    s.t(" the nearest words to the context vectors are ").n(
        f"{key}.columns.{len(cols) - 1}.nearest_words", last["nearest_words"]
    )
    s.t(f" ({score} to them ").n(
        f"{key}.columns.{len(cols) - 1}.nearest_mean", last["nearest_mean"], "{:.2f}"
    )
    if len(cols) > 1:
        s.t(", against ").n(f"{key}.columns.0.nearest_mean", first["nearest_mean"], "{:.2f}").t(" at epoch ")
        s.n(f"{key}.columns.0.epoch", first["epoch"], "{:d}")
    out.append(s.t(")."))
    ratio = last["norm_mean"] / last["token_norm_median"] if last["token_norm_median"] else None
    if ratio is not None:
        s = (
            Sentence()
            .t(label)
            .t("the context vectors' mean norm is ")
            .n(f"{key}.columns.{len(cols) - 1}.norm_mean", last["norm_mean"], "{:.3f}")
        )
        s.t(", ").n(f"{key}.columns.{len(cols) - 1}.norm_ratio", ratio, "{:.2f}").t(
            " times the median norm of a word embedding ("
        )
        s.n(f"{key}.columns.{len(cols) - 1}.token_norm_median", last["token_norm_median"], "{:.3f}").t(")")
        last["norm_ratio"] = ratio
        out.append(
            s.t(
                ": decoded words are a rough reading of vectors that "
                + ("lie far from" if ratio > 2 or ratio < 0.5 else "live at the scale of")
                + " the vocabulary."
            )
        )
    return out


def class_sentences(ca: dict, key: str, label: str) -> list[Sentence]:
    """Sentences on the classes that gain or lose most against zero-shot, and on the cue."""
    out = []
    for g, res in ca.get("groups", {}).items():
        delta = res["delta"]
        idx = [i for i, d in enumerate(delta) if finite(d)]
        if not idx:
            continue
        gk = f"{key}.groups.{g}"
        res["n_gained"] = sum(delta[i] > 0 for i in idx)
        res["n_lost"] = sum(delta[i] < 0 for i in idx)
        res["n_classes"] = len(idx)
        s = Sentence().t(label).t(f"against zero-shot, on {g} classes ")
        if res["n_gained"] == 0 and res["n_lost"] == 0:
            s.t("no class changed accuracy (").n(f"{gk}.n_classes", len(idx), "{:d}").t(" classes).")
            out.append(s)
            continue
        s.n(f"{gk}.n_gained", res["n_gained"], "{:d}").t(" of ").n(f"{gk}.n_classes", len(idx), "{:d}")
        s.t(" classes gained and ").n(f"{gk}.n_lost", res["n_lost"], "{:d}").t(" lost accuracy")
        best = max(idx, key=lambda i: delta[i])
        worst = min(idx, key=lambda i: delta[i])
        for which, i, word in (("gain", best, delta[best] > 0), ("loss", worst, delta[worst] < 0)):
            if not word:
                continue
            s.t(f"; the largest {which} is ").n(f"{gk}.classes.{i}", res["classes"][i]).t(" (")
            s.n(f"{gk}.delta.{i}", delta[i], "{:+.1f}").t(" points, ").pct(
                f"{gk}.zero_shot.{i}", res["zero_shot"][i]
            )
            s.t(" → ").pct(f"{gk}.final.{i}", res["final"][i]).t(")")
        out.append(s.t("."))
    cue = ca.get("cue") or {}
    for g, rows in cue.items():
        ctx, zs = rows["context"], rows["zero-shot"]
        if "test_cue_fixed" not in ctx:
            s = Sentence().t(label).t(f"on {g} classes with the cue flipped, the learned context scores ")
            s.pct(f"{key}.cue.{g}.context.test_cue_flipped", ctx["test_cue_flipped"]).t(" (")
            s.pct(f"{key}.cue.{g}.context.test", ctx["test"]).t(" on the ordinary test set) and zero-shot ")
            s.pct(f"{key}.cue.{g}.zero-shot.test_cue_flipped", zs["test_cue_flipped"]).t(".")
            out.append(s)
            continue
        gap_c = ctx["test_cue_fixed"] - ctx["test_cue_flipped"]
        gap_z = zs["test_cue_fixed"] - zs["test_cue_flipped"]
        rows["gap_context"], rows["gap_zero_shot"], rows["gap_excess"] = gap_c, gap_z, gap_c - gap_z
        s = Sentence().t(label).t(f"on {g} classes the learned context scores ")
        s.pct(f"{key}.cue.{g}.context.test_cue_fixed", ctx["test_cue_fixed"]).t(" with the cue absent and ")
        s.pct(f"{key}.cue.{g}.context.test_cue_flipped", ctx["test_cue_flipped"]).t(
            " with it flipped, a gap of "
        )
        s.n(f"{key}.cue.{g}.gap_context", gap_c, "{:.1f}").t(" points; zero-shot: ")
        s.pct(f"{key}.cue.{g}.zero-shot.test_cue_fixed", zs["test_cue_fixed"]).t(" vs ")
        s.pct(f"{key}.cue.{g}.zero-shot.test_cue_flipped", zs["test_cue_flipped"]).t(" (gap ")
        s.n(f"{key}.cue.{g}.gap_zero_shot", gap_z, "{:.1f}").t(" points)")
        excess = gap_c - gap_z
        ek = f"{key}.cue.{g}.gap_excess"
        n = rows.get("n", {})
        noise = None
        if n.get("test_cue_fixed") and n.get("test_cue_flipped"):
            var = sum(
                a * (100 - a) / n[split]
                for who in (ctx, zs)
                for split, a in ((s_, who[s_]) for s_ in ("test_cue_fixed", "test_cue_flipped"))
            )
            noise = 2 * math.sqrt(var)
            rows["gap_noise"] = noise
        if gap_c <= 0:
            s.t(": flipping the cue does not lower the context's accuracy")
        elif noise is not None and abs(excess) < noise:
            s.t(": the cost of flipping it for the context differs from zero-shot CLIP's by ")
            s.n(ek, excess, "{:+.1f}").t(" points, within test noise (±").n(
                f"{key}.cue.{g}.gap_noise", noise, "{:.1f}"
            ).t(" points, two standard errors)")
        elif excess > 0:
            s.t(": the context relies on the spurious cue, flipping it costs ").n(ek, excess, "{:.1f}")
            s.t(" points more than it costs zero-shot CLIP")
        else:
            s.t(": flipping the cue costs the context no more than it costs zero-shot CLIP (")
            s.n(ek, excess, "{:+.1f}").t(" points)")
        out.append(s.t("."))
    return out


def comparison_sentences(accs: list[tuple[str, dict | None]]) -> list[Sentence]:
    """With several runs: which ended best on HM and on novel accuracy."""
    out = []
    have = [(i, n, a) for i, (n, a) in enumerate(accs) if a is not None]
    if len(have) < 2:
        return out
    for metric, label in (
        ("hm_final", "harmonic mean"),
        ("novel_final", "novel accuracy"),
        ("base_final", "base accuracy"),
    ):
        vals = [(i, n, a[metric]) for i, n, a in have if a.get(metric) is not None]
        if len(vals) < 2:
            continue
        i, n, v = max(vals, key=lambda x: x[2])
        j, m, w = min(vals, key=lambda x: x[2])
        s = (
            Sentence()
            .t(f"Of the {len(vals)} runs, ")
            .n(f"runs.{i}.name", n)
            .t(f" ended with the highest {label} (")
        )
        s.pct(f"runs.{i}.accuracy.{metric}", v).t(") and ").n(f"runs.{j}.name", m).t(" with the lowest (")
        out.append(s.pct(f"runs.{j}.accuracy.{metric}", w).t(")."))
    return out
