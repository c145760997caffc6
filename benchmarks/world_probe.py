"""Probe a tiny-CLIP checkpoint on world variants: zero-shot and CoOp per epoch, one line per (variant, seed).

The tool behind docs/embedded.md's record of what was tried to make the miniature faithful. A candidate
checkpoint comes from `subpt build-embedded --out FILE`; the packaged one is the default.

    python benchmarks/world_probe.py --variants '{"default": ["world-objects", {}]}' --seeds 1,2
    python benchmarks/world_probe.py --checkpoint cand.pt --method '{"n_ctx": 16, "ctx_init": null}'
    python benchmarks/world_probe.py --capacity     # also: how much of the 16 shots could be memorised

`--capacity` adds two measures of room to overfit, per (variant, seed): a logistic-regression probe on the
frozen image features of the base training set (train and test accuracy at C = 1, 100, 10^4: what a free linear
classifier can memorise), and the Jacobian of the base classes' text features with respect to the shared
context at its initialisation (its effective rank after removing the part common to all classes: in how many
directions a shared prompt can move the classes apart; and the class-specific share of its energy), and the
effective ranks of the name features of all the world's kinds and of the base test images' features.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from subpt.config import TrainConfig
from subpt.embedded import model as tiny
from subpt.experiments.study import METHOD_SETTING


def probe_ceiling(train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor]) -> str:
    """Train / test accuracy of logistic regression on normalised frozen features, for C = 1, 100 and 10^4."""
    from sklearn.linear_model import LogisticRegression

    def unit(x: torch.Tensor) -> np.ndarray:
        return torch.nn.functional.normalize(x.float(), dim=-1).numpy()

    x, y, xt, yt = unit(train[0]), train[1].numpy(), unit(test[0]), test[1].numpy()
    parts = []
    for c in (1.0, 100.0, 1e4):
        clf = LogisticRegression(C=c, max_iter=5000).fit(x, y)
        parts.append(f"C={c:g} {100 * clf.score(x, y):.1f}/{100 * clf.score(xt, yt):.1f}")
    return "probe train/test " + ", ".join(parts)


def effective_rank(rows: torch.Tensor) -> float:
    """exp(entropy) of the normalised squared singular values of the centred rows."""
    rows = rows.float() - rows.float().mean(0)
    s2 = torch.linalg.svdvals(rows) ** 2
    p = s2 / s2.sum()
    return float(torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum()))


def joint_space(backbone: object, images: torch.Tensor) -> str:
    """Effective ranks of every world kind's name feature ("a photo of a NAME.") and of the given image features."""
    from subpt.embedded import world
    from subpt.prompts import encode_tokens

    all_names = [k.name for k in world.OBJECT_KINDS]
    with torch.no_grad():
        text = encode_tokens(backbone.model, backbone.tokenizer([f"a photo of a {n}." for n in all_names]))  # type: ignore[attr-defined]
    unit = torch.nn.functional.normalize
    return (f"effective rank of the {len(all_names)} kinds' name features {effective_rank(unit(text, dim=-1)):.1f}, "
            f"of the base test images' features {effective_rank(unit(images.float(), dim=-1)):.1f}")


def prompt_jacobian(learner: torch.nn.Module) -> str:
    """Effective rank and class-specific energy share of d(text features)/d(ctx) at the learner's context."""
    ctx = learner.ctx.detach().clone()
    del learner.ctx  # a plain tensor in its place, so the features are a function of it

    def features(c: torch.Tensor) -> torch.Tensor:
        learner.ctx = c
        return learner.text_features()

    jac = torch.autograd.functional.jacobian(features, ctx, vectorize=True)  # (classes, dim, *ctx.shape)
    jac = jac.reshape(jac.shape[0], jac.shape[1], -1)
    specific = jac - jac.mean(0, keepdim=True)
    s2 = torch.linalg.svdvals(specific.reshape(-1, specific.shape[-1])) ** 2
    p = s2 / s2.sum()
    rank = float(torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum()))  # rows already centred across classes
    return f"prompt Jacobian effective rank {rank:.1f}, class-specific share {float((specific**2).sum() / (jac**2).sum()):.2f}"


def capacity(cfg: TrainConfig) -> str:
    """Both capacity measures for one run's configuration."""
    from subpt.backbone import load_backbone
    from subpt.prompts import PromptLearner
    from subpt.splits import prepare_data

    backbone = load_backbone(cfg.model, cfg.pretrained)
    splits = prepare_data(cfg, backbone, progress=False)
    learner = PromptLearner(backbone, splits.base.classnames, cfg.prompt_config(), seed=cfg.seed)
    space = joint_space(backbone, splits.base_test[0])
    return f"{probe_ceiling(splits.train, splits.base_test)}; {prompt_jacobian(learner)}; {space}"


def main() -> None:
    """Parse the arguments, train CoOp on every variant and seed, print one line each."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=None, help="compact tiny-CLIP file (default: the packaged one)")
    ap.add_argument("--variants", default='{"default": ["world-objects", {}]}', help="JSON {name: [dataset, options]}")
    ap.add_argument("--seeds", default="1", help="comma list of seeds")
    ap.add_argument("--method", default="{}", help="JSON TrainConfig fields over the study's method setting")
    ap.add_argument("--out", type=Path, default=None, help="run folders (default: a temporary folder)")
    ap.add_argument("--capacity", action="store_true", help="also print the memorisation ceiling and prompt Jacobian")
    args = ap.parse_args()
    if args.checkpoint is not None:
        tiny.CHECKPOINT_PATH = args.checkpoint.resolve()  # read by subpt.backbone at load time
    from subpt.train import train

    out = args.out or Path(tempfile.mkdtemp(prefix="world-probe-"))
    for name, (dataset, options) in json.loads(args.variants).items():
        for seed in (int(s) for s in args.seeds.split(",")):
            setting = {**METHOD_SETTING, **json.loads(args.method)}
            cfg = TrainConfig(dataset=dataset, dataset_options=options, seed=seed, **setting)
            run = out / name / f"seed{seed}"
            t0 = time.time()
            ms = train(cfg, run, overwrite=True, progress=False)
            zs = json.loads((run / "zeroshot.json").read_text())
            base = [m["base_acc"] for m in ms]
            novel = [m["novel_acc"] for m in ms]
            peak = max(range(len(base)), key=base.__getitem__)
            print(f"{name:16s} seed {seed}  zero-shot {zs['base_acc']:5.1f} / {zs['novel_acc']:5.1f}  "
                  f"CoOp final {base[-1]:5.1f} / {novel[-1]:5.1f}  train {ms[-1]['train_acc']:5.1f}  "
                  f"base peak {base[peak]:5.1f} (epoch {peak + 1})  novel peak {max(novel):5.1f}  "
                  f"novel - zero-shot {novel[-1] - zs['novel_acc']:+5.1f}  ({time.time() - t0:.0f} s)", flush=True)
            if args.capacity:
                print(f"{'':16s}         {capacity(cfg)}", flush=True)


if __name__ == "__main__":
    main()
