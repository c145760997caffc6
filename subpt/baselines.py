"""The field's baselines as methods of `subpt train --method`: KgCoOp's loss term and ProGrad's gradient rule.

Both keep CoOp's learnable context and its evaluation; what they add is used only while training.
- KgCoOp (Yao et al., CVPR 2023): loss = CE + lambda * mean_i ||w_i - w_i^clip||^2, with w_i the normalised text
  feature of class i's learned prompt and w_i^clip that of its hand-crafted prompt (the task's template).
- ProGrad (Zhu et al., ICCV 2023): g_ce is the CE gradient, g_kl the gradient of KL(p_zs || p), p_zs zero-shot CLIP's
  predictions with the hand-crafted prompts and p the prompted ones (temperature 1). Where g_ce . g_kl < 0 the applied
  gradient is g_ce - lambda (g_ce . g_kl) / ||g_kl||^2 g_kl, elsewhere g_ce.
The trainer (`subpt.train`) adds the KgCoOp term to the loss of every pass, and applies the ProGrad rule to the
all-reduced gradients, before weight decay, recording and the SubPT projection (docs/baselines.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from subpt.config import TrainConfig
from subpt.evaluate import zero_shot_classifier
from subpt.prompts import PromptLearner


def hand_crafted_features(learner: PromptLearner, template: str) -> torch.Tensor:
    """Normalised zero-shot text features of the learner's classes with the hand-crafted prompt `template`."""
    return zero_shot_classifier(learner.backbone, learner.classnames, [template]).float()


class KgCoOpTerm:
    """KgCoOp's knowledge-guided term for the learner's classes; `loss_from_features` is the term before lambda."""

    def __init__(self, learner: PromptLearner, template: str):
        self.clip = hand_crafted_features(learner, template)

    def loss_from_features(self, text: torch.Tensor) -> torch.Tensor:
        """mean_i ||text_i - clip_i||^2 for the normalised text features of the learned prompts of all classes."""
        return (text.float() - self.clip).pow(2).sum(dim=-1).mean()


def kl_from_zero_shot(logits: torch.Tensor, teacher_logits: torch.Tensor, batch_total: int) -> torch.Tensor:
    """Summed KL(softmax(teacher_logits) || softmax(logits)) over the given images, divided by the full batch size."""
    p = F.softmax(teacher_logits.float(), dim=-1)
    kl = p * (F.log_softmax(teacher_logits.float(), dim=-1) - F.log_softmax(logits.float(), dim=-1))
    return kl.sum() / batch_total


def prograd_gradient(g_ce: torch.Tensor, g_kl: torch.Tensor, lam: float) -> torch.Tensor:
    """ProGrad's applied gradient: g_ce where it agrees with g_kl (or g_kl is 0), else g_ce less lambda times its
    component along g_kl (lambda 1: the projection orthogonal to g_kl). Computed flat in fp32, shape of g_ce."""
    g = g_ce.reshape(-1).float()
    k = g_kl.reshape(-1).float()
    dot, norm2 = g @ k, k @ k
    if not bool(norm2 > 0) or not bool(dot < 0):
        return g_ce.float()
    return (g - lam * (dot / norm2) * k).reshape(g_ce.shape)


class ProGradRule:
    """ProGrad's zero-shot teacher for the learner's classes and its weight lambda."""

    def __init__(self, learner: PromptLearner, template: str, lam: float):
        self.zero_shot = hand_crafted_features(learner, template)
        self.lam = float(lam)

    def apply(self, g_ce: torch.Tensor, g_kl: torch.Tensor) -> torch.Tensor:
        """The gradient to apply for the all-reduced CE and KL gradients of one step."""
        return prograd_gradient(g_ce, g_kl, self.lam)


def method_terms(
    cfg: TrainConfig, learner: PromptLearner, template: str
) -> tuple[KgCoOpTerm | None, ProGradRule | None]:
    """What `cfg.prompt_method` adds to CoOp's training: (KgCoOp term or None, ProGrad rule or None)."""
    if cfg.prompt_method == "kgcoop":
        return KgCoOpTerm(learner, template), None
    if cfg.prompt_method == "prograd":
        return None, ProGradRule(learner, template, cfg.method_weight)
    return None, None
