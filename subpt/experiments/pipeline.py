"""The reference recipes as one call: CoOp(+NFL) with recording -> early basis -> SubPT(+NFL).

The basis is the top-r right singular vectors of the centred ctx snapshots after epochs 1..t_early
(METHOD.md section 3); per-step gradients are the alternative source (not centred unless asked).
A rank that keeps every direction of its window is refused by gradflow's window rule; `basis_rank`
gives the reference proportion r = t_early / 3 for an early window of any length, below that limit.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from gradflow.subspace import Basis
from gradflow.windowbasis import check_window_rank, window_basis
from gradflow.windows import Window
from subpt import runs
from subpt.config import TrainConfig
from subpt.errors import SubptError
from subpt.train import train

# (t_early, r) of the reference code, by shots; base-to-novel uses its own pair.
REFERENCE_BY_SHOTS = {1: (10, 5), 2: (20, 10), 4: (30, 10), 8: (40, 10), 16: (50, 10)}
REFERENCE_BASE_TO_NOVEL = (30, 10)


def reference_setting(shots: int, base_to_novel: bool) -> tuple[int, int]:
    """(t_early, r) of the reference recipe for this protocol and shot count."""
    if base_to_novel:
        return REFERENCE_BASE_TO_NOVEL
    if shots in REFERENCE_BY_SHOTS:
        return REFERENCE_BY_SHOTS[shots]
    nearest = min(REFERENCE_BY_SHOTS, key=lambda k: abs(k - shots))
    return REFERENCE_BY_SHOTS[nearest]


def basis_rank(t_early: int) -> int:
    """The reference proportion r = round(t_early * 10 / 30) (base-to-novel: t_early 30, r 10), at least 1.

    It is capped below what the early window can hold: `epochs:1-t` holds t snapshots (the epoch-0
    init snapshot is not in it), which centred span t - 1 directions, so r <= t - 2 (but never below 1;
    a window of fewer than 3 snapshots cannot give a basis under gradflow's rank rule).
    """
    t_early = int(t_early)
    if t_early < 1:
        raise SubptError(f"t_early must be at least 1, got {t_early}")
    ref_t, ref_r = REFERENCE_BASE_TO_NOVEL
    return max(1, min(round(t_early * ref_r / ref_t), t_early - 2))


def default_rank(shots: int, base_to_novel: bool, t_early: int) -> int:
    """The r used when none is given: the reference r at the reference t_early, else `basis_rank(t_early)`."""
    ref_t, ref_r = reference_setting(shots, base_to_novel)
    return ref_r if int(t_early) == ref_t else basis_rank(t_early)


def run_basis(
    run_dir: Path, window: str, rank: int, out: Path, source: str = "snapshots", center: bool | None = None
) -> Basis:
    """Build a basis from a window of a run's trajectory and save it to `out`.

    `center=None` centres snapshots (the reference recipe) but not per-step gradients; pass True or
    False to choose. The basis metadata records `centered`.
    """
    if center is None:
        center = source == "snapshots"
    basis, _ = window_basis(Path(run_dir), window=window, rank=rank, source=source, center=center)
    basis.save(out)
    return basis


def run_pipeline(
    cfg: TrainConfig,
    out_dir: Path,
    t_early: int | None = None,
    rank: int | None = None,
    source: str = "snapshots",
    progress: bool = True,
    resume: bool = False,
) -> dict[str, Path]:
    """Stage 1 CoOp(+NFL) with recording, the early basis, stage 2 SubPT(+NFL); returns the paths.

    With `resume`, finished stages are kept and an interrupted one continues from its checkpoint.
    """
    if cfg.basis:
        raise SubptError("the pipeline builds its own basis: leave --basis out")
    ref_t, _ = reference_setting(cfg.shots, cfg.subsample == "base")
    t_early = ref_t if t_early is None else t_early
    if not 1 <= t_early <= cfg.epochs:
        raise SubptError(f"--t-early {t_early} must lie in 1..{cfg.epochs} (the number of epochs)")
    rank = default_rank(cfg.shots, cfg.subsample == "base", t_early) if rank is None else rank
    if source == "snapshots":  # the window rule, checked before stage 1 trains: t centred snapshots
        check_window_rank(rank, Window("epochs", 1, t_early, f"epochs:1-{t_early}"), source, t_early, True)
    out_dir = Path(out_dir)
    stage1 = out_dir / ("coop_nfl" if cfg.nfl else "coop")
    stage2 = out_dir / ("subpt_nfl" if cfg.nfl else "subpt")
    basis_path = out_dir / "early.pt"
    first = replace(cfg, record_grads=cfg.record_grads or source == "grads")
    train_stage(first, stage1, progress, resume)
    run_basis(stage1, f"epochs:1-{t_early}", rank, basis_path, source=source)
    train_stage(replace(cfg, basis=str(basis_path)), stage2, progress, resume)
    return {"stage1": stage1, "basis": basis_path, "stage2": stage2}


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
