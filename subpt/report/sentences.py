"""The summary sentences of `subpt report`: accuracy, decoded context, classes, and the comparison of runs.

Every number of a sentence carries its key in the report's JSON (see gradflow.html.Sentence); the trajectory
sentences are gradflow's (gradflow.report.trajectory_sentences).
"""

from __future__ import annotations

import math

from gradflow.html import Sentence
from subpt.report.rundata import finite


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
