"""Downstream few-shot tasks of the embedded world, registered as datasets: a family of tasks, one option each.

`world-objects` (the default): classes are named object kinds ("tiger", "violin", ...), each a distribution over
looks (world.ObjectKind), whose names pretraining taught with a long-tailed frequency. Like real class names, base and
novel names share no word. Options:
- `n_classes` (default 64) object kinds drawn with `class_seed` (default 0) from those seen in pretraining;
  `held_out=True` also admits the kinds whose colour-shape composition pretraining never showed (their names
  were never seen either, so zero-shot is at chance on them);
- `partition_seed`: None (default) orders the labels by class name, so CoOp's rule (first half base) splits
  them as it splits a real dataset's sorted labels; an integer draws a random order;
- `cue` (none, background, mark; default none) and `cue_strength`: a spurious cue tied to the label in the
  few-shot train and validation sets only (`background`: each class on its own background, label mod 6;
  `mark`: a 4x4 corner mark whose colour is tied to the class);
- `noise`: pixel noise of the task's images (default 12; pretraining drew noise from 4 to 28).

`world-color-shape`: 64 classes such as "red triangle" (8 colours x 8 shapes); by default labels are ordered
so that CoOp's rule gives every colour and shape in both halves and 4 of the 8 compositions held out of
pretraining to each half; `partition_seed` draws a random order. `world-color-shape-36` is the 6 x 6 variant.
Extra test splits, for a task with a cue: `test_cue_flipped` (every image shows the cue of a different class) and,
for the background cue, `test_cue_fixed` (every image on one neutral background, the first one). Test images never
carry the cue.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
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
# Pixel noise of downstream images by default; pretraining covered 4 to 28 (world.PRETRAIN_NOISE).
DOWNSTREAM_NOISE = world.NOISE_STD
WORLD_TEMPLATES = list(world.CAPTION_TEMPLATES)
# Share of a class's images (train and test alike) on the class's typical background: a data set's own way of
# showing its classes, which pretraining's captions never tied to the names, as real data sets show their classes
# in their own settings (flowers in gardens, boats on water) that web captions do not spell out.
SCENE = 0.5
# Share of a kind's images in its main colour in the world's data sets (pretraining: world.MAIN_LOOK, 0.9). A data
# set is its own sub-population of each concept, as a benchmark's "rose" photos are not the web's average rose:
# zero-shot CLIP, which learned the web's mix, is then far from perfect, and 16 shots have something to teach.
# Set to match real CLIP's published averages (zero-shot base 69 / novel 74; CoOp's base gain of 13 points),
# not the claims the study measures; docs/embedded.md records what each value did.
MAIN_COLOR = 0.5  # the captions' templates are the world's prompt ensemble


@dataclass(frozen=True)
class WorldClass:
    """One class of a world task: a colour-shape composition (any pattern), or a named object kind."""

    name: str
    color: int = -1
    shape: int = -1
    kind: int = -1  # index into world.OBJECT_KINDS; its instances vary as the kind does


def class_order(n_colors: int, n_shapes: int) -> list[tuple[int, int]]:
    """(colour, shape) of each label: checkerboard order, so both halves cover every colour and shape; then
    half of the held-out compositions that fall in the second half trade places with first-half cells of the
    same colour, so neither half holds them all."""
    cells = [(c, s) for c in range(n_colors) for s in range(n_shapes)]
    order = [cs for cs in cells if (cs[0] + cs[1]) % 2 == 0] + [cs for cs in cells if (cs[0] + cs[1]) % 2 == 1]
    half = len(order) // 2
    held = world.held_out_compositions()
    moving = [i for i in range(half, len(order)) if order[i] in held]
    for i in moving[: (len(moving) + sum(order[j] in held for j in range(half))) // 2]:
        c = order[i][0]
        j = next(j for j in range(half) if order[j][0] == c and order[j] not in held)
        order[i], order[j] = order[j], order[i]
    return order


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "little")


def _split(
    classes: list[WorldClass], per_class: int, seed: int, split: str, cue: str, cue_strength: float, noise: float,
    key: tuple = (), scene: float = 0.0, main_color: float | None = None,
) -> list[Item]:
    rng = np.random.default_rng(_seed("world", split, seed, per_class, cue, cue_strength, len(classes), noise, *key))
    n_bg = len(world.BACKGROUNDS)
    items = []
    for label, cls in enumerate(classes):
        for _ in range(per_class):
            background, mark = None, -1
            if scene > 0 and rng.random() < scene:  # the class's typical scene, in every split
                background = _scene_background(cls.name)
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
            color, shape, pattern, parts = cls.color, cls.shape, None, (-1, -1, 0)
            if cls.kind >= 0:
                kind = world.OBJECT_KINDS[cls.kind]
                color, shape, pattern = kind.sample(rng, main_color)
                parts = kind.sample_parts(rng)
            recipe = world.random_recipe(rng, color=color, shape=shape, background=background, mark=mark,
                                         noise=noise, pattern=pattern, kind=cls.kind, parts=parts)
            items.append(Item(recipe, label, cls.name))
    return items


def _scene_background(name: str) -> int:
    """The background a class is typically seen on in the world's downstream data sets."""
    return _seed("scene", name) % len(world.BACKGROUNDS)


@lru_cache(maxsize=4096)
def _render_one(recipe: world.Recipe) -> Image.Image:
    return Image.fromarray(world.render([recipe])[0])


def load_world_image(item: Item) -> Image.Image:
    """Render an embedded-world item as a 32x32 RGB PIL image."""
    return _render_one(item.source)


def _check_common(name: str, shots: int, cue: str, cue_strength: float, noise: float, test_per_class: int) -> None:
    checks = [
        (cue in CUES, f"--cue must be one of {', '.join(CUES)}, got {cue!r}"),
        (0.0 <= cue_strength <= 1.0, f"--cue-strength must lie in [0, 1], got {cue_strength}"),
        (np.isfinite(noise) and noise >= 0, f"--noise must be a non-negative number, got {noise}"),
        (shots >= 1, f"--shots must be at least 1 for {name}, got {shots}"),
        (shots <= 512, f"--shots {shots} is larger than the 512 training images per class {name} offers"),
        (test_per_class >= 1, f"test_per_class must be at least 1, got {test_per_class}"),
    ]
    for ok, msg in checks:
        if not ok:
            raise SubptError(msg)


def _ordered(classes: list[WorldClass], partition_seed: int | None, default: list[int]) -> list[WorldClass]:
    """The label order: `default` (indices) without a partition seed, else a random permutation."""
    if partition_seed is None:
        return [classes[i] for i in default]
    if not isinstance(partition_seed, int) or isinstance(partition_seed, bool) or partition_seed < 0:
        raise SubptError(f"--partition-seed must be a non-negative integer, got {partition_seed!r}")
    perm = np.random.default_rng(_seed("partition", partition_seed, len(classes))).permutation(len(classes))
    return [classes[int(i)] for i in perm]


def _task(name: str, classes: list[WorldClass], shots: int, seed: int, cue: str, cue_strength: float, noise: float,
          test_per_class: int, key: tuple = (), scene: float = 0.0, main_color: float | None = None) -> TaskData:
    def split(split_name: str, per_class: int, split_seed: int) -> list[Item]:
        return _split(classes, per_class, split_seed, split_name, cue, cue_strength, noise, key, scene, main_color)

    extra = {} if cue == "none" else {"test_cue_flipped": split("test_cue_flipped", test_per_class, 0)}
    if cue == "background":
        extra["test_cue_fixed"] = split("test_cue_fixed", test_per_class, 0)
    return TaskData(
        name=name,
        classnames=[c.name for c in classes],
        template="a photo of a {}.",
        train=split("train", shots, seed),
        val=split("val", validation_shots(shots), seed),
        test=split("test", test_per_class, 0),
        load_image=load_world_image,
        test_splits=extra,
        templates=list(WORLD_TEMPLATES),
        teacher_templates=list(WORLD_TEMPLATES),
    )


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
    partition_seed: int | None = None,
) -> TaskData:
    """The colour-shape task on the first n_colors x n_shapes attributes with a configurable cue."""
    _check_common(name, shots, cue, cue_strength, noise, test_per_class)
    cells = [(c, s) for c in range(n_colors) for s in range(n_shapes)]
    classes = [WorldClass(f"{world.COLOR_NAMES[c]} {world.SHAPES[s]}", c, s) for c, s in cells]
    default = [cells.index(cs) for cs in class_order(n_colors, n_shapes)]
    classes = _ordered(classes, partition_seed, default)
    key = () if partition_seed is None else ("partition", partition_seed)
    return _task(name, classes, shots, seed, cue, cue_strength, noise, test_per_class, key)


def objects_task(
    shots: int,
    seed: int,
    n_classes: int = 64,
    class_seed: int = 0,
    partition_seed: int | None = None,
    held_out: bool = False,
    scene: float = SCENE,
    main_color: float | None = MAIN_COLOR,
    cue: str = "none",
    cue_strength: float = 1.0,
    noise: float = DOWNSTREAM_NOISE,
    test_per_class: int = TEST_PER_CLASS,
    name: str = "world-objects",
) -> TaskData:
    """The named-object task: `n_classes` object kinds drawn with `class_seed`, ordered by name or by
    `partition_seed`, with an optional spurious cue."""
    _check_common(name, shots, cue, cue_strength, noise, test_per_class)
    held = world.held_out_compositions()
    pool = [k for k in world.OBJECT_KINDS if held_out or (k.color, k.shape) not in held]
    if not isinstance(n_classes, int) or isinstance(n_classes, bool) or not 2 <= n_classes <= len(pool):
        extra = "" if held_out else " (--held-out admits the kinds held out of pretraining)"
        raise SubptError(f"--n-classes must be an integer in 2..{len(pool)}{extra}, got {n_classes!r}")
    if not isinstance(class_seed, int) or isinstance(class_seed, bool) or class_seed < 0:
        raise SubptError(f"--class-seed must be a non-negative integer, got {class_seed!r}")
    pick = np.random.default_rng(_seed("classes", class_seed, held_out)).choice(len(pool), n_classes, replace=False)
    classes = [WorldClass(pool[int(i)].name, kind=pool[int(i)].index) for i in sorted(pick)]
    by_name = sorted(range(len(classes)), key=lambda i: classes[i].name)
    classes = _ordered(classes, partition_seed, by_name)
    if not 0.0 <= scene <= 1.0:
        raise SubptError(f"--scene must lie in [0, 1], got {scene}")
    if main_color is not None and not 0.0 <= main_color <= 1.0:
        raise SubptError(f"--main-color must lie in [0, 1], got {main_color}")
    key = ("objects", tuple(c.name for c in classes), scene) + (() if main_color is None else (main_color,))
    return _task(name, classes, shots, seed, cue, cue_strength, noise, test_per_class, key, scene, main_color)


@register_dataset("world-objects", needs_root=False, options_of=objects_task)
def _world_objects(root: Path | None, shots: int, seed: int, **options: object) -> TaskData:
    return objects_task(shots, seed, **options)  # type: ignore[arg-type]


@register_dataset("world-color-shape", needs_root=False, options_of=world_task)
def _world_64(root: Path | None, shots: int, seed: int, **options: object) -> TaskData:
    return world_task(8, 8, shots, seed, name="world-color-shape", **options)  # type: ignore[arg-type]


@register_dataset("world-color-shape-36", needs_root=False, options_of=world_task)
def _world_36(root: Path | None, shots: int, seed: int, **options: object) -> TaskData:
    return world_task(6, 6, shots, seed, name="world-color-shape-36", **options)  # type: ignore[arg-type]
