"""The one place a dense command names its scenes: `load_source(name, root, split, options) -> DenseSource` for
the embedded world's scenes (`world-scenes`), OV-COCO detection (`coco`) and PASCAL VOC 2012 segmentation (`voc`).

Options per source (unknown keys are an error naming the known ones):
- world-scenes (no root): the class-set options n_classes, class_seed, partition_seed, held_out; seed (the scene
  seed, default 1), scenes (how many, default 100) and the layout settings of `SceneConfig` (canvas, min_objects,
  max_objects, min_scale, max_scale, min_visible, tries, noise). Split "test" is scenes 0..n-1 of the seed (what
  `subpt dense eval --seed S` evaluates); split "train" is scenes 1,000,000.. of the same seed, so training
  and test scenes never coincide. Proposals: None (the pipeline's label-free generator, world settings).
- coco: `CocoOptions` fields (max_images, keep_unseen, proposals, max_proposals); split train or val.
- voc: `VocOptions` fields (max_images, keep_unseen, proposals, max_proposals); split train or val.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from subpt.dense.source import DenseSource
from subpt.errors import SubptError

SOURCES = ("world-scenes", "coco", "voc")
WORLD_CLASS_KEYS = ("n_classes", "class_seed", "partition_seed", "held_out")  # scene_classes' arguments
WORLD_SPLITS = ("train", "test")


def _known(options: dict[str, Any], known: list[str], name: str) -> None:
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise SubptError(
            f"unknown option(s) {', '.join(unknown)} for dense source {name!r}; it takes {', '.join(known)}"
        )


def _world(split: str, options: dict[str, Any]) -> DenseSource:
    """The world-scenes source of `split` (see the module docstring for the options)."""
    from subpt.dense.world_source import world_source
    from subpt.embedded.scenes import SceneConfig

    layout = [f.name for f in fields(SceneConfig)]
    _known(options, [*WORLD_CLASS_KEYS, "seed", "scenes", *layout], "world-scenes")
    if split not in WORLD_SPLITS:
        raise SubptError(f"world-scenes split must be one of {', '.join(WORLD_SPLITS)}, got {split!r}")
    cfg = SceneConfig(**{k: options[k] for k in layout if k in options})
    world = {k: options[k] for k in WORLD_CLASS_KEYS if k in options}
    return world_source(world, options.get("seed", 1), options.get("scenes", 100), cfg, train=split == "train")


def load_source(
    name: str, root: Path | str | None, split: str, options: dict[str, Any] | None = None
) -> DenseSource:
    """The DenseSource `name` (world-scenes, coco or voc) of `split` under the data root `root`."""
    options = dict(options or {})
    if name == "world-scenes":
        if root is not None:
            raise SubptError("dense source 'world-scenes' is generated and takes no --root; leave it out")
        return _world(split, options)
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
