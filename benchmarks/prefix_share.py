"""CoOp step time of the reference cost structure against this project's, and CoOp+NFL against CoOp.

CoOp+NFL is timed in both of NFL's settings (as many extra names as classes: base-to-novel; 100 names: few-shot and
domain generalisation) and, as its baseline, with the classes and the NFL names in two text passes.

Reference (CoOp's own code): the image tower runs on every batch of 32 images, every class prompt runs through
the text tower at all 77 positions, full sequences, in one pass over all classes. Ours: cached image features,
text truncated after the last EOS, the shared `[SOS] ctx` prefix encoded once (subpt.prefix_share), the step
of `subpt.train.backward_step`. A middle column (cached, truncated, full sequences) isolates what prefix sharing
adds. Every step is forward + backward + SGD step, timed in one run with the same threads, on a random-init
ViT-B-16 (weights do not change the cost) and on the embedded tiny CLIP.

Usage: python benchmarks/prefix_share.py [--classes 10,100,1000] [--steps 3] [--models both] [--device cpu]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from subpt.backbone import Backbone, load_backbone
from subpt.config import PromptConfig, TrainConfig
from subpt.evaluate import classify
from subpt.nfl import NovelFeatureLearner
from subpt.prompts import PromptLearner
from subpt.train import backward_step

BATCH, SHOTS, N_CTX = 32, 16, 16
NFL_FEWSHOT = 100
MODELS = {"vit-b16": ("ViT-B-16", "random"), "embedded": ("subpt-tiny", "embedded")}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_step(step: Callable[[int], None], steps: int, device: torch.device) -> float:
    """Median seconds of `step(i)` over `steps` calls, after one untimed warm-up call."""
    step(0)
    times = []
    for i in range(1, steps + 1):
        _sync(device)
        t0 = time.perf_counter()
        step(i)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def reference_step(
    learner: PromptLearner, images: torch.Tensor, labels: torch.Tensor, chunk: int | None = None
) -> Callable[[int], None]:
    """One step as CoOp's code runs it: image tower on the batch, 77-token full-sequence text, one pass.

    With `chunk`, the text pass runs `chunk` classes at a time, each backpropagating a fixed gradient into ctx:
    the same forward and backward work as the one pass over all classes, without holding every class's
    activations at once (1,000 classes x 77 tokens of ViT-B/16 would need tens of GB).
    """
    model = learner.backbone.model
    opt = torch.optim.SGD([learner.ctx], lr=0.002, momentum=0.9, weight_decay=5e-4)
    n_cls = len(learner.classnames)
    grad = torch.randn(n_cls, learner.backbone.embed_dim, generator=torch.Generator().manual_seed(1)).to(images.device)

    def step(i: int) -> None:
        idx = torch.arange(i * BATCH, (i + 1) * BATCH, device=images.device) % images.shape[0]
        with torch.no_grad():
            feats = F.normalize(model.encode_image(images[idx]).float(), dim=-1)
        opt.zero_grad(set_to_none=True)
        if chunk is None or chunk >= n_cls:
            text = learner.text_features(truncate=False)
            F.cross_entropy(classify(feats, text, model.logit_scale), labels[idx]).backward()
        else:
            for s in range(0, n_cls, chunk):
                ids = torch.arange(s, min(n_cls, s + chunk), device=images.device)
                learner.text_features(truncate=False, class_ids=ids).backward(grad[ids])
        opt.step()

    return step


def chunked_text_step(learner: PromptLearner, chunk: int) -> Callable[[int], None]:
    """Cached features, truncated full sequences, `chunk` classes at a time with a fixed gradient (the middle
    column where one pass over all classes would not fit in memory)."""
    opt = torch.optim.SGD([learner.ctx], lr=0.002, momentum=0.9)
    n_cls = len(learner.classnames)
    device = learner.ctx.device
    grad = torch.randn(n_cls, learner.backbone.embed_dim, generator=torch.Generator().manual_seed(1)).to(device)

    def step(i: int) -> None:
        opt.zero_grad(set_to_none=True)
        for s in range(0, n_cls, chunk):
            ids = torch.arange(s, min(n_cls, s + chunk), device=device)
            learner.text_features(class_ids=ids).backward(grad[ids])
        opt.step()

    return step


def training_step(
    learner: PromptLearner, feats: torch.Tensor, labels: torch.Tensor, nfl: NovelFeatureLearner | None
) -> Callable[[int], None]:
    """One step of this project's trainer on cached features (backward_step, weight decay, SGD)."""
    cfg = TrainConfig(nfl=nfl is not None)
    opt = torch.optim.SGD([learner.ctx], lr=0.002, momentum=0.9)
    scaler = torch.amp.GradScaler(feats.device.type, enabled=False)

    def step(i: int) -> None:
        idx = torch.arange(i * BATCH, (i + 1) * BATCH, device=feats.device) % feats.shape[0]
        opt.zero_grad(set_to_none=True)
        backward_step(learner, feats[idx], labels[idx], BATCH, nfl, cfg, scaler)
        learner.ctx.grad.add_(learner.ctx.detach(), alpha=cfg.weight_decay)
        opt.step()

    return step


def two_pass_nfl_step(
    learner: PromptLearner, feats: torch.Tensor, labels: torch.Tensor, nfl: NovelFeatureLearner
) -> Callable[[int], None]:
    """CoOp+NFL with the prefix encoded once but the classes and the NFL names in two text passes (this
    project before one joint pass): the same loss as `backward_step`, as the baseline of the joint pass."""
    opt = torch.optim.SGD([learner.ctx], lr=0.002, momentum=0.9)
    scale = learner.backbone.model.logit_scale

    def step(i: int) -> None:
        idx = torch.arange(i * BATCH, (i + 1) * BATCH, device=feats.device) % feats.shape[0]
        opt.zero_grad(set_to_none=True)
        prefix = learner.prefix_state()
        student = learner.text_features(nfl.prompts, prefix=prefix)
        text = learner.text_features(prefix=prefix)
        loss = F.cross_entropy(classify(feats[idx], text, scale), labels[idx]) + nfl.loss_from_features(student)
        loss.backward()
        learner.ctx.grad.add_(learner.ctx.detach(), alpha=5e-4)
        opt.step()

    return step


def image_batch_time(backbone: Backbone, images: torch.Tensor, steps: int) -> float:
    """Median seconds of the frozen image tower on one batch (what caching pays once per image)."""

    def step(i: int) -> None:
        with torch.no_grad():
            backbone.model.encode_image(images[:BATCH])

    return median_step(step, steps, images.device)


def nfl_bench(backbone: Backbone, n_classes: int, steps: int) -> dict:
    """Step times of this project's CoOp and CoOp+NFL at `n_classes` classes (NFL with as many names as
    classes, joint and in two passes, and with 100 names), on cached random image features."""
    device = backbone.device
    gen = torch.Generator().manual_seed(0)
    n_img = (steps + 1) * BATCH
    labels = torch.randint(n_classes, (n_img,), generator=gen).to(device)
    feats = F.normalize(torch.randn(n_img, backbone.embed_dim, generator=gen), dim=-1).to(device)
    ours = PromptLearner(backbone, [f"class number {i}" for i in range(n_classes)], PromptConfig(n_ctx=N_CTX))
    assert ours.shares_prefix(), "the prefix-shared path does not apply to this model"
    # NFL's extra names (METHOD.md section 4): as many as the classes in base-to-novel (the held-out half), 100
    # ImageNet names in few-shot and domain generalisation
    nfl = NovelFeatureLearner(ours, [f"novel class {i}" for i in range(n_classes)], ["a photo of a {}."])
    nfl100 = NovelFeatureLearner(ours, [f"novel class {i}" for i in range(NFL_FEWSHOT)], ["a photo of a {}."])
    return {
        "ours": median_step(training_step(ours, feats, labels, None), steps, device),
        "ours_nfl": median_step(training_step(ours, feats, labels, nfl), steps, device),
        "ours_nfl_two_pass": median_step(two_pass_nfl_step(ours, feats, labels, nfl), steps, device),
        "ours_nfl100": median_step(training_step(ours, feats, labels, nfl100), steps, device),
        "eos": int(ours.class_prompts.eos_idx.max()),
    }


def bench(backbone: Backbone, n_classes: int, steps: int, ref_chunk: int | None = None) -> dict:
    """Step times of the reference, cached+truncated, ours, and ours with NFL at `n_classes` classes."""
    device = backbone.device
    size = backbone.model.visual.image_size
    size = size[0] if isinstance(size, tuple | list) else size
    gen = torch.Generator().manual_seed(0)
    n_img = (steps + 1) * BATCH
    images = torch.randn(n_img, 3, size, size, generator=gen).to(device)
    labels = torch.randint(n_classes, (n_img,), generator=gen).to(device)
    feats = F.normalize(torch.randn(n_img, backbone.embed_dim, generator=gen), dim=-1).to(device)
    names = [f"class number {i}" for i in range(n_classes)]

    def make(share: bool) -> PromptLearner:
        return PromptLearner(backbone, names, PromptConfig(n_ctx=N_CTX), prefix_share=share)

    chunk = ref_chunk if ref_chunk is not None and ref_chunk < n_classes else None
    r = {
        "reference": median_step(reference_step(make(False), images, labels, chunk), steps, device),
        "cached_truncated": median_step(
            training_step(make(False), feats, labels, None) if chunk is None else chunked_text_step(make(False), chunk),
            steps,
            device,
        ),
        **nfl_bench(backbone, n_classes, steps),
        "image_batch": image_batch_time(backbone, images, steps),
    }
    r["steps_per_epoch"] = math.ceil(n_classes * SHOTS / BATCH)
    r["ref_chunk"] = chunk
    return r


def report_nfl(n_classes: int, r: dict) -> None:
    """Print the CoOp+NFL step against the CoOp step in both NFL settings."""
    ms = {k: 1000 * r[k] for k in ("ours", "ours_nfl", "ours_nfl_two_pass", "ours_nfl100")}
    print(
        f"  CoOp+NFL, {n_classes} NFL names (base-to-novel), one joint text pass: {ms['ours_nfl']:.1f} ms/step, "
        f"x{r['ours_nfl'] / r['ours']:.2f} of the CoOp step ({ms['ours']:.1f} ms; two passes: "
        f"{ms['ours_nfl_two_pass']:.1f} ms/step, x{r['ours_nfl_two_pass'] / r['ours']:.2f})"
    )
    print(
        f"  CoOp+NFL, {NFL_FEWSHOT} NFL names (few-shot / domain generalisation), one joint text pass: "
        f"{ms['ours_nfl100']:.1f} ms/step, x{r['ours_nfl100'] / r['ours']:.2f} of the CoOp step"
    )


def report(label: str, n_classes: int, r: dict) -> None:
    """Print one model and class count: per-step times, ratios, per-epoch times and the NFL ratio."""
    ms = {k: 1000 * r[k] for k in ("reference", "cached_truncated", "ours", "image_batch")}
    spe = r["steps_per_epoch"]
    print(
        f"{label}, {n_classes} classes (EOS at {r['eos']}, {spe} steps per epoch of {n_classes * SHOTS} images):"
    )
    how = "" if r["ref_chunk"] is None else f" (text in chunks of {r['ref_chunk']} classes, same work)"
    print(
        f"  reference, image tower every step + 77 tokens + full sequences: {ms['reference']:10.1f} ms/step{how}"
    )
    print(
        f"  cached features + truncated text, full sequences:               {ms['cached_truncated']:10.1f} ms/step "
        f"(reference / this: x{r['reference'] / r['cached_truncated']:.2f})"
    )
    print(
        f"  ours, cached + truncated + prefix-shared:                       {ms['ours']:10.1f} ms/step "
        f"(reference / this: x{r['reference'] / r['ours']:.2f}; "
        f"full sequences / prefix-shared: x{r['cached_truncated'] / r['ours']:.2f})"
    )
    ref_epoch, ours_epoch = spe * r["reference"], spe * r["ours"]
    print(
        f"  per epoch ({spe} steps): reference {ref_epoch:.2f} s, ours {ours_epoch:.2f} s, "
        f"reference / ours x{ref_epoch / ours_epoch:.2f}; ours adds nothing per epoch: the image features are "
        f"cached, computed once per run (~{spe * r['image_batch']:.2f} s for these images, "
        f"{ms['image_batch']:.1f} ms a batch)"
    )
    report_nfl(n_classes, r)


def main() -> None:
    """Run the benchmark for every model and class count and print the ratios."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", default="10,100,1000", help="comma-separated class counts")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per setting (after one warm-up step)")
    ap.add_argument("--models", default="both", choices=["both", *MODELS])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument(
        "--ref-chunk", type=int, default=250, help="classes per text pass of the reference and middle columns above "
        "this count (memory; the work is the same)"
    )
    ap.add_argument(
        "--nfl-only", action="store_true", help="time only CoOp and CoOp+NFL (no reference or middle column)"
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    counts = [int(c) for c in args.classes.split(",") if c.strip()]
    chosen = list(MODELS) if args.models == "both" else [args.models]
    print(
        f"CoOp step: batch {BATCH}, n_ctx {N_CTX}, {SHOTS} shots, device {args.device}, "
        f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}"
    )
    for key in chosen:
        model, pretrained = MODELS[key]
        backbone = load_backbone(model, pretrained, args.device)
        for n in counts:
            if args.nfl_only:
                r = nfl_bench(backbone, n, args.steps)
                print(f"{model} ({pretrained}), {n} classes (EOS at {r['eos']}):")
                report_nfl(n, r)
            else:
                report(f"{model} ({pretrained})", n, bench(backbone, n, args.steps, args.ref_chunk))


if __name__ == "__main__":
    main()
