"""Peak memory of one CoOp training step with many classes: all prompts at once vs encoded in chunks.

Each setting runs in a fresh subprocess and reports its peak resident memory (ru_maxrss) above the
memory after model loading, so the numbers are comparable. The chunked path differentiates the loss with
respect to the text features first and then backpropagates chunk by chunk (the same gradient).
Usage: python benchmarks/memory_classes.py [--model ViT-B-16] [--classes 1000] [--chunk 100]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def one_step(model: str, n_classes: int, chunk: int | None) -> dict:
    """Run one training step in this process; return peak RSS growth (MiB) and seconds."""
    import torch
    import torch.nn.functional as F

    from subpt.backbone import load_backbone
    from subpt.config import PromptConfig, TrainConfig
    from subpt.prompts import PromptLearner
    from subpt.train import backward_step

    torch.manual_seed(0)  # the same random weights in every subprocess, so the gradients can be compared
    bb = load_backbone(model, "random")
    learner = PromptLearner(bb, [f"class number {i}" for i in range(n_classes)], PromptConfig(n_ctx=16))
    gen = torch.Generator().manual_seed(0)
    x = F.normalize(torch.randn(32, bb.embed_dim, generator=gen), dim=-1)
    y = torch.randint(n_classes, (32,), generator=gen)
    cfg = TrainConfig(text_chunk=chunk)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    backward_step(learner, x, y, 32, None, cfg, scaler)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"model": model, "classes": n_classes, "chunk": chunk, "peak_growth_mib": (peak - base) / 1024,
            "seconds": seconds, "grad_norm": float(learner.ctx.grad.norm())}


def main() -> None:
    """Run both settings in subprocesses and print peak memory and the ratio."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="ViT-B-16")
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--chunk", type=int, default=100)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        chunk = None if args.child == "none" else int(args.child)
        print(json.dumps(one_step(args.model, args.classes, chunk)))
        return
    results = []
    for chunk in ("none", str(args.chunk)):
        out = subprocess.run([sys.executable, __file__, "--model", args.model, "--classes", str(args.classes),
                              "--child", chunk], capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    full, chunked = results
    for r in results:
        label = "all prompts at once" if r["chunk"] is None else f"chunks of {r['chunk']}"
        print(f"{r['model']}, {r['classes']} classes, {label}: peak +{r['peak_growth_mib']:.0f} MiB, "
              f"{r['seconds']:.1f} s, |grad| {r['grad_norm']:.6g}")
    print(f"peak memory ratio (all at once / chunked): {full['peak_growth_mib'] / chunked['peak_growth_mib']:.1f}x; "
          f"gradient norms agree to {abs(full['grad_norm'] - chunked['grad_norm']) / full['grad_norm']:.1e} relative")


if __name__ == "__main__":
    main()
