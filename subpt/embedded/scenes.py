"""Multi-object scenes of the embedded world, with exact boxes and per-pixel instance and semantic masks.

A scene is a square canvas (CANVAS = 128 px by default) of one background colour holding 2 to 5 objects of a
`world-objects` class set: the same class selection and label order as the classification task with the same
options (n_classes, class_seed, partition_seed, held_out), so the seen / unseen split is CoOp's base / novel rule
(`base_novel_labels`): seen = the first ceil(n/2) labels, unseen = the rest.

How a scene is built (everything is drawn from one generator seeded by the options, the scene seed and the scene's
index, so the same options and seed give identical arrays, and scene i does not depend on how many are made):
- each object is an instance of its class's kind (colour, shape, pattern and parts drawn as the classification task
  draws them), rendered by the world's own renderer on its 32x32 tile, centred, without noise, then enlarged by a
  factor in [min_scale, max_scale] (nearest neighbour), so every object is at least the tiny CLIP's input size;
- its exact mask: the same recipe rendered on two different backgrounds; the pixels that differ are background;
- objects are pasted in order at random places: a later object occludes earlier ones. A placement is accepted only
  if every object placed so far keeps at least `min_visible` (default half) of its own pixels visible; after
  `tries` rejected placements the object is left out of the scene (not just out of the labels), so every pixel of
  the image carries its true label;
- an object's box is the extent of its visible mask ([x0, y0, x1, y1), pixel edges);
- the scene's pixel noise (Gaussian, `noise`, the task default 12) is added after compositing.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from subpt.data.base import base_novel_labels
from subpt.embedded import world
from subpt.errors import SubptError

CANVAS = 128
BACKGROUND = -1  # value of the instance and semantic maps where no object is visible


@dataclass(frozen=True)
class SceneConfig:
    """How scenes are laid out: canvas side, objects per scene, object scale, occlusion limit and noise."""

    canvas: int = CANVAS
    min_objects: int = 2
    max_objects: int = 5
    min_scale: float = 1.0  # an object's 32 px tile is enlarged by a factor drawn from [min_scale, max_scale]
    max_scale: float = 2.0
    min_visible: float = 0.5  # share of its own pixels every object keeps visible
    tries: int = 20  # placements tried per object before it is left out
    noise: float = world.NOISE_STD

    def validate(self) -> None:
        """Raise a one-line SubptError for impossible settings."""
        checks = [
            (
                isinstance(self.canvas, int) and self.canvas >= world.IMAGE_SIZE,
                f"--canvas must be an integer of at least {world.IMAGE_SIZE}, got {self.canvas!r}",
            ),
            (
                1 <= self.min_objects <= self.max_objects,
                f"--min-objects / --max-objects must satisfy 1 <= min <= max, got {self.min_objects}, {self.max_objects}",
            ),
            (
                1.0 <= self.min_scale <= self.max_scale,
                f"--min-scale / --max-scale must satisfy 1 <= min <= max, got {self.min_scale}, {self.max_scale}",
            ),
            (
                world.IMAGE_SIZE * self.max_scale <= self.canvas,
                f"--max-scale {self.max_scale} makes objects larger than the {self.canvas} px canvas; lower it",
            ),
            (0.0 < self.min_visible <= 1.0, f"--min-visible must lie in (0, 1], got {self.min_visible}"),
            (
                isinstance(self.tries, int) and self.tries >= 1,
                f"--tries must be at least 1, got {self.tries!r}",
            ),
            (
                bool(np.isfinite(self.noise)) and self.noise >= 0,
                f"--noise must be a non-negative number, got {self.noise}",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise SubptError(msg)


@dataclass(frozen=True)
class SceneClasses:
    """The class set of a scene family: names and kinds in label order, and the seen / unseen labels."""

    names: tuple[str, ...]
    kinds: tuple[int, ...]  # index into world.OBJECT_KINDS of each label
    seen: tuple[int, ...]
    unseen: tuple[int, ...]
    options: tuple[tuple[str, object], ...]  # the world options that chose them

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.names)


@dataclass
class Scene:
    """One scene: the image, its per-pixel instance map and the visible objects' boxes, labels and masks."""

    image: np.ndarray  # (H, W, 3) uint8
    instances: np.ndarray  # (H, W) int16: index of the visible object, BACKGROUND where none
    boxes: np.ndarray  # (k, 4) float32 [x0, y0, x1, y1) in pixels, the extent of each visible mask
    labels: np.ndarray  # (k,) int64 class labels
    masks: np.ndarray  # (k, H, W) bool visible masks
    full_areas: np.ndarray  # (k,) int64 pixels of each object before occlusion

    @property
    def semantic(self) -> np.ndarray:
        """(H, W) int64 class label of every pixel, BACKGROUND where no object is visible."""
        out = np.full(self.instances.shape, BACKGROUND, dtype=np.int64)
        seen = self.instances >= 0
        out[seen] = self.labels[self.instances[seen]]
        return out


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little")


def scene_classes(
    n_classes: int = 64, class_seed: int = 0, partition_seed: int | None = None, held_out: bool = False
) -> SceneClasses:
    """The `world-objects` class set and label order for these options, split seen / unseen by CoOp's rule."""
    from subpt.embedded.tasks import objects_task

    task = objects_task(
        shots=1,
        seed=0,
        n_classes=n_classes,
        class_seed=class_seed,
        partition_seed=partition_seed,
        held_out=held_out,
        test_per_class=1,
    )
    by_name = {k.name: k.index for k in world.OBJECT_KINDS}
    seen, unseen = base_novel_labels(task.num_classes)
    options = (
        ("n_classes", n_classes),
        ("class_seed", class_seed),
        ("partition_seed", partition_seed),
        ("held_out", held_out),
    )
    return SceneClasses(
        tuple(task.classnames),
        tuple(by_name[n] for n in task.classnames),
        tuple(seen),
        tuple(unseen),
        options,
    )


def _object_tile(
    kind: world.ObjectKind, rng: np.random.Generator, main_color: float
) -> tuple[np.ndarray, np.ndarray]:
    """(tile (32, 32, 3) uint8 without noise, exact mask (32, 32) bool) of one instance of `kind`."""
    color, shape, pattern = kind.sample(rng, main_color)
    trim, spot, side = kind.sample_parts(rng)
    size = int(rng.integers(len(world.SIZES)))
    recipes = [
        world.Recipe(
            color=color,
            shape=shape,
            pattern=pattern,
            size=size,
            background=bg,
            noise=0.0,
            kind=kind.index,
            trim=trim,
            spot=spot,
            spot_side=side,
        )
        for bg in (0, 1)  # gray and sand differ in every channel
    ]
    a, b = world.render(recipes)
    return a, (a == b).all(axis=-1)  # the background pixels are the ones that differ


def _enlarge(tile: np.ndarray, mask: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    img = np.asarray(Image.fromarray(tile).resize((side, side), Image.NEAREST))
    m = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((side, side), Image.NEAREST)) > 0
    return img, m


def make_scene(
    classes: SceneClasses,
    seed: int,
    index: int,
    cfg: SceneConfig | None = None,
    main_color: float | None = None,
) -> Scene:
    """Scene number `index` of the family (classes, seed, cfg): the same arguments give identical arrays."""
    from subpt.embedded.tasks import MAIN_COLOR

    cfg = cfg or SceneConfig()
    main_color = MAIN_COLOR if main_color is None else main_color
    rng = np.random.default_rng(_seed("scene", seed, index, asdict(cfg), classes.names, main_color))
    side = cfg.canvas
    bg_rgb = np.array(list(world.BACKGROUNDS.values()), dtype=np.uint8)[
        int(rng.integers(len(world.BACKGROUNDS)))
    ]
    canvas = np.broadcast_to(bg_rgb, (side, side, 3)).copy()
    instances = np.full((side, side), BACKGROUND, dtype=np.int16)
    full_area: list[int] = []
    labels: list[int] = []
    for _ in range(int(rng.integers(cfg.min_objects, cfg.max_objects + 1))):
        label = int(rng.integers(classes.num_classes))
        tile, mask = _object_tile(world.OBJECT_KINDS[classes.kinds[label]], rng, main_color)
        size = int(round(world.IMAGE_SIZE * rng.uniform(cfg.min_scale, cfg.max_scale)))
        tile, mask = _enlarge(tile, mask, size)
        k = len(labels)
        for _try in range(cfg.tries):
            y, x = (int(v) for v in rng.integers(0, side - size + 1, size=2))
            trial = instances.copy()
            trial[y : y + size, x : x + size][mask] = k
            areas = np.bincount(trial[trial >= 0].ravel(), minlength=k + 1)
            if all(areas[j] >= cfg.min_visible * a for j, a in enumerate([*full_area, int(mask.sum())])):
                instances = trial
                canvas[y : y + size, x : x + size][mask] = tile[mask]
                full_area.append(int(mask.sum()))
                labels.append(label)
                break
    noise = rng.normal(0.0, 1.0, size=canvas.shape) * cfg.noise
    image = np.clip(np.rint(canvas + noise), 0, 255).astype(np.uint8)
    masks = (
        np.stack([instances == j for j in range(len(labels))]) if labels else np.zeros((0, side, side), bool)
    )
    boxes = np.array([_extent(m) for m in masks], dtype=np.float32).reshape(-1, 4)
    return Scene(
        image, instances, boxes, np.array(labels, dtype=np.int64), masks, np.array(full_area, dtype=np.int64)
    )


def _extent(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def make_scenes(
    classes: SceneClasses, seed: int, n_scenes: int, cfg: SceneConfig | None = None
) -> list[Scene]:
    """Scenes 0..n_scenes-1 of the family (classes, seed, cfg)."""
    cfg = cfg or SceneConfig()
    cfg.validate()
    if not isinstance(n_scenes, int) or isinstance(n_scenes, bool) or n_scenes < 1:
        raise SubptError(f"--scenes must be a positive integer, got {n_scenes!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise SubptError(f"--seed must be a non-negative integer, got {seed!r}")
    return [make_scene(classes, seed, i, cfg) for i in range(n_scenes)]
