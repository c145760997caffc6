"""Cost of a CoCoOp training epoch against a CoOp epoch on the same data, measured in one run.

On the embedded tiny CLIP and a random-init ViT-B-16 (weights do not change the cost), on cached (random, normalised)
image features: N = shots x classes images, an epoch of CoOp at batch 32 (its default), of CoCoOp at batch 1 (its
paper's setting: one text pass of C prompts per image) and of CoCoOp at batch 32 (B x C prompts per batched pass), both
prefix-shared per image; each step is forward, backward and an SGD step, as `subpt train` runs them.
Usage: python benchmarks/cocoop_cost.py [--classes 32] [--vit-classes 8] [--shots 2] [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from subpt import cocoop
from subpt.backbone import load_backbone
from subpt.config import PromptConfig
from subpt.evaluate import classify
from subpt.prompts import PromptLearner


def coop_epoch(learner: PromptLearner, feats: torch.Tensor, labels: torch.Tensor, batch: int) -> float:
    """Seconds of one CoOp epoch (prefix-shared text features of the C classes once per step)."""
    opt = torch.optim.SGD([learner.ctx], lr=0.002, momentum=0.9)
    scale = learner.backbone.model.logit_scale
    t0 = time.perf_counter()
    for s in range(0, feats.shape[0], batch):
        x, y = feats[s : s + batch], labels[s : s + batch]
        loss = F.cross_entropy(classify(x, learner.text_features(), scale), y, reduction="sum") / x.shape[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def cocoop_epoch(
    learner: cocoop.CoCoOpLearner, feats: torch.Tensor, labels: torch.Tensor, batch: int
) -> float:
    """Seconds of one CoCoOp epoch (`cocoop.backward_step`, as the trainer calls it)."""
    opt = torch.optim.SGD([learner.ctx, learner.meta.flat], lr=0.002, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    t0 = time.perf_counter()
    for s in range(0, feats.shape[0], batch):
        x, y = feats[s : s + batch], labels[s : s + batch]
        opt.zero_grad()
        cocoop.backward_step(learner, x, y, x.shape[0], None, scaler, nullcontext)
        opt.step()
    return time.perf_counter() - t0


def bench(model: str, pretrained: str, n_classes: int, shots: int, repeats: int) -> dict:
    """Median epoch seconds of CoOp (batch 32), CoCoOp (batch 1) and CoCoOp (batch 32) for one backbone."""
    bb = load_backbone(model, pretrained)
    gen = torch.Generator().manual_seed(0)
    n = n_classes * shots
    feats = F.normalize(torch.randn(n, bb.embed_dim, generator=gen), dim=-1).to(bb.device)
    labels = torch.arange(n_classes).repeat(shots)[torch.randperm(n, generator=gen)].to(bb.device)
    names = [f"base class {i}" for i in range(n_classes)]
    cfg = PromptConfig(ctx_init="a photo of a")
    coop = PromptLearner(bb, names, cfg)
    co = cocoop.CoCoOpLearner(bb, names, cfg)
    runs = {
        "coop_b32": lambda: coop_epoch(coop, feats, labels, 32),
        "cocoop_b1": lambda: cocoop_epoch(co, feats, labels, 1),
        "cocoop_b32": lambda: cocoop_epoch(co, feats, labels, 32),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):  # interleaved, so that load on the machine hits every method alike
        for key, run in runs.items():
            times[key].append(run())
    out = {k: statistics.median(v) for k, v in times.items()}
    return {"model": model, "images": n, "classes": n_classes, **out}


def main() -> None:
    """Run the benchmark and print the epoch times and ratios."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--classes", type=int, default=32, help="classes of the embedded model's task")
    ap.add_argument("--vit-classes", type=int, default=8, help="classes of the ViT-B-16 task")
    ap.add_argument("--shots", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="embedded model only, 1 repeat")
    args = ap.parse_args()
    setups = [("subpt-tiny", "embedded", args.classes)]
    if not args.quick:
        setups.append(("ViT-B-16", "random", args.vit_classes))
    repeats = 1 if args.quick else args.repeats
    print(
        f"one training epoch, {args.shots} shots per class, cached features, 4 context vectors, "
        f"{torch.get_num_threads()} CPU threads, median of {repeats}"
    )
    for model, pretrained, classes in setups:
        r = bench(model, pretrained, classes, args.shots, repeats)
        base = r["coop_b32"]
        print(
            f"{r['model']:>10} ({r['classes']} classes, {r['images']} images): CoOp b32 {base:.3f} s | "
            f"CoCoOp b1 {r['cocoop_b1']:.3f} s (x{r['cocoop_b1'] / base:.1f}) | "
            f"CoCoOp b32 {r['cocoop_b32']:.3f} s (x{r['cocoop_b32'] / base:.1f})"
        )


if __name__ == "__main__":
    main()
