"""The evaluation protocols of the prompt-learning papers, and the transfer evaluation they share.

- base2novel: train on the base half of each dataset's classes (CoOp's rule); report Base, Novel and
  HM = 2BN/(B+N) of the last epoch.
- fewshot: train on all classes with 1/2/4/8/16 shots; report accuracy on all test classes.
- crossdataset: train on ImageNet (all classes, 16 shots), then evaluate the learned shared context on
  the full test set of each of the 10 other datasets, prompting that dataset's own class names.
- domaingen: the same with ImageNet-V2, -Sketch, -A and -R as targets (-A and -R have their own
  200-class label spaces: their tasks carry those class names, so they are what gets prompted).

`transfer_eval(run_dir, target, root, device)` is that transfer step for one run and one target; its
result is cached in RUN/transfer/<target>.json and reused while the run's final context is unchanged.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradflow.atomic import atomic_write_json
from subpt.errors import SubptError

# CoOp's 11 few-shot datasets (CoOp's order) and the four ImageNet variants.
COOP_11: tuple[str, ...] = (
    "imagenet",
    "caltech101",
    "oxford_pets",
    "stanford_cars",
    "oxford_flowers",
    "food101",
    "fgvc_aircraft",
    "sun397",
    "dtd",
    "eurosat",
    "ucf101",
)
IMAGENET_VARIANTS: tuple[str, ...] = ("imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r")

BASE2NOVEL, FEWSHOT, TRANSFER = "base2novel", "fewshot", "transfer"

# CoOp's training length (CoOp paper, section 4.1): 50 epochs for 1 shot, 100 for 2 and 4 shots, 200 for 8
# and 16 shots, and 50 epochs for ImageNet at every shot count.
COOP_EPOCHS_BY_SHOTS = {1: 50, 2: 100, 4: 100, 8: 200, 16: 200}
COOP_IMAGENET_EPOCHS = 50
# Base-to-novel: 100 epochs, the length the reference SubPT window (t_early 30 of 100) is set for.
BASE2NOVEL_EPOCHS = 100


@dataclass(frozen=True)
class Protocol:
    """Defaults of one evaluation protocol.

    `subsample` is the TrainConfig.subsample of its runs, `shots` the default shot counts, `datasets`
    the default (source) datasets, `targets` the datasets a transfer protocol evaluates on, and
    `nfl_names` the NFL extra names (METHOD.md section 4: the held-out classes for base-to-novel,
    100 ImageNet class names otherwise).
    """

    name: str
    title: str
    kind: str  # BASE2NOVEL, FEWSHOT or TRANSFER
    subsample: str
    shots: tuple[int, ...]
    datasets: tuple[str, ...]
    targets: tuple[str, ...] = ()
    nfl_names: str = "imagenet100"

    @property
    def base_to_novel(self) -> bool:
        """Whether runs train on the base half and report Base / Novel / HM."""
        return self.subsample == "base"

    @property
    def is_transfer(self) -> bool:
        """Whether the learned context is evaluated on other datasets."""
        return self.kind == TRANSFER

    def default_epochs(self, dataset: str, shots: int) -> int:
        """Training epochs when --epochs is not given: CoOp's schedule for few-shot and transfer, 100 for
        base-to-novel."""
        if self.kind == BASE2NOVEL:
            return BASE2NOVEL_EPOCHS
        if dataset == "imagenet":
            return COOP_IMAGENET_EPOCHS
        if shots in COOP_EPOCHS_BY_SHOTS:
            return COOP_EPOCHS_BY_SHOTS[shots]
        nearest = min(COOP_EPOCHS_BY_SHOTS, key=lambda k: (abs(k - shots), k))
        return COOP_EPOCHS_BY_SHOTS[nearest]

    def columns(self, targets: tuple[str, ...] | list[str] = ()) -> list[str]:
        """The result columns of one run: Base/Novel/HM, accuracy, or source + targets."""
        if self.kind == BASE2NOVEL:
            return ["Base", "Novel", "HM"]
        if self.kind == FEWSHOT:
            return ["Accuracy"]
        return ["Source", *targets]


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            "base2novel",
            "Base-to-novel generalisation",
            BASE2NOVEL,
            subsample="base",
            shots=(16,),
            datasets=COOP_11,
            nfl_names="novel",
        ),
        Protocol(
            "fewshot", "Few-shot learning", FEWSHOT, subsample="all", shots=(1, 2, 4, 8, 16), datasets=COOP_11
        ),
        Protocol(
            "crossdataset",
            "Cross-dataset transfer",
            TRANSFER,
            subsample="all",
            shots=(16,),
            datasets=("imagenet",),
            targets=COOP_11[1:],
        ),
        Protocol(
            "domaingen",
            "Domain generalisation",
            TRANSFER,
            subsample="all",
            shots=(16,),
            datasets=("imagenet",),
            targets=IMAGENET_VARIANTS,
        ),
    )
}

# Published averages over the 11 datasets, base-to-novel, ViT-B/16, 16 shots (METHOD.md section 5).
PUBLISHED_SOURCE = "METHOD.md section 5: ViT-B/16, 16 shots, average over CoOp's 11 datasets, as published"
PUBLISHED_BASE2NOVEL: dict[str, tuple[float, float, float]] = {
    "CLIP (zero-shot)": (69.34, 74.22, 71.70),
    "CoOp": (82.69, 63.22, 71.66),
    "CoCoOp": (80.47, 71.69, 75.83),
    "ProGrad": (82.48, 70.75, 76.16),
    "KgCoOp": (80.73, 73.60, 77.00),
    "MaPLe": (82.28, 75.14, 78.55),
    "PromptSRC": (84.26, 76.10, 79.97),
}
# The paper that introduced each method of PUBLISHED_BASE2NOVEL (not necessarily the table the number is from).
PUBLISHED_PAPERS: dict[str, str] = {
    "CLIP (zero-shot)": "Radford et al., ICML 2021",
    "CoOp": "Zhou et al., IJCV 2022",
    "CoCoOp": "Zhou et al., CVPR 2022",
    "ProGrad": "Zhu et al., ICCV 2023",
    "KgCoOp": "Yao et al., CVPR 2023",
    "MaPLe": "Khattak et al., CVPR 2023",
    "PromptSRC": "Khattak et al., ICCV 2023",
}


def get_protocol(name: str) -> Protocol:
    """The protocol `name`; an unknown name is a one-line SubptError listing the known ones."""
    if name not in PROTOCOLS:
        raise SubptError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


# ----------------------------------------------------------------------------------------------------
# Run folders written by the sweep: a zero-shot "run" is config.json (with method "zeroshot") + zeroshot.json.

ZEROSHOT = "zeroshot"  # the sweep's zero-shot method; subpt.runs marks its folders with the same name


def target_build_options(target: str, options: dict | None) -> dict:
    """Dataset options for building a transfer target: the given ones, plus cache=False for CoOp datasets
    (the target's few-shot draw is never used, so nothing is written under the data root)."""
    opts = dict(options or {})
    try:
        from subpt.data.coop_specs import COOP_DATASETS
    except ModuleNotFoundError:  # pragma: no cover - the real-dataset readers are optional
        return opts
    if target in COOP_DATASETS:
        opts.setdefault("cache", False)
    return opts


def _ctx_digest(ctx: Any) -> str:
    return hashlib.sha256(ctx.detach().cpu().float().contiguous().numpy().tobytes()).hexdigest()[:16]


def transfer_path(run_dir: Path, target: str) -> Path:
    """Where the transfer result of `run_dir` on `target` is cached."""
    return Path(run_dir) / "transfer" / f"{target}.json"


def cached_transfer(run_dir: Path, target: str) -> dict | None:
    """The cached transfer result, or None when there is none (no validity check: see transfer_eval)."""
    path = transfer_path(run_dir, target)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def transfer_eval(
    run_dir: str | Path,
    target_dataset: str,
    root: str | Path | None,
    device: str = "cpu",
    options: dict | None = None,
    progress: bool = False,
    use_cache: bool = True,
    save: bool = True,
) -> dict:
    """Accuracy (percent) of a run's final shared context on the full test set of `target_dataset`.

    Rebuilds the run's backbone from config.json, loads its last ctx checkpoint, builds the target task
    (its own class names and template), prompts the target class names with the learned context and
    classifies the target's test images. A zero-shot folder of the sweep is evaluated with zero-shot
    CLIP on the target's own template instead. `root` is the data root of the target (default: the
    run's); `options` are dataset options of the target. The result is cached in
    RUN/transfer/<target>.json and recomputed when the run's final context or the options changed; with
    `use_cache` and `save` false it is computed afresh and nothing is written (`subpt eval`).
    """
    import torch

    from subpt.backbone import load_backbone
    from subpt.data.catalogue import build_task
    from subpt.evaluate import accuracy, classify, prompted_logits, zero_shot_classifier
    from subpt.features import image_features
    from subpt.runs import learner_with_ctx, load_params, read_run_config

    run_dir = Path(run_dir)
    cfg, marker = read_run_config(run_dir)
    root = cfg.root if root is None else str(root)
    opts = dict(options or {})
    if marker == ZEROSHOT:
        ctx, epoch, digest = None, None, ZEROSHOT
    else:
        if cfg.csc:
            raise SubptError(
                f"{run_dir}: a class-specific context (--csc) cannot prompt another dataset's classes; "
                "transfer needs a shared context"
            )
        saved, epoch = load_params(run_dir)  # ctx, and CoCoOp's meta-network
        ctx = saved["ctx"]
        digest = _ctx_digest(torch.cat([saved[k].reshape(-1) for k in sorted(saved)]) if len(saved) > 1 else ctx)
    cached = cached_transfer(run_dir, target_dataset) if use_cache else None
    if cached is not None and cached.get("ctx_digest") == digest and cached.get("options") == opts:
        return cached

    backbone = load_backbone(cfg.model, cfg.pretrained, device, seed=cfg.seed)
    task = build_task(
        target_dataset, root=root, shots=1, seed=cfg.seed, **target_build_options(target_dataset, opts)
    )
    if not task.test:
        raise SubptError(f"target dataset {target_dataset!r} has no test images under {root}")
    feats, labels = image_features(backbone, task, "test", progress=progress)
    scale = backbone.model.logit_scale
    with torch.no_grad():
        if ctx is None:
            logits = classify(feats, zero_shot_classifier(backbone, task.classnames, [task.template]), scale)
        else:
            learner = learner_with_ctx(backbone, task.classnames, cfg, ctx, str(run_dir), extra=saved)
            logits = prompted_logits(learner, feats, learner.prompts_for(task.classnames), cfg.text_chunk)
        acc = accuracy(logits, labels)
    result = {
        "run": str(run_dir),
        "method": ZEROSHOT if ctx is None else cfg.method,
        "source": cfg.dataset,
        "target": target_dataset,
        "acc": acc,
        "n_test": int(labels.numel()),
        "n_classes": task.num_classes,
        "template": task.template,
        "epoch": epoch,
        "ctx_digest": digest,
        "options": opts,
        "model": cfg.model,
        "pretrained": cfg.pretrained,
    }
    if save:
        atomic_write_json(
            transfer_path(run_dir, target_dataset), result, mkdir=True, indent=2, sort_keys=True
        )
    return result
