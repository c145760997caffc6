"""`subpt demo --dense`: region and mask prompt learning on the embedded world's scenes, end to end.

For each seed s: the scenes of seed s (training scenes and evaluation scenes, disjoint), and for each task (box
crops: detection; masked crops: segmentation) CoOp, SubPT (the early-window basis of that CoOp run) and SubPT+NFL
(the same basis, NFL's extra names = the unseen class names) trained on the seen classes' regions plus a background
class, with one method setting (DENSE_SETTING). Every final context, and zero-shot CLIP (the template with the
threshold rule), is evaluated on the seed's evaluation scenes: AP50 from the box runs, mIoU from the mask runs,
seen / unseen / harmonic mean. CoOp's unseen AP50 and mIoU after every epoch form its curve.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from subpt.basis_plan import run_basis
from subpt.config import TrainConfig
from subpt.dense.region_task import REGION_DATASET
from subpt.errors import SubptError
from subpt.experiments.pipeline import train_stage
from subpt.experiments.study import basis_plan
from subpt.runs import check_output_folder

# The one method setting: the study's, with 6 epochs (the 5-minute budget on 2 cores: 18 runs and CoOp's per-epoch
# curves); never tuned on results.
DENSE_SETTING: dict[str, Any] = {"shots": 16, "n_ctx": 4, "ctx_init": "a photo of a", "lr": 0.02, "epochs": 6}
# The trainer's per-epoch region accuracy (base = seen + background, novel = unseen + background) on the regions of
# the first TEST_SCENES evaluation scenes: a side figure, kept small since the demo's figures are AP50 and mIoU.
TEST_SCENES = 20
DENSE_METHODS = ("CoOp", "SubPT", "SubPT+NFL")
RUN_NAMES = {"CoOp": "coop", "SubPT": "subpt", "SubPT+NFL": "subpt_nfl"}
TASK_METRICS = {"box": ("ap50_seen", "ap50_unseen", "ap50_hm"), "mask": ("miou_seen", "miou_unseen", "hiou")}
EVAL_SCENES = 50


def dense_config(kind: str, seed: int, epochs: int | None = None, options: dict | None = None) -> TrainConfig:
    """The demo's CoOp run on the `kind` regions (box or mask) of the scenes of `seed`."""
    setting = {**DENSE_SETTING, **({} if epochs is None else {"epochs": epochs})}
    dataset_options = {"regions": kind, "scene_seed": seed, "test_scenes": TEST_SCENES, **(options or {})}
    return TrainConfig(
        dataset=REGION_DATASET,
        dataset_options=dataset_options,
        seed=seed,
        record_grads=True,
        aug_views=0,
        **setting,
    )


def train_methods(base: TrainConfig, out: Path, resume: bool, progress: bool) -> dict[str, Path]:
    """CoOp, SubPT and SubPT+NFL of one (task, seed) into `out`; returns method -> run folder."""
    early, _, rank = basis_plan(base.epochs)
    runs = {m: out / RUN_NAMES[m] for m in DENSE_METHODS}
    train_stage(base, runs["CoOp"], progress=progress, resume=resume, overwrite=True)
    run_basis(runs["CoOp"], early, rank, out / "early.pt")
    train_stage(
        replace(base, basis=str(out / "early.pt")),
        runs["SubPT"],
        progress=progress,
        resume=resume,
        overwrite=True,
    )
    train_stage(
        replace(base, basis=str(out / "early.pt"), nfl=True),
        runs["SubPT+NFL"],
        progress=progress,
        resume=resume,
        overwrite=True,
    )
    return runs


def run_dense_demo(
    out: Path,
    seeds: int = 3,
    epochs: int | None = None,
    eval_scenes: int = EVAL_SCENES,
    options: dict | None = None,
    console: Console | None = None,
    resume: bool = False,
    progress: bool = False,
    kinds: tuple[str, ...] = tuple(TASK_METRICS),
) -> dict:
    """Train and evaluate every method on both tasks over `seeds` seeds into `out`; print and return the summary.

    `options` are world-regions options on top of the defaults (e.g. {"train_scenes": 50} for a quick look);
    `kinds` the tasks (box: detection, mask: segmentation)."""
    from subpt.dense.run_eval import dense_curve, dense_eval

    console = console or Console()
    out = Path(out)
    if seeds < 1:
        raise SubptError(f"--seeds must be at least 1, got {seeds}")
    unknown = sorted(set(kinds) - set(TASK_METRICS))
    if unknown or not kinds:
        raise SubptError(f"dense demo tasks must be among {', '.join(TASK_METRICS)}, got {', '.join(kinds)}")
    configs = {(k, s): dense_config(k, s, epochs, options) for s in range(1, seeds + 1) for k in kinds}
    for cfg in configs.values():
        cfg.validate()
    basis_plan(next(iter(configs.values())).epochs)
    check_output_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    world = {
        k: v
        for k, v in (options or {}).items()
        if k in ("n_classes", "class_seed", "partition_seed", "held_out")
    }
    rows: dict[str, dict[str, list[float]]] = {m: {} for m in ("zero-shot", "chance", *DENSE_METHODS)}
    curves: dict[str, list[list[dict]]] = {k: [] for k in TASK_METRICS}
    per_seed = []
    for s in range(1, seeds + 1):
        console.print(
            f"[bold]seed {s}[/bold]: zero-shot, then CoOp, SubPT, SubPT+NFL on box and mask regions"
        )
        zs = dense_eval(s, eval_scenes, world=world, progress=progress)
        ch = dense_eval(s, eval_scenes, world=world, chance=True, progress=progress)
        record: dict[str, Any] = {"seed": s, "zero-shot": _pick(zs), "chance": _pick(ch)}
        for name, r in (("zero-shot", zs), ("chance", ch)):
            for key in (*TASK_METRICS["box"], *TASK_METRICS["mask"]):
                rows[name].setdefault(key, []).append(r[key])
        for kind in kinds:
            keys = TASK_METRICS[kind]
            runs = train_methods(configs[(kind, s)], out / f"seed{s}" / kind, resume, progress)
            for m, run in runs.items():
                r = dense_eval(s, eval_scenes, run=run, progress=progress)
                record[f"{m} {kind}"] = _pick(r)
                for key in keys:
                    rows[m].setdefault(key, []).append(r[key])
            curves[kind].append(dense_curve(runs["CoOp"], s, eval_scenes))
        per_seed.append(record)
    table = {m: {k: _mean_std(v) for k, v in r.items()} for m, r in rows.items()}
    summary = {
        "table": table,
        "per_seed": per_seed,
        "coop_curves": curves,
        "seeds": seeds,
        "eval_scenes": eval_scenes,
        "setting": {**DENSE_SETTING, **({} if epochs is None else {"epochs": epochs})},
        "options": options or {},
        "seconds": round(time.time() - t0, 1),
    }
    (out / "dense_summary.json").write_text(json.dumps(_clean(summary), indent=2) + "\n")
    plot_dense_curves(summary, out / "dense_curve.png")
    console.print(dense_table(summary))
    console.print(
        f"table in {out / 'dense_summary.json'}, CoOp's unseen curve in {out / 'dense_curve.png'}  "
        f"({time.time() - t0:.0f} s)"
    )
    return summary


def _pick(r: dict) -> dict:
    return {k: r[k] for k in (*TASK_METRICS["box"], *TASK_METRICS["mask"])}


def _mean_std(v: list[float]) -> list[float]:
    a = np.asarray(v, dtype=float)
    return (
        [float(np.nanmean(a)), float(np.nanstd(a))] if np.isfinite(a).any() else [float("nan"), float("nan")]
    )


def _clean(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v


def dense_table(summary: dict) -> Table:
    """The demo's table: seen / unseen / HM of AP50 (box runs) and mIoU (mask runs), mean ± std over seeds."""
    t = Table(
        title=f"embedded scenes: seen / unseen / HM, mean ± std over {summary['seeds']} seeds "
        f"({summary['eval_scenes']} evaluation scenes each)"
    )
    t.add_column("method")
    for head in ("AP50 seen", "AP50 unseen", "AP50 HM", "mIoU seen", "mIoU unseen", "hIoU"):
        t.add_column(head, justify="right")
    for m, r in summary["table"].items():
        cells = []
        for k in (*TASK_METRICS["box"], *TASK_METRICS["mask"]):
            mean, std = r.get(k, [float("nan"), float("nan")])
            cells.append("-" if mean is None or not np.isfinite(mean) else f"{mean:.1f} ± {std:.1f}")
        t.add_row(m, *cells)
    return t


def plot_dense_curves(summary: dict, path: Path) -> Path:
    """CoOp's seen and unseen AP50 (box runs) and mIoU (mask runs) after every epoch, mean over seeds, with
    zero-shot as a dashed line."""
    from subpt.dense.figures import curve_figure

    zs = {k: v[0] for k, v in summary["table"]["zero-shot"].items()}
    names = {
        "ap50_seen": "seen AP50",
        "ap50_unseen": "unseen AP50",
        "miou_seen": "seen mIoU",
        "miou_unseen": "unseen mIoU",
    }
    trained = {kind: c for kind, c in summary["coop_curves"].items() if c}  # kind -> one row list per seed
    keys = [(k, label) for k, label in names.items() if any(k in TASK_METRICS[kind] for kind in trained)]
    curves = []  # per seed: each epoch's row, the box runs' AP50 beside the mask runs' mIoU
    for s in range(len(next(iter(trained.values())))):
        rows = [{"epoch": r["epoch"]} for r in next(iter(trained.values()))[s]]
        for kind, c in trained.items():
            for row, r in zip(rows, c[s]):
                row.update({k: r[k] for k in TASK_METRICS[kind]})
        curves.append(rows)
    fig = curve_figure(curves, zs, keys)
    try:
        fig.savefig(path, dpi=110)
    finally:
        fig.clear()
    return Path(path)
