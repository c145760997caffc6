"""CoOp epoch time: K cached augmented views (--aug-views) vs the image tower every step on fresh augmentations.

Measured in one run, on one backbone (default: ViT-B-16 with random weights; weights do not change the cost).
One "epoch" is `--steps` optimiser steps of `--batch` images with `--classes` prompted classes. The cached path
picks each image's view of the epoch from the cached features (subpt.features.epoch_views); the other path runs
CoOp's training transform (subpt.features.train_transform: random resized crop, flip, normalisation) and the image
tower on every batch, as a trainer without the cache would. Images are synthetic PIL images held in memory, so
file decoding, which only the uncached path pays every epoch, is not counted: the ratio is a lower bound.
Also printed: the one-time cost of encoding the K views and after how many epochs it is paid back.

Usage: python benchmarks/aug_views.py [--model ViT-B-16 --pretrained random] [--device cuda] [--steps 4]
       [--batch 32] [--views 16] [--repeats 3]
Tiny check (seconds on a CPU): python benchmarks/aug_views.py --steps 1 --batch 4 --views 2 --repeats 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from subpt.backbone import load_backbone
from subpt.config import PromptConfig
from subpt.data.base import Item, TaskData
from subpt.evaluate import classify
from subpt.features import augmented_features, epoch_views, train_transform
from subpt.prompts import PromptLearner


def synthetic_task(n_images: int, n_classes: int, size: int, seed: int = 0) -> TaskData:
    """A task of `n_images` random RGB images of `size` px held in memory, labels cycling over `n_classes`."""
    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n_images)]
    items = [Item(source=i, label=i % n_classes) for i in range(n_images)]
    names = [f"class number {i}" for i in range(n_classes)]
    return TaskData("aug-views-bench", names, "a photo of a {}.", items, [], [], lambda it: images[it.source])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def epoch_time(
    learner: PromptLearner,
    task: TaskData,
    views: torch.Tensor | None,
    epoch: int,
    steps: int,
    batch: int,
) -> float:
    """Seconds of one CoOp epoch of `steps` steps: on cached `views` (n, K, d), or (None) through CoOp's training
    transform and the image tower at every step."""
    model = learner.backbone.model
    device = learner.backbone.device
    labels = torch.tensor([it.label for it in task.train], device=device)
    transform = train_transform(learner.backbone)
    opt = torch.optim.SGD([learner.ctx], lr=0.002, momentum=0.9)
    _sync(device)
    t0 = time.perf_counter()
    if views is not None:
        pick = epoch_views(views.shape[0], views.shape[1], seed=1, epoch=epoch).to(device)
        epoch_feats = views[torch.arange(views.shape[0], device=device), pick]
    for s in range(steps):
        idx = torch.arange(s * batch, (s + 1) * batch, device=device) % len(task.train)
        if views is not None:
            f = epoch_feats[idx]
        else:
            x = torch.stack([transform(task.load_image(task.train[i])) for i in idx.tolist()]).to(device)
            with torch.no_grad():
                f = F.normalize(model.encode_image(x).float(), dim=-1)
        loss = F.cross_entropy(classify(f, learner.text_features(), model.logit_scale), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    _sync(device)
    return time.perf_counter() - t0


def bench(args: argparse.Namespace) -> dict:
    """The one-time cost of the views, the median epoch times of both paths and their ratio."""
    device = torch.device(args.device)
    bb = load_backbone(args.model, args.pretrained, device)
    n_images = args.steps * args.batch
    task = synthetic_task(n_images, args.classes, args.image_size)
    learner = PromptLearner(bb, task.classnames, PromptConfig(n_ctx=16))
    _sync(device)
    t0 = time.perf_counter()
    views, _ = augmented_features(bb, task, args.views, seed=1, use_cache=False, progress=False)
    _sync(device)
    encode_s = time.perf_counter() - t0
    cached = statistics.median(
        epoch_time(learner, task, views, e, args.steps, args.batch) for e in range(args.repeats)
    )
    tower = statistics.median(
        epoch_time(learner, task, None, e, args.steps, args.batch) for e in range(args.repeats)
    )
    return {
        "model": args.model,
        "device": str(device),
        "images": n_images,
        "views": args.views,
        "encode_views_s": encode_s,
        "cached_epoch_s": cached,
        "tower_epoch_s": tower,
        "ratio": tower / cached,
        "break_even_epochs": encode_s / max(tower - cached, 1e-12),
    }


def main() -> None:
    """Run the benchmark and print the ratio."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-16")
    ap.add_argument("--pretrained", default="random")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=4, help="optimiser steps per epoch")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--classes", type=int, default=32)
    ap.add_argument("--views", type=int, default=16, help="K, the cached views per image")
    ap.add_argument("--image-size", type=int, default=256, help="side of the synthetic source images (px)")
    ap.add_argument("--repeats", type=int, default=3, help="epochs timed per path (the median is reported)")
    args = ap.parse_args()
    for name in ("steps", "batch", "classes", "views", "image_size", "repeats"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    torch.manual_seed(0)
    r = bench(args)
    print(
        f"CoOp epoch = {args.steps} steps x batch {args.batch}, {args.classes} classes, n_ctx 16, {r['model']} on "
        f"{r['device']} (CPU threads {torch.get_num_threads()})"
    )
    print(
        f"encoding {r['views']} views x {r['images']} images = {r['views'] * r['images']} image-tower passes: "
        f"{r['encode_views_s']:.3f} s once"
    )
    print(
        f"epoch on cached views {r['cached_epoch_s']:.3f} s | image tower every step on fresh augmentations "
        f"{r['tower_epoch_s']:.3f} s | x{r['ratio']:.1f} slower without the cache; the views pay for themselves "
        f"after {r['break_even_epochs']:.1f} epochs"
    )


if __name__ == "__main__":
    main()
