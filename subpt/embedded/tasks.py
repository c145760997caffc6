"""Downstream few-shot tasks of the embedded world, registered as datasets.

`world-color-shape`: 64 classes such as "red triangle" (8 colours x 8 shapes). Labels are ordered so that
CoOp's base/novel rule (first half base) gives every colour and every shape in both halves. An optional
spurious cue is tied to the label in the few-shot train and validation sets only:
- `background`: each class is drawn on its own background (class index mod 6);
- `mark`: a 4x4 corner mark whose colour is tied to the class;
`cue_strength` is the share of training images that carry the tied cue. Test images never carry it.
Extra test splits: `test_cue_flipped` (every image shows the cue of a different class) and, for the
background cue, `test_cue_fixed` (every image on one neutral background, the first one).
`world-color-shape-36` is the 6 x 6 variant.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from subpt.data.base import Item, TaskData
from subpt.data.registry import register_dataset
from subpt.data.sampling import validation_shots
from subpt.embedded import world
from subpt.errors import SubptError

CUES = ("none", "background", "mark")
TEST_PER_CLASS = 50
# Pixel noise of downstream images; the default equals pretraining's. A larger value adds a domain shift,
# which CoOp learns to undo for base and novel classes alike (see docs/embedded.md).
DOWNSTREAM_NOISE = world.NOISE_STD
WORLD_TEMPLATES = list(world.CAPTION_TEMPLATES)  # the captions' templates are the world's prompt ensemble


def class_order(n_colors: int, n_shapes: int) -> list[tuple[int, int]]:
    """(colour, shape) of each label: checkerboard order, so both halves cover every colour and shape."""
    cells = [(c, s) for c in range(n_colors) for s in range(n_shapes)]
    return [cs for cs in cells if (cs[0] + cs[1]) % 2 == 0] + [cs for cs in cells if (cs[0] + cs[1]) % 2 == 1]


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "little")


def _split(
    classes: list[tuple[int, int]], per_class: int, seed: int, split: str, cue: str, cue_strength: float, noise: float
) -> list[Item]:
    rng = np.random.default_rng(_seed("world", split, seed, per_class, cue, cue_strength, len(classes), noise))
    n_bg = len(world.BACKGROUNDS)
    items = []
    for label, (c, s) in enumerate(classes):
        name = f"{world.COLOR_NAMES[c]} {world.SHAPES[s]}"
        for _ in range(per_class):
            background, mark = None, -1
            if split in ("train", "val") and cue != "none" and rng.random() < cue_strength:
                if cue == "background":
                    background = label % n_bg
                else:
                    mark = label % len(world.COLORS)
            elif split == "test_cue_flipped":  # the cue of some other class, never its own
                if cue == "background":
                    background = (label % n_bg + 1 + int(rng.integers(n_bg - 1))) % n_bg
                elif cue == "mark":
                    n_col = len(world.COLORS)
                    mark = (label % n_col + 1 + int(rng.integers(n_col - 1))) % n_col
            elif split == "test_cue_fixed":
                background = 0
            recipe = world.random_recipe(rng, color=c, shape=s, background=background, mark=mark, noise=noise)
            items.append(Item(recipe, label, name))
    return items


@lru_cache(maxsize=4096)
def _render_one(recipe: world.Recipe) -> Image.Image:
    return Image.fromarray(world.render([recipe])[0])


def load_world_image(item: Item) -> Image.Image:
    """Render an embedded-world item as a 32x32 RGB PIL image."""
    return _render_one(item.source)


def world_task(
    n_colors: int,
    n_shapes: int,
    shots: int,
    seed: int,
    cue: str = "background",
    cue_strength: float = 1.0,
    test_per_class: int = TEST_PER_CLASS,
    noise: float = DOWNSTREAM_NOISE,
    name: str = "world-color-shape",
) -> TaskData:
    """The colour-shape task on the first n_colors x n_shapes attributes with a configurable cue."""
    if cue not in CUES:
        raise SubptError(f"--cue must be one of {', '.join(CUES)}, got {cue!r}")
    if not 0.0 <= cue_strength <= 1.0:
        raise SubptError(f"--cue-strength must lie in [0, 1], got {cue_strength}")
    if noise < 0:
        raise SubptError(f"--noise must be non-negative, got {noise}")
    if shots < 1:
        raise SubptError(f"--shots must be at least 1 for {name}, got {shots}")
    if shots > 512:
        raise SubptError(f"--shots {shots} is larger than the 512 training images per class {name} offers")
    classes = class_order(n_colors, n_shapes)
    classnames = [f"{world.COLOR_NAMES[c]} {world.SHAPES[s]}" for c, s in classes]
    extra = {"test_cue_flipped": _split(classes, test_per_class, 0, "test_cue_flipped", cue, cue_strength, noise)}
    if cue == "background":
        extra["test_cue_fixed"] = _split(classes, test_per_class, 0, "test_cue_fixed", cue, cue_strength, noise)
    return TaskData(
        name=name,
        classnames=classnames,
        template="a photo of a {}.",
        train=_split(classes, shots, seed, "train", cue, cue_strength, noise),
        val=_split(classes, validation_shots(shots), seed, "val", cue, cue_strength, noise),
        test=_split(classes, test_per_class, 0, "test", cue, cue_strength, noise),
        load_image=load_world_image,
        test_splits=extra,
        templates=list(WORLD_TEMPLATES),
        teacher_templates=list(WORLD_TEMPLATES),
    )


@register_dataset("world-color-shape", needs_root=False)
def _world_64(root: Path | None, shots: int, seed: int, **options: object) -> TaskData:
    return world_task(8, 8, shots, seed, name="world-color-shape", **options)  # type: ignore[arg-type]


@register_dataset("world-color-shape-36", needs_root=False)
def _world_36(root: Path | None, shots: int, seed: int, **options: object) -> TaskData:
    return world_task(6, 6, shots, seed, name="world-color-shape-36", **options)  # type: ignore[arg-type]
