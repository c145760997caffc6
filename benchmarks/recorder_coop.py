"""Recorder overhead on the embedded CoOp run: seconds per CoOp step with and without GradientRecorder.

Uses gradflow_bench.measure_recorder_overhead with a real CoOp step of the embedded tiny CLIP
(32 base classes, batch 32, n_ctx 16, cached image features). Usage: python benchmarks/recorder_coop.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from gradflow_bench import measure_recorder_overhead  # noqa: E402

from subpt.backbone import load_backbone  # noqa: E402
from subpt.config import PromptConfig  # noqa: E402
from subpt.evaluate import classify  # noqa: E402
from subpt.prompts import PromptLearner  # noqa: E402


def main() -> None:
    """Measure and print the per-step overhead ratio."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    bb = load_backbone()
    gen = torch.Generator().manual_seed(0)
    feats = F.normalize(torch.randn(512, bb.embed_dim, generator=gen), dim=-1)
    labels = torch.randint(32, (512,), generator=gen)
    learner = PromptLearner(bb, [f"class {i}" for i in range(32)], PromptConfig(n_ctx=16))
    opt = torch.optim.SGD([learner.ctx], lr=0.002, momentum=0.9)
    scale = bb.model.logit_scale

    def step(s: int) -> None:
        idx = torch.arange(s * 32, (s + 1) * 32) % 512
        opt.zero_grad()
        F.cross_entropy(classify(feats[idx], learner.text_features(), scale), labels[idx]).backward()
        opt.step()

    r = measure_recorder_overhead(step, [("ctx", learner.ctx)], args.steps, rounds=args.rounds)
    print(f"embedded CoOp step (D={learner.ctx.numel()}): " + ", ".join(f"{k} {v:.4g}" for k, v in r.items()))


if __name__ == "__main__":
    main()
