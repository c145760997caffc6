"""The reference recipes as one call: CoOp(+NFL) with recording -> early basis -> SubPT(+NFL), for any
prompt-learning method (cfg.prompt_method: KgCoOp(+NFL) -> basis -> SubPT(KgCoOp)(+NFL), ...).

The basis is planned by `subpt.basis_plan.BasisPlan.reference` (window, rank, source, centring).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from subpt import runs
from subpt.basis_plan import BasisPlan, reference_setting
from subpt.config import TrainConfig
from subpt.errors import SubptError
from subpt.train import train


def run_pipeline(
    cfg: TrainConfig,
    out_dir: Path,
    t_early: int | None = None,
    rank: int | None = None,
    source: str = "snapshots",
    progress: bool = True,
    resume: bool = False,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Stage 1 CoOp(+NFL) with recording, the early basis, stage 2 SubPT(+NFL); returns the paths.

    With `resume`, finished stages are kept and an interrupted one continues from its checkpoint; with
    `overwrite`, runs already in `out_dir` are replaced. Every setting is checked before anything trains.
    """
    if cfg.basis:
        raise SubptError("the pipeline builds its own basis: leave --basis out")
    if resume and overwrite:
        raise SubptError("--resume keeps the runs in --out and --overwrite replaces them: choose one")
    cfg.validate()
    ref_t, _ = reference_setting(cfg.shots, cfg.subsample == "base")
    t_early = ref_t if t_early is None else t_early
    if not 1 <= t_early <= cfg.epochs:
        raise SubptError(f"--t-early {t_early} must lie in 1..{cfg.epochs} (the number of epochs)")
    plan = BasisPlan.reference(cfg.epochs, cfg.shots, cfg.subsample == "base", t_early, rank, source)
    plan.check()  # the window rule, before stage 1 trains
    out_dir = Path(out_dir)
    stage1, stage2, basis_path = pipeline_paths(cfg, out_dir)
    first = replace(cfg, record_grads=cfg.record_grads or source == "grads")
    train_stage(first, stage1, progress, resume, overwrite)
    plan.build(stage1, basis_path)
    train_stage(replace(cfg, basis=str(basis_path)), stage2, progress, resume, overwrite)
    return {"stage1": stage1, "basis": basis_path, "stage2": stage2}


def pipeline_paths(cfg: TrainConfig, out_dir: Path) -> tuple[Path, Path, Path]:
    """(stage-1 run, stage-2 run, basis file) of the pipeline in `out_dir`: coop(_nfl), subpt(_nfl), early.pt for
    CoOp as before; another method's carry its key (kgcoop_nfl, subpt_kgcoop_nfl, early_kgcoop_nfl.pt), so
    pipelines of several methods can share one folder."""
    out_dir = Path(out_dir)
    nfl = "_nfl" if cfg.nfl else ""
    if cfg.prompt_method == "coop":
        return out_dir / f"coop{nfl}", out_dir / f"subpt{nfl}", out_dir / "early.pt"
    p = cfg.prompt_method
    return out_dir / f"{p}{nfl}", out_dir / f"subpt_{p}{nfl}", out_dir / f"early_{p}{nfl}.pt"


def train_stage(cfg: TrainConfig, run_dir: Path, progress: bool = True, resume: bool = False,
                overwrite: bool = False) -> None:
    """Train one run; with `resume`, a finished run with the same settings (and basis content) is kept and an
    interrupted one continues from its checkpoint; a run with other settings is trained again."""
    run_dir = Path(run_dir)
    if resume and runs.can_resume(run_dir, cfg):
        if runs.is_finished(runs.read_metrics(run_dir), cfg.epochs):
            return  # this very run, every epoch done
        train(cfg, run_dir, resume=True, progress=progress)
    else:
        train(cfg, run_dir, overwrite=resume or overwrite, progress=progress)
