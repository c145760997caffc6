"""Per-step cost of SubPT's projection and of NFL relative to a plain CoOp step, measured in one run.

On the embedded tiny CLIP and a random-init ViT-B-16 (weights do not change the cost), on cached image
features, batch 32, n_ctx 16, `--classes` base classes and as many NFL names.
Usage: python benchmarks/method_cost.py [--steps 20] [--classes 32] [--rank 10] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from subpt.backbone import load_backbone
from subpt.config import PromptConfig
from subpt.evaluate import classify
from subpt.nfl import NovelFeatureLearner
from subpt.projection import GradientProjector
from subpt.prompts import PromptLearner


def step_time(learner: PromptLearner, feats: torch.Tensor, labels: torch.Tensor, steps: int,
              projector: GradientProjector | None, nfl: NovelFeatureLearner | None) -> float:
    """Median seconds of one CoOp step (forward, backward, weight decay, optional projection, SGD)."""
    opt = torch.optim.SGD([learner.ctx], lr=0.002, momentum=0.9)
    scale = learner.backbone.model.logit_scale
    times = []
    for s in range(steps + 2):
        idx = torch.arange(s * 32, (s + 1) * 32) % feats.shape[0]
        t0 = time.perf_counter()
        loss = F.cross_entropy(classify(feats[idx], learner.text_features(), scale), labels[idx])
        if nfl is not None:
            loss = loss + nfl.loss(learner)
        opt.zero_grad()
        loss.backward()
        learner.ctx.grad.add_(learner.ctx.detach(), alpha=5e-4)
        if projector is not None:
            projector.project_(learner.ctx)
        opt.step()
        if s >= 2:  # skip warm-up steps
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench(model: str, pretrained: str, steps: int, n_classes: int, rank: int) -> dict:
    """Step times of CoOp, SubPT and CoOp+NFL and their ratios for one backbone."""
    bb = load_backbone(model, pretrained)
    gen = torch.Generator().manual_seed(0)
    feats = F.normalize(torch.randn(256, bb.embed_dim, generator=gen), dim=-1)
    labels = torch.randint(n_classes, (256,), generator=gen)
    names = [f"base class {i}" for i in range(n_classes)]
    learner = PromptLearner(bb, names, PromptConfig(n_ctx=16))
    q, _ = torch.linalg.qr(torch.randn(learner.ctx.numel(), rank, generator=gen))
    projector = GradientProjector(q.t())
    nfl = NovelFeatureLearner(learner, [f"novel class {i}" for i in range(n_classes)], ["a photo of a {}."])
    coop = step_time(learner, feats, labels, steps, None, None)
    subpt = step_time(learner, feats, labels, steps, projector, None)
    with_nfl = step_time(learner, feats, labels, steps, None, nfl)
    return {"model": model, "coop_s": coop, "subpt_s": subpt, "nfl_s": with_nfl,
            "subpt_ratio": subpt / coop, "nfl_ratio": with_nfl / coop, "dim": learner.ctx.numel()}


def main() -> None:
    """Run the benchmark and print the ratios."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--classes", type=int, default=32)
    ap.add_argument("--rank", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="embedded model only, 5 steps")
    args = ap.parse_args()
    models = [("subpt-tiny", "embedded")] + ([] if args.quick else [("ViT-B-16", "random")])
    steps = 5 if args.quick else args.steps
    print(f"per-step cost, batch 32, {args.classes} classes (+{args.classes} NFL names), rank {args.rank}, "
          f"{torch.get_num_threads()} CPU threads")
    for model, pretrained in models:
        r = bench(model, pretrained, steps, args.classes, args.rank)
        print(f"{r['model']:>10} (D={r['dim']}): CoOp {1000 * r['coop_s']:.1f} ms | SubPT {1000 * r['subpt_s']:.1f} ms "
              f"(x{r['subpt_ratio']:.3f}) | CoOp+NFL {1000 * r['nfl_s']:.1f} ms (x{r['nfl_ratio']:.2f})")


if __name__ == "__main__":
    main()
