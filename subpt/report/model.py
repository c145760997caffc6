"""Model-dependent part of the interpretability report: the learned context decoded into words, per-class
gains and losses against zero-shot, and the reliance on the embedded world's spurious cue.

These need the run's CLIP (config.json names it) and its image features (cached by subpt.features).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gradflow.errors import GradflowError
from gradflow.trajectory import TrajectoryStore
from subpt.backbone import Backbone, load_backbone
from subpt.config import TrainConfig
from subpt.errors import SubptError
from subpt.evaluate import accuracy, classify, prompted_logits, zero_shot_classifier
from subpt.features import image_features
from subpt.prompts import ClassPrompts
from subpt.report.options import METRICS
from subpt.runs import CTX_NAME, ckpt_path, learner_with_ctx, load_ctx, saved_ctx_epochs
from subpt.splits import Splits, prepare_data

CUE_SPLITS = ("test_cue_fixed", "test_cue_flipped")
SPLIT_LABELS = {
    "test": "test (as in training)",
    "test_cue_fixed": "cue absent (neutral)",
    "test_cue_flipped": "cue flipped",
}


class Backbones:
    """Backbones loaded once per (model, weights) for all runs of a report (random weights: per seed)."""

    def __init__(self, device: str = "cpu"):
        self.device = device
        self._cache: dict[tuple[str, str, int | None], Backbone] = {}

    def get(self, cfg: TrainConfig) -> Backbone:
        """The frozen CLIP the run was trained with."""
        key = (cfg.model, cfg.pretrained, cfg.seed if cfg.pretrained == "random" else None)
        if key not in self._cache:
            self._cache[key] = load_backbone(cfg.model, cfg.pretrained, self.device, seed=cfg.seed)
        return self._cache[key]


def context_at(run_dir: Path, epoch: int, store: TrajectoryStore | None) -> tuple[torch.Tensor, str]:
    """The context after `epoch` (0 = initialisation): from ckpt/ctx_EEE.pt, else from the trajectory snapshots.

    Returns the tensor and where it came from.
    """
    ckpt = ckpt_path(run_dir, epoch)
    if epoch >= 1 and ckpt.is_file():
        ctx, _ = load_ctx(run_dir, epoch)
        return ctx.float(), f"ckpt/{ckpt.name}"
    if store is not None:
        try:
            sc = store.scalars("snapshots", epochs=(epoch, epoch))
            if sc["step"].size:
                row = store.rows("snapshots", epochs=(epoch, epoch))[-1]
                shape = next((p["shape"] for p in store.params if p["name"] == CTX_NAME), None)
                if shape is not None:  # ctx's columns of the row (CoCoOp records its meta-network beside it)
                    ctx = torch.from_numpy(row[store.param_slices()[CTX_NAME]].copy()).reshape(shape)
                    return ctx, f"trajectory snapshot of epoch {epoch}"
        except GradflowError as e:
            raise SubptError(f"{ckpt} is missing and the snapshot of epoch {epoch} is unreadable: {e}") from e
    raise SubptError(f"{ckpt} is missing and the trajectory holds no ctx snapshot of epoch {epoch}")


def saved_epochs(run_dir: Path, store: TrajectoryStore | None) -> list[int]:
    """Epochs whose context can be read: checkpoints and (when readable) trajectory snapshots."""
    eps = saved_ctx_epochs(run_dir)
    if store is not None:
        try:
            eps |= {int(e) for e in np.unique(store.scalars("snapshots")["epoch"])}
        except GradflowError:
            pass
    return sorted(eps)


# ---------------------------------------------------------------------------------------------- decoding
def _token_text(tokenizer, ids: list[int]) -> list[str]:
    """Readable text of single vocabulary ids; a trailing '-' marks a word piece (no end-of-word mark)."""
    dec = getattr(tokenizer, "decoder", None)
    if isinstance(dec, dict) and hasattr(tokenizer, "decode"):
        out = []
        for i in ids:
            raw = dec.get(int(i), "")
            text = tokenizer.decode([int(i)]).strip()
            if not text or "\ufffd" in text:  # a byte piece that is no character on its own
                text = f"[bytes {raw.removesuffix('</w>')}]"
            out.append(text if raw.endswith("</w>") or raw.startswith("<") else f"{text}-")
        return out
    inner = getattr(tokenizer, "tokenizer", None)
    if inner is not None and hasattr(inner, "convert_ids_to_tokens"):
        return [str(t) for t in inner.convert_ids_to_tokens([int(i) for i in ids])]
    return [f"#{int(i)}" for i in ids]


@torch.no_grad()
def decode_context(backbone: Backbone, ctx: torch.Tensor, topk: int = 5, metric: str = "cosine") -> dict:
    """Nearest rows of the token embedding to each context vector (CoOp's interpretation of a prompt).

    Returns {"tokens": [[(text, id, score), ...] per vector], "norms": [...], "token_norm_median": x}; the
    score is the cosine similarity (metric 'cosine') or the euclidean distance ('euclidean').
    """
    if metric not in METRICS:
        raise SubptError(f"--metric must be one of {', '.join(METRICS)}, got {metric!r}")
    emb = backbone.model.token_embedding.weight.detach().float().cpu()
    vecs = ctx.detach().float().cpu().reshape(-1, emb.shape[1])
    k = max(1, min(int(topk), emb.shape[0]))
    if metric == "cosine":
        scores = F.normalize(vecs, dim=-1) @ F.normalize(emb, dim=-1).t()
        vals, idx = scores.topk(k, dim=-1)
    else:
        dist = torch.cdist(vecs, emb)
        vals, idx = dist.topk(k, dim=-1, largest=False)
    rows = []
    for v, i in zip(vals.tolist(), idx.tolist()):
        texts = _token_text(backbone.tokenizer, i)
        rows.append([(t, int(j), float(s)) for t, j, s in zip(texts, i, v)])
    return {
        "tokens": rows,
        "norms": vecs.norm(dim=-1).tolist(),
        "token_norm_median": float(emb.norm(dim=-1).median()),
        "metric": metric,
    }


# ---------------------------------------------------------------------------------------------- classes and cue
@dataclass
class ClassResult:
    """Per-class accuracy (percent) of zero-shot and of the context on one group of classes."""

    group: str  # "base", "novel" or "all"
    classes: list[str]
    zero_shot: list[float]
    final: list[float]
    counts: list[int]
    zero_shot_acc: float
    final_acc: float

    def to_json(self) -> dict:
        """Plain JSON values."""
        return {
            "group": self.group,
            "classes": self.classes,
            "zero_shot": self.zero_shot,
            "final": self.final,
            "delta": [f - z for f, z in zip(self.final, self.zero_shot)],
            "counts": self.counts,
            "zero_shot_acc": self.zero_shot_acc,
            "final_acc": self.final_acc,
        }


@dataclass
class ClassAnalysis:
    """Per-class results of one context against zero-shot, and the cue test when the task has one."""

    epoch: int
    ctx_source: str
    template: str
    groups: list[ClassResult] = field(default_factory=list)
    cue: dict | None = None  # {group: {"zero-shot": {split: acc}, "context": {split: acc}}}
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        """Plain JSON values."""
        return {
            "epoch": self.epoch,
            "ctx_source": self.ctx_source,
            "template": self.template,
            "groups": {g.group: g.to_json() for g in self.groups},
            "cue": self.cue,
            "notes": self.notes,
        }


def _per_class(logits: torch.Tensor, labels: torch.Tensor, n_cls: int) -> tuple[list[float], list[int]]:
    pred = logits.argmax(dim=-1).cpu()
    lab = labels.cpu()
    counts = torch.bincount(lab, minlength=n_cls)
    hits = torch.bincount(lab[pred == lab], minlength=n_cls)
    acc = torch.where(
        counts > 0,
        100.0 * hits.double() / counts.clamp(min=1).double(),
        torch.full_like(hits, float("nan"), dtype=torch.double),
    )
    return acc.tolist(), counts.tolist()


@torch.no_grad()
def analyse_classes(
    backbone: Backbone,
    cfg: TrainConfig,
    ctx: torch.Tensor,
    epoch: int,
    ctx_source: str,
    progress: bool = False,
    splits: Splits | None = None,
    extra: dict[str, torch.Tensor] | None = None,
) -> ClassAnalysis:
    """Per-class accuracy of `ctx` and of zero-shot (the dataset's template) on the base and novel test
    classes, and, when the task has the cue splits, accuracy with the cue absent and flipped. `extra`: the run's
    other saved parameters (CoCoOp's meta-network, from `subpt.runs.load_params`)."""
    splits = splits or prepare_data(cfg, backbone, progress=progress, augment=False)
    learner = learner_with_ctx(backbone, splits.base.classnames, cfg, ctx, f"epoch {epoch}", extra=extra)
    scale = backbone.model.logit_scale
    template = splits.task.template
    out = ClassAnalysis(epoch=epoch, ctx_source=ctx_source, template=template)
    groups = [("base" if cfg.subsample == "base" else "all", splits.base, splits.base_test)]
    if splits.novel is not None:
        if learner.ctx.dim() == 2:
            groups.append(("novel", splits.novel, splits.novel_test))
        else:
            out.notes.append(
                "class-specific context (--csc) cannot prompt novel classes: novel classes left out"
            )
    weights: dict[str, tuple[ClassPrompts, torch.Tensor]] = {}
    for name, task, (feats, labels) in groups:
        prompts = learner.prompts_for(task.classnames)
        zs = zero_shot_classifier(backbone, task.classnames, [template])
        weights[name] = (prompts, zs)
        n = len(task.classnames)
        lc, lz = prompted_logits(learner, feats, prompts, cfg.text_chunk), classify(feats, zs, scale)
        acc_c, counts = _per_class(lc, labels, n)
        acc_z, _ = _per_class(lz, labels, n)
        out.groups.append(
            ClassResult(
                name,
                [c.replace("_", " ") for c in task.classnames],
                acc_z,
                acc_c,
                counts,
                accuracy(lz, labels),
                accuracy(lc, labels),
            )
        )
    extra = [s for s in CUE_SPLITS if s in splits.task.test_splits]
    if "test_cue_flipped" in extra:
        cue: dict = {}
        for name, task, test in groups:
            prompts, zs = weights[name]
            rows: dict[str, dict[str, float]] = {"zero-shot": {}, "context": {}, "n": {}}
            for split in ("test", *extra):
                feats, labels = (
                    test if split == "test" else image_features(backbone, task, split, progress=progress)
                )
                rows["zero-shot"][split] = accuracy(classify(feats, zs, scale), labels)
                rows["context"][split] = accuracy(prompted_logits(learner, feats, prompts, cfg.text_chunk), labels)
                rows["n"][split] = int(labels.numel())
            cue[name] = rows
        out.cue = cue
    return out
