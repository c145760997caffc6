"""The data of one run: the task split base/novel by CoOp's rule, with cached image features (and, with
--aug-views K, K cached augmented views of every training image, one of them shown per epoch)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from subpt.backbone import Backbone
from subpt.config import TrainConfig
from subpt.data.base import TaskData, subsample_task
from subpt.data.catalogue import build_task
from subpt.errors import SubptError
from subpt.features import augmented_features, epoch_views, image_features


@dataclass
class Splits:
    """Cached features of everything a run trains and evaluates on.

    `train` holds the training images' test-view features (n, d), or, with augmented views, their K views
    (n, K, d); `epoch_train` gives the (n, d) features an epoch trains on.
    """

    task: TaskData
    base: TaskData
    novel: TaskData | None
    train: tuple[torch.Tensor, torch.Tensor]
    base_test: tuple[torch.Tensor, torch.Tensor]
    novel_test: tuple[torch.Tensor, torch.Tensor] | None

    def epoch_train(self, seed: int, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Training features (n, d) and labels of `epoch` (0-based): the test view, or one augmented view per
        image chosen by `subpt.features.epoch_views` from (seed, epoch, image index)."""
        feats, labels = self.train
        if feats.dim() == 2:
            return feats, labels
        pick = epoch_views(feats.shape[0], feats.shape[1], seed, epoch).to(feats.device)
        return feats[torch.arange(feats.shape[0], device=feats.device), pick], labels


def prepare_data(cfg: TrainConfig, backbone: Backbone, progress: bool = True, augment: bool = True) -> Splits:
    """Build the task, split base/novel by CoOp's rule, and load (or compute) cached image features.

    With `augment` False (evaluation only), training images come in their test view whatever `cfg.aug_views`, so
    re-evaluating or analysing a run never encodes augmented views it does not use.
    """
    task = build_task(cfg.dataset, root=cfg.root, shots=cfg.shots, seed=cfg.seed, **cfg.dataset_options)
    if task.partition is not None and cfg.subsample != "base":
        raise SubptError(
            f"dataset {cfg.dataset!r} fixes its own seen / unseen partition (its unseen classes must "
            f"never enter training): use --subsample base, not {cfg.subsample!r}"
        )
    base = subsample_task(task, cfg.subsample)
    novel = subsample_task(task, "novel") if cfg.subsample == "base" else None
    if cfg.aug_views and augment:
        train = augmented_features(backbone, base, cfg.aug_views, cfg.seed, progress=progress)
    else:
        train = image_features(backbone, base, "train", progress=progress)
    base_test = image_features(backbone, base, "test", progress=progress)
    novel_test = image_features(backbone, novel, "test", progress=progress) if novel is not None else None
    return Splits(task, base, novel, train, base_test, novel_test)
