"""Frozen image features, computed once per (weights, dataset, split items, transform) and cached on disk: the
test view of every image, and K augmented views of every training image (CoOp's training transform)."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from gradflow.atomic import atomic_torch_save
from subpt.backbone import Backbone
from subpt.cache_paths import cache_dir
from subpt.data.base import Item, TaskData
from subpt.errors import SubptError


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
def load_cached(path: Path, keys: tuple[str, ...]) -> dict | None:
    """The tensors saved in a cache entry, or None when it is absent; a damaged entry (unreadable or missing one of
    `keys`) is deleted so that it is recomputed."""
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if all(k in blob for k in keys):
            return blob
    except Exception:
        pass
    path.unlink(missing_ok=True)
    return None


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
    blob = load_cached(path, ("features", "labels")) if use_cache else None
    if blob is not None:
        return blob["features"].to(device), blob["labels"].to(device)
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


# ----------------------------------------------------------------------------------------------------
# Augmented training views (CoOp's training transform), computed once and cached

AUG_SCALE = (0.08, 1.0)  # Dassl's INPUT.RRCROP_SCALE default, which CoOp's configs keep
AUG_RATIO = (3 / 4, 4 / 3)  # torchvision's (and Dassl's) aspect-ratio range of the random resized crop


def _input_size(backbone: Backbone) -> tuple[int, int]:
    size = backbone.model.visual.image_size
    return (int(size[0]), int(size[1])) if isinstance(size, tuple | list) else (int(size), int(size))


def train_transform(backbone: Backbone) -> Callable[[Image.Image], torch.Tensor]:
    """CoOp's training transform at the model's input size: random resized crop (scale 0.08-1, bicubic), random
    horizontal flip, then the test transform's RGB conversion, tensor conversion and CLIP normalisation."""
    steps = getattr(backbone.preprocess, "transforms", None)
    if steps is None:
        raise SubptError(
            f"the image preprocessing of {backbone.model_name} is not a torchvision Compose: "
            "augmented views need one; train with --aug-views 0"
        )
    tail = [t for t in steps if not isinstance(t, T.Resize | T.CenterCrop)]
    head = [
        T.RandomResizedCrop(
            _input_size(backbone), scale=AUG_SCALE, ratio=AUG_RATIO, interpolation=T.InterpolationMode.BICUBIC
        ),
        T.RandomHorizontalFlip(),
    ]
    return T.Compose([*head, *tail])


def _mix(*parts: object) -> int:
    """A 63-bit seed from the parts (distinct parts give unrelated seeds)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") >> 1


class _Views(Dataset):
    """The K augmented views of image i, drawn from a generator seeded by (seed, i): the same views whatever the
    batch size, worker count or order, and the first k of K views are the views of a k-view cache."""

    def __init__(self, items: list[Item], task: TaskData, transform: Callable, views: int, seed: int):
        self.items, self.task, self.transform, self.views, self.seed = items, task, transform, views, seed

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> torch.Tensor:
        image = self.task.load_image(self.items[i])
        with torch.random.fork_rng(devices=[]):  # torchvision's transforms draw from torch's global generator
            torch.manual_seed(_mix("views", self.seed, i))
            return torch.stack([self.transform(image) for _ in range(self.views)])


def views_key(backbone: Backbone, task: TaskData, items: list[Item], views: int, seed: int) -> str:
    """Cache key of augmented views: the test features' key, the training transform, K and the seed."""
    h = hashlib.sha256(feature_key(backbone, task, items).encode())
    h.update(repr((repr(train_transform(backbone)), int(views), int(seed))).encode())
    return h.hexdigest()[:24]


def views_cost(n_images: int, views: int) -> str:
    """One line saying what computing the views costs, in image-tower passes."""
    return (
        f"{views} augmented views x {n_images:,} training images = {views * n_images:,} image-tower passes "
        "(once; cached for later runs)"
    )


@torch.no_grad()
def augmented_features(
    backbone: Backbone,
    task: TaskData,
    views: int,
    seed: int,
    batch_size: int = 256,
    use_cache: bool = True,
    progress: bool = True,
    num_workers: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised features (n, views, d) in fp32 of `views` augmented views of every training image, and the
    labels (n,), on the backbone's device."""
    if views < 1:
        raise SubptError(f"--aug-views must be at least 1 to compute augmented views, got {views}")
    items = task.split("train")
    key = views_key(backbone, task, items, views, seed)
    path = cache_dir() / "features" / f"{task.name}-train-aug{views}-{key}.pt"
    device = backbone.device
    blob = load_cached(path, ("views", "labels")) if use_cache else None
    if blob is not None:
        return blob["views"].to(device), blob["labels"].to(device)
    labels = torch.tensor([it.label for it in items], dtype=torch.long)
    if progress and items:
        tqdm.write(f"{task.name}/train: {views_cost(len(items), views)}", file=sys.stderr)
    data = _Views(items, task, train_transform(backbone), views, seed)
    loader = DataLoader(data, batch_size=max(1, batch_size // views), num_workers=num_workers)
    feats = []
    bar = tqdm(
        total=len(items) * views,
        desc=f"augmented views {task.name}/train",
        unit="pass",
        disable=not progress or None,
        leave=False,
    )
    for x in loader:
        f = backbone.model.encode_image(x.flatten(0, 1).to(device))
        feats.append(F.normalize(f.float(), dim=-1).view(x.shape[0], views, -1).cpu())
        bar.update(x.shape[0] * views)
    bar.close()
    out = torch.cat(feats) if feats else torch.empty(0, views, backbone.embed_dim)
    if use_cache:
        atomic_torch_save({"views": out, "labels": labels}, path, mkdir=True)
    return out.to(device), labels.to(device)


def epoch_views(n: int, views: int, seed: int, epoch: int) -> torch.Tensor:
    """Which of the `views` cached views each of `n` training images shows in `epoch` (0-based): a function of
    (seed, epoch, image index) alone. Epochs come in cycles of `views`; within a cycle every image shows each of
    its views once, in an order drawn per image from a generator seeded by (seed, cycle)."""
    cycle, position = divmod(int(epoch), int(views))
    gen = torch.Generator().manual_seed(_mix("epoch-views", int(seed), cycle))
    return torch.rand(n, views, generator=gen).argsort(dim=1)[:, position]
