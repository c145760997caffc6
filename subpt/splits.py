"""The data of one run: the task split base/novel by CoOp's rule, with cached image features."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from subpt.backbone import Backbone
from subpt.config import TrainConfig
from subpt.data.base import TaskData, subsample_task
from subpt.data.catalogue import build_task
from subpt.features import image_features


@dataclass
class Splits:
    """Cached features of everything a run trains and evaluates on."""

    task: TaskData
    base: TaskData
    novel: TaskData | None
    train: tuple[torch.Tensor, torch.Tensor]
    base_test: tuple[torch.Tensor, torch.Tensor]
    novel_test: tuple[torch.Tensor, torch.Tensor] | None


def prepare_data(cfg: TrainConfig, backbone: Backbone, progress: bool = True) -> Splits:
    """Build the task, split base/novel by CoOp's rule, and load (or compute) cached image features."""
    task = build_task(cfg.dataset, root=cfg.root, shots=cfg.shots, seed=cfg.seed, **cfg.dataset_options)
    base = subsample_task(task, cfg.subsample)
    novel = subsample_task(task, "novel") if cfg.subsample == "base" else None
    train = image_features(backbone, base, "train", progress=progress)
    base_test = image_features(backbone, base, "test", progress=progress)
    novel_test = image_features(backbone, novel, "test", progress=progress) if novel is not None else None
    return Splits(task, base, novel, train, base_test, novel_test)
