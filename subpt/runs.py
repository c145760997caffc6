"""Reading run folders back: configs, checkpoints, and re-evaluation."""

from __future__ import annotations

from pathlib import Path

import torch

from subpt.backbone import load_backbone
from subpt.config import TrainConfig
from subpt.errors import SubptError
from subpt.prompts import PromptLearner
from subpt.train import evaluate_run, prepare_data, read_metrics


def load_ctx(run_dir: Path, epoch: int | None = None) -> tuple[torch.Tensor, int]:
    """The context saved after `epoch` (default: the last saved epoch) and that epoch."""
    ckpt = Path(run_dir) / "ckpt"
    files = sorted(ckpt.glob("ctx_*.pt"))
    if not files:
        raise SubptError(f"{ckpt} holds no ctx_*.pt checkpoints: has the run finished an epoch?")
    path = files[-1] if epoch is None else ckpt / f"ctx_{epoch:03d}.pt"
    if not path.is_file():
        raise SubptError(f"{path} is missing; saved epochs: {', '.join(f.stem[4:] for f in files)}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        return blob["ctx"], int(blob["epoch"])
    except Exception as e:
        raise SubptError(f"checkpoint {path} is corrupt or not a subpt checkpoint ({type(e).__name__})") from e


def evaluate_saved_run(run_dir: Path, epoch: int | None = None, device: str = "cpu", progress: bool = True) -> dict:
    """Rebuild a run's model and data from config.json and evaluate a saved context."""
    run_dir = Path(run_dir)
    cfg = TrainConfig.load(run_dir / "config.json")
    cfg.device = device
    ctx, ep = load_ctx(run_dir, epoch)
    backbone = load_backbone(cfg.model, cfg.pretrained, device)
    splits = prepare_data(cfg, backbone, progress=progress)
    learner = PromptLearner(backbone, splits.base.classnames, cfg.prompt_config(), seed=cfg.seed)
    if tuple(ctx.shape) != tuple(learner.ctx.shape):
        raise SubptError(f"{run_dir}: saved ctx has shape {tuple(ctx.shape)} but the config gives {tuple(learner.ctx.shape)}")
    with torch.no_grad():
        learner.ctx.copy_(ctx.to(learner.ctx.device))
    return {"run": str(run_dir), "epoch": ep, **evaluate_run(learner, splits, cfg.text_chunk)}


def final_metrics(run_dir: Path) -> dict:
    """The last evaluated epoch's record of a run."""
    rows = [m for m in read_metrics(run_dir) if "base_acc" in m]
    if not rows:
        raise SubptError(f"{run_dir}/metrics.jsonl has no evaluated epoch yet")
    return rows[-1]
