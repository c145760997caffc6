"""Text resources: CLIP's 80 ImageNet prompt templates and a fixed list of 100 ImageNet class names."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).parent


def _lines(name: str) -> list[str]:
    return [ln.strip() for ln in (_HERE / name).read_text().splitlines() if ln.strip()]


def imagenet_templates() -> list[str]:
    """The 80 ImageNet prompt templates of CLIP's zero-shot evaluation."""
    return _lines("imagenet_templates.txt")


def imagenet100_classnames() -> list[str]:
    """100 ImageNet-1k class names spread over animals, objects and scenes (NFL's few-shot/DG name list)."""
    return _lines("imagenet100_classnames.txt")
