"""Accuracy, Base/Novel/HM, and zero-shot classifiers from prompt templates."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from subpt.backbone import Backbone
from subpt.prompts import ClassPrompts, PromptLearner, encode_tokens

if TYPE_CHECKING:
    from subpt.splits import Splits


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent."""
    if labels.numel() == 0:
        return float("nan")
    return 100.0 * (logits.argmax(dim=-1) == labels).float().mean().item()


def harmonic_mean(base: float, novel: float) -> float:
    """HM = 2BN / (B + N); nan when either is missing."""
    if base is None or novel is None or math.isnan(base) or math.isnan(novel) or base + novel == 0:
        return float("nan")
    return 2 * base * novel / (base + novel)


def classify(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Logits of normalised image features against normalised class text features."""
    return logit_scale.exp().float() * image_features.float() @ text_features.float().t()


@torch.no_grad()
def zero_shot_classifier(
    backbone: Backbone, classnames: Sequence[str], templates: Sequence[str], chunk_size: int = 256
) -> torch.Tensor:
    """Normalised class text features averaged over templates (a template ensemble when several)."""
    model = backbone.model
    out = []
    for start in range(0, len(classnames), chunk_size):
        names = [c.replace("_", " ") for c in classnames[start : start + chunk_size]]
        per_template = []
        for t in templates:
            tokens = backbone.tokenizer([t.format(n) for n in names]).to(backbone.device)
            per_template.append(F.normalize(encode_tokens(model, tokens).float(), dim=-1))
        mean = torch.stack(per_template).mean(dim=0)
        out.append(F.normalize(mean, dim=-1))
    return torch.cat(out)


@torch.no_grad()
def prompted_logits(learner: PromptLearner, images: torch.Tensor, prompts: ClassPrompts | None = None,
                    chunk: int | None = None) -> torch.Tensor:
    """Logits of test images against the learner's prompted classes (default: its training classes): one set of
    class text features for all images, or per-image ones for a conditional learner (CoCoOp), in batched passes."""
    if learner.conditional:
        return learner.per_image_logits(images, prompts, chunk)
    return classify(images, learner.text_features(prompts, chunk_size=chunk), learner.backbone.model.logit_scale)


@torch.no_grad()
def evaluate_run(learner: PromptLearner, splits: Splits, chunk: int | None = None) -> dict:
    """Base and novel test accuracy (percent) and their HM with the current context (and meta-network)."""
    base_acc = accuracy(prompted_logits(learner, splits.base_test[0], chunk=chunk), splits.base_test[1])
    novel_acc = float("nan")
    if splits.novel_test is not None and learner.ctx.dim() == 2:
        prompts = learner.prompts_for(splits.novel.classnames)
        novel_acc = accuracy(prompted_logits(learner, splits.novel_test[0], prompts, chunk), splits.novel_test[1])
    return {"base_acc": base_acc, "novel_acc": novel_acc, "hm": harmonic_mean(base_acc, novel_acc)}


@torch.no_grad()
def zero_shot_metrics(backbone: Backbone, splits: Splits, templates: list[str]) -> dict:
    """Zero-shot CLIP accuracy on the run's base and novel test sets."""
    scale = backbone.model.logit_scale
    base = accuracy(
        classify(splits.base_test[0], zero_shot_classifier(backbone, splits.base.classnames, templates), scale),
        splits.base_test[1],
    )
    novel = float("nan")
    if splits.novel_test is not None:
        w = zero_shot_classifier(backbone, splits.novel.classnames, templates)
        novel = accuracy(classify(splits.novel_test[0], w, scale), splits.novel_test[1])
    return {"base_acc": base, "novel_acc": novel, "hm": harmonic_mean(base, novel), "templates": templates}
