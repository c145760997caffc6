"""CoOp step time: cached image features vs the image tower every step; truncated vs full 77-token text.

Measured in one run, on the embedded tiny CLIP and on a random-init ViT-B-16 (weights do not change the
cost). One "epoch" here is `--steps` optimiser steps of batch 32 with `--classes` prompted classes; the
ratios are epoch-time ratios. Usage: python benchmarks/train_speed.py [--steps 4] [--classes 32] [--quick]
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
from subpt.prompts import PromptLearner


def epoch_time(learner: PromptLearner, images: torch.Tensor, labels: torch.Tensor, cached: bool, truncate: bool,
               steps: int, batch: int = 32) -> float:
    """Seconds for `steps` CoOp steps (forward, backward, SGD) under the given settings."""
    model = learner.backbone.model
    opt = torch.optim.SGD([learner.ctx], lr=0.002, momentum=0.9)
    feats = None
    if cached:
        with torch.no_grad():
            feats = F.normalize(model.encode_image(images).float(), dim=-1)  # done once, outside the epoch
    t0 = time.perf_counter()
    for s in range(steps):
        idx = torch.arange(s * batch, (s + 1) * batch) % images.shape[0]
        if cached:
            f = feats[idx]
        else:
            with torch.no_grad():
                f = F.normalize(model.encode_image(images[idx]).float(), dim=-1)
        loss = F.cross_entropy(classify(f, learner.text_features(truncate=truncate), model.logit_scale), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def bench(model: str, pretrained: str, steps: int, n_classes: int, repeats: int) -> dict:
    """Median epoch times of the four settings and the two ratios for one backbone."""
    bb = load_backbone(model, pretrained)
    size = bb.model.visual.image_size
    size = size[0] if isinstance(size, tuple | list) else size
    gen = torch.Generator().manual_seed(0)
    n_img = steps * 32
    images = torch.randn(n_img, 3, size, size, generator=gen)
    labels = torch.randint(n_classes, (n_img,), generator=gen)
    names = [f"class number {i}" for i in range(n_classes)]
    learner = PromptLearner(bb, names, PromptConfig(n_ctx=16))
    times = {}
    for cached, truncate in ((True, True), (False, True), (True, False)):
        runs = [epoch_time(learner, images, labels, cached, truncate, steps) for _ in range(repeats)]
        times[(cached, truncate)] = statistics.median(runs)
    return {
        "model": model,
        "cached_truncated_s": times[(True, True)],
        "image_tower_every_step_s": times[(False, True)],
        "full_77_tokens_s": times[(True, False)],
        "speedup_cached": times[(False, True)] / times[(True, True)],
        "speedup_truncated": times[(True, False)] / times[(True, True)],
        "eos_position": int(learner.class_prompts.eos_idx.max()),
    }


def main() -> None:
    """Run the benchmark and print the ratios."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--classes", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="embedded model only, 2 steps, 1 repeat")
    args = ap.parse_args()
    torch.manual_seed(0)
    models = [("subpt-tiny", "embedded")] + ([] if args.quick else [("ViT-B-16", "random")])
    steps, repeats = (2, 1) if args.quick else (args.steps, args.repeats)
    print(f"CoOp epoch = {steps} steps x batch 32, {args.classes} classes, n_ctx 16, CPU threads {torch.get_num_threads()}")
    for model, pretrained in models:
        r = bench(model, pretrained, steps, args.classes, repeats)
        print(
            f"{r['model']:>10}: cached+truncated {r['cached_truncated_s']:.3f} s | image tower every step "
            f"{r['image_tower_every_step_s']:.3f} s (x{r['speedup_cached']:.1f} slower) | full 77 tokens "
            f"{r['full_77_tokens_s']:.3f} s (x{r['speedup_truncated']:.2f} slower; EOS at {r['eos_position']})"
        )


if __name__ == "__main__":
    main()
