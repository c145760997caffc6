"""The main job on the embedded default: the paper's experiment, end to end, offline, in a few minutes.

On a typical member of the world family (the study's default variant: 64 named object kinds, CoOp's base/novel
rule on the sorted labels, no spurious cue) over seeds: zero-shot, CoOp, CoOp+NFL, SubPT (early basis), SubPT+NFL
and SubPT with a late-window basis, with the study's one method setting. Prints Base / Novel / HM of the final
epoch (mean +- std over seeds), CoOp's peak-then-drop of base accuracy, and writes the per-epoch curves
(curves.json), a figure of them (curves.png) and the interpretability report of seed 1.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console

from subpt.config import TrainConfig
from subpt.errors import SubptError
from subpt.experiments.study import (
    DEFAULT_GRID,
    METHODS,
    Variant,
    basis_plan,
    coop_curve,
    run_unit,
    study_config,
)
from subpt.figures import plot_accuracy_curves
from subpt.runs import check_output_folder, read_metrics, read_zeroshot
from subpt.summary import aggregate, fmt, mean_std, method_table

DEMO_VARIANT = DEFAULT_GRID[0]


def demo_config(seed: int, epochs: int | None = None, options: dict | None = None,
                aug_views: int | None = None) -> TrainConfig:
    """The demo's CoOp run: the study's method setting on the default variant (with `options` on top)."""
    variant = Variant(DEMO_VARIANT.name, DEMO_VARIANT.dataset, {**DEMO_VARIANT.options, **(options or {})})
    return study_config(variant, seed, epochs, aug_views)


def run_demo(
    out: Path,
    seeds: int = 3,
    epochs: int | None = None,
    options: dict | None = None,
    report: bool = True,
    console: Console | None = None,
    resume: bool = False,
    aug_views: int | None = None,
) -> dict:
    """Run every method over `seeds` seeds into `out`; print and return the summary.

    With `resume`, finished runs in `out` are kept and an interrupted one continues from its checkpoint.
    `options` are task options on top of the default variant's (e.g. {"cue": "mark"}).
    """
    console = console or Console()
    out = Path(out)
    if seeds < 1:
        raise SubptError(f"--seeds must be at least 1, got {seeds}")
    configs = [demo_config(seed, epochs, options, aug_views) for seed in range(1, seeds + 1)]
    for cfg in configs:  # every setting is checked before anything is written
        cfg.validate()
    early, late, rank = basis_plan(configs[0].epochs)
    check_output_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    runs: dict[str, list[Path]] = {m: [] for m in METHODS}
    for cfg in configs:
        console.print(f"[bold]seed {cfg.seed}[/bold]: CoOp and CoOp+NFL (recording), bases, SubPT variants")
        unit = run_unit(cfg, out / f"seed{cfg.seed}", resume=resume, progress=True)
        for m in METHODS:
            runs[m].append(unit[m])
    summary = summarise(runs, early_window=early, rank=rank, late_window=late,
                        task={"dataset": configs[0].dataset, **(options or {})})
    summary["seconds"] = round(time.time() - t0, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "curves.json").write_text(json.dumps(summary.pop("curves")) + "\n")
    plot_accuracy_curves(json.loads((out / "curves.json").read_text()), out / "curves.png")
    print_summary(summary, console)
    if report:
        from subpt.report.build import write_report

        seed1 = [runs[m][0] for m in ("CoOp", "SubPT", "SubPT+NFL")]
        write_report(seed1, out / "report.html", progress=False)
        console.print(f"interpretability report of seed 1: {out / 'report.html'}")
    console.print(f"runs, curves.json and curves.png in {out}  ({time.time() - t0:.0f} s)")
    return summary


def summarise(runs: dict[str, list[Path]], **extra: object) -> dict:
    """Final-epoch Base/Novel/HM per method, zero-shot, CoOp's peak-then-drop, and mean curves."""
    finals = {m: [read_metrics(r)[-1] for r in rs] for m, rs in runs.items()}
    zero = [read_zeroshot(r) for r in runs["CoOp"]]
    rows = {"zero-shot": zero, **finals}
    table = aggregate(rows)
    peaks = [coop_curve(r) for r in runs["CoOp"]]
    curves = {
        m: {
            "epoch": [x["epoch"] for x in read_metrics(rs[0])],
            **{k: [[x[k] for x in read_metrics(r)] for r in rs] for k in ("base_acc", "novel_acc", "train_acc")},
        }
        for m, rs in runs.items()
    }
    curves["zero-shot"] = {k: [z[k] for z in zero] for k in ("base_acc", "novel_acc")}
    return {"table": table, "coop_peak": peaks, "curves": curves, "seeds": len(zero), **extra}


def print_summary(summary: dict, console: Console) -> None:
    """The demo's table and CoOp's peak-then-drop line."""
    task = ", ".join(f"{k} {v}" for k, v in summary["task"].items() if k != "dataset")
    title = f"{summary['task']['dataset']} ({task or 'default task'}): final epoch, mean ± std over {summary['seeds']} seeds"
    console.print(method_table(summary["table"], title))
    p = summary["coop_peak"]
    pb = mean_std([x["base_peak"] for x in p])
    fb = mean_std([x["base_final"] for x in p])
    epochs = ", ".join(str(x["base_peak_epoch"]) for x in p)
    console.print(f"CoOp base accuracy peaks at {fmt(*pb)} (epochs {epochs}) and ends at {fmt(*fb)}: "
                  f"a drop of {pb[0] - fb[0]:.2f} points.")
    pn = mean_std([x["novel_peak"] for x in p])
    fn = mean_std([x["novel_final"] for x in p])
    n_epochs = ", ".join(str(x["novel_peak_epoch"]) for x in p)
    zs = summary["table"]["zero-shot"]["novel_acc"][0]
    console.print(f"CoOp novel accuracy peaks at {fmt(*pn)} (epochs {n_epochs}) and ends at {fmt(*fn)}; "
                  f"zero-shot: {zs:.2f}.")
