"""Frozen image features, computed once per (weights, dataset, split items, transform) and cached on disk."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from gradflow.atomic import atomic_torch_save
from subpt.backbone import Backbone
from subpt.data.base import Item, TaskData


def cache_dir() -> Path:
    """Folder of subpt's caches: $SUBPT_CACHE, else ~/.cache/subpt."""
    return Path(os.environ.get("SUBPT_CACHE", Path.home() / ".cache" / "subpt"))


class _Images(Dataset):
    def __init__(self, items: list[Item], task: TaskData, transform):
        self.items, self.task, self.transform = items, task, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(self.task.load_image(self.items[i]))


def feature_key(backbone: Backbone, task: TaskData, items: list[Item]) -> str:
    """Cache key: model, weights, dataset, the exact items (so split, shots and seed) and the transform."""
    h = hashlib.sha256()
    for part in (backbone.model_name, backbone.weights_id, task.name, repr(backbone.preprocess)):
        h.update(part.encode())
    for it in items:
        h.update(repr((it.source, it.label)).encode())
    return h.hexdigest()[:24]


@torch.no_grad()
def image_features(
    backbone: Backbone,
    task: TaskData,
    split: str,
    batch_size: int = 256,
    use_cache: bool = True,
    progress: bool = True,
    num_workers: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised image features (n, d) in fp32 and labels (n,) of one split, on the backbone's device."""
    items = task.split(split)
    key = feature_key(backbone, task, items)
    path = cache_dir() / "features" / f"{task.name}-{split}-{key}.pt"
    device = backbone.device
    if use_cache and path.is_file():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            return blob["features"].to(device), blob["labels"].to(device)
        except Exception:
            path.unlink(missing_ok=True)  # a damaged cache entry is recomputed
    labels = torch.tensor([it.label for it in items], dtype=torch.long)
    loader = DataLoader(_Images(items, task, backbone.preprocess), batch_size=batch_size, num_workers=num_workers)
    feats = []
    bar = tqdm(loader, desc=f"image features {task.name}/{split}", disable=not progress or None, leave=False)
    for x in bar:
        f = backbone.model.encode_image(x.to(device))
        feats.append(F.normalize(f.float(), dim=-1).cpu())
    width = backbone.embed_dim
    features = torch.cat(feats) if feats else torch.empty(0, width)
    if use_cache:
        atomic_torch_save({"features": features, "labels": labels}, path, mkdir=True)
    return features.to(device), labels.to(device)
