"""Probe a tiny-CLIP checkpoint on world variants: zero-shot and CoOp per epoch, one line per (variant, seed).

The tool behind docs/embedded.md's record of what was tried to make the miniature faithful. A candidate
checkpoint comes from `subpt build-embedded --out FILE`; the packaged one is the default.

    python benchmarks/world_probe.py --variants '{"default": ["world-objects", {}]}' --seeds 1,2
    python benchmarks/world_probe.py --checkpoint cand.pt --method '{"n_ctx": 16, "ctx_init": null}'
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from subpt.embedded import model as tiny
from subpt.experiments.study import METHOD_SETTING


def main() -> None:
    """Parse the arguments, train CoOp on every variant and seed, print one line each."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=None, help="compact tiny-CLIP file (default: the packaged one)")
    ap.add_argument("--variants", default='{"default": ["world-objects", {}]}', help="JSON {name: [dataset, options]}")
    ap.add_argument("--seeds", default="1", help="comma list of seeds")
    ap.add_argument("--method", default="{}", help="JSON TrainConfig fields over the study's method setting")
    ap.add_argument("--out", type=Path, default=None, help="run folders (default: a temporary folder)")
    args = ap.parse_args()
    if args.checkpoint is not None:
        tiny.CHECKPOINT_PATH = args.checkpoint.resolve()  # read by subpt.backbone at load time
    from subpt.config import TrainConfig
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


if __name__ == "__main__":
    main()
