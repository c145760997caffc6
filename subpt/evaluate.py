"""Accuracy, Base/Novel/HM, and zero-shot classifiers from prompt templates."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from subpt.backbone import Backbone
from subpt.prompts import encode_tokens


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
