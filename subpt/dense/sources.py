"""The one place a dense command names its scenes: `load_source(name, root, split, options) -> DenseSource` for
the embedded world's scenes (`world-scenes`), OV-COCO detection (`coco`) and PASCAL VOC 2012 segmentation (`voc`).

Options per source (unknown keys are an error naming the known ones):
- world-scenes (no root): the class-set options n_classes, class_seed, partition_seed, held_out; seed (the scene
  seed, default 1), scenes (how many, default 100) and the layout settings of `SceneConfig` (canvas, min_objects,
  max_objects, min_scale, max_scale, min_visible, tries, noise). Split "test" is scenes 0..n-1 of the seed (what
  `subpt dense eval --seed S` evaluates); split "train" is scenes TRAIN_OFFSET.. of the same seed, so training
  and test scenes never coincide. Proposals: None (the pipeline's label-free generator, world settings).
- coco: `CocoOptions` fields (max_images, keep_unseen, proposals, max_proposals); split train or val.
- voc: `VocOptions` fields (max_images, keep_unseen, proposals, max_proposals); split train or val.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from subpt.dense.source import DenseSource
from subpt.errors import SubptError

SOURCES = ("world-scenes", "coco", "voc")
WORLD_CLASS_KEYS = ("n_classes", "class_seed", "partition_seed", "held_out")  # scene_classes' arguments
WORLD_SPLITS = ("train", "test")
TRAIN_OFFSET = 1_000_000  # first scene index of the world's train split


def _known(options: dict[str, Any], known: list[str], name: str) -> None:
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise SubptError(
            f"unknown option(s) {', '.join(unknown)} for dense source {name!r}; it takes {', '.join(known)}"
        )


def world_source(split: str, options: dict[str, Any]) -> DenseSource:
    """Scenes of the embedded world as a DenseSource (see the module docstring for split and options)."""
    from subpt.dense.realdata import LazySequence
    from subpt.embedded.scenes import SceneConfig, make_scene, scene_classes

    layout = [f.name for f in fields(SceneConfig)]
    _known(options, [*WORLD_CLASS_KEYS, "seed", "scenes", *layout], "world-scenes")
    if split not in WORLD_SPLITS:
        raise SubptError(f"world-scenes split must be one of {', '.join(WORLD_SPLITS)}, got {split!r}")
    seed, n = options.get("seed", 1), options.get("scenes", 100)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise SubptError(f"--scenes must be a positive integer, got {n!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise SubptError(f"--seed must be a non-negative integer, got {seed!r}")
    cfg = SceneConfig(**{k: options[k] for k in layout if k in options})
    cfg.validate()
    classes = scene_classes(**{k: options[k] for k in WORLD_CLASS_KEYS if k in options})
    offset = TRAIN_OFFSET if split == "train" else 0
    key = {
        "dataset": "world-scenes",
        "world": sorted(classes.options),
        "split": split,
        "seed": seed,
        "scenes": n,
        "config": asdict(cfg),
    }
    scenes = LazySequence(n, lambda i: make_scene(classes, seed, offset + i, cfg), keep=min(n, 512))
    return DenseSource(name=f"world-scenes-{split}", classes=classes, scenes=scenes, proposals=None, key=key)


def load_source(
    name: str, root: Path | str | None, split: str, options: dict[str, Any] | None = None
) -> DenseSource:
    """The DenseSource `name` (world-scenes, coco or voc) of `split` under the data root `root`."""
    options = dict(options or {})
    if name == "world-scenes":
        if root is not None:
            raise SubptError("dense source 'world-scenes' is generated and takes no --root; leave it out")
        return world_source(split, options)
    if name in ("coco", "voc"):
        if root is None:
            raise SubptError(f"dense source {name!r} needs --root, the folder holding the dataset")
        root = Path(root)
        if options.get("proposals") is not None:
            options["proposals"] = str(options["proposals"])  # a plain string in the cache key
        if not root.is_dir():
            raise SubptError(f"--root {root} does not exist or is not a folder")
        if name == "coco":
            from subpt.dense.coco import CocoOptions, coco_source

            _known(options, [f.name for f in fields(CocoOptions)], name)
            return coco_source(root, split, CocoOptions(**options))
        from subpt.dense.voc import VocOptions, voc_source

        _known(options, [f.name for f in fields(VocOptions)], name)
        return voc_source(root, split, VocOptions(**options))
    raise SubptError(f"unknown dense source {name!r}; choose one of {', '.join(SOURCES)}")
