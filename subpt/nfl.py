"""Novel Feature Learner: a text-only regulariser that keeps prompted features of extra class names
close to zero-shot CLIP's template-ensemble features. It never uses an image of those classes.

loss = CE(base images) + lambda * mean_i (1 - cos(student_i, teacher_i))
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch

from gradflow.atomic import atomic_torch_save
from subpt.backbone import Backbone
from subpt.data.base import TaskData, novel_only_names
from subpt.errors import SubptError
from subpt.evaluate import zero_shot_classifier
from subpt.features import cache_dir
from subpt.prompts import PromptLearner
from subpt.resources import imagenet100_classnames, imagenet_templates


def resolve_names(source: str, task: TaskData) -> list[str]:
    """Extra class names: 'novel' (the task's held-out classes), 'imagenet100', or a text file of names."""
    if source == "novel":
        return novel_only_names(task)
    if source == "imagenet100":
        return imagenet100_classnames()
    path = Path(source)
    if not path.is_file():
        raise SubptError(f"--nfl-names {source}: not 'novel', 'imagenet100' or an existing text file of class names")
    names = [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    if not names:
        raise SubptError(f"--nfl-names {source}: the file has no class names (one per line)")
    return names


def teacher_templates(task: TaskData) -> list[str]:
    """NFL's teacher ensemble: CLIP's 80 ImageNet templates (or the task's own teacher templates, as the
    embedded world has) plus the task's template."""
    base = list(task.teacher_templates) if task.teacher_templates else imagenet_templates()
    return base + ([task.template] if task.template not in base else [])


def teacher_features(backbone: Backbone, names: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """Zero-shot template-ensemble features of `names`, computed once and cached on disk."""
    h = hashlib.sha256("\n".join([backbone.model_name, backbone.weights_id, *templates, "||", *names]).encode())
    path = cache_dir() / "nfl" / f"teacher-{h.hexdigest()[:24]}.pt"
    if path.is_file():
        try:
            return torch.load(path, map_location="cpu", weights_only=True).to(backbone.device)
        except Exception:
            path.unlink(missing_ok=True)
    feats = zero_shot_classifier(backbone, names, templates).cpu()
    atomic_torch_save(feats, path, mkdir=True)
    return feats.to(backbone.device)


class NovelFeatureLearner:
    """Holds the extra names' prompts and teacher features; `loss(learner)` is the NFL term (before lambda)."""

    def __init__(self, learner: PromptLearner, names: Sequence[str], templates: Sequence[str]):
        if learner.ctx.dim() != 2:
            raise SubptError("NFL needs a shared context; it cannot be used with class-specific context (--csc)")
        self.names = list(names)
        self.prompts = learner.prompts_for(self.names)
        self.teacher = teacher_features(learner.backbone, self.names, templates)

    def loss_from_features(self, student: torch.Tensor) -> torch.Tensor:
        """mean_i (1 - cos(student_i, teacher_i)) for normalised student features of the extra names."""
        return (1.0 - (student * self.teacher).sum(dim=-1)).mean()

    def loss(self, learner: PromptLearner, chunk_size: int | None = None) -> torch.Tensor:
        """The NFL term for the learner's current context."""
        return self.loss_from_features(learner.text_features(self.prompts, chunk_size=chunk_size))
