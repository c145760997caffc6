"""The embedded world's scenes as a `DenseSource`: scenes made on demand (and remembered), proposals from the
label-free generator (`proposals=None`).

Evaluation scenes of seed S are scenes 0, 1, ... of S (those of `subpt dense eval --seed S`); training scenes are
scenes TRAIN_OFFSET, TRAIN_OFFSET + 1, ... of the same seed, so the two never share a scene.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from subpt.dense.realdata import LazySequence
from subpt.dense.source import DenseSource
from subpt.embedded.scenes import SceneConfig, make_scene, scene_classes
from subpt.errors import SubptError

TRAIN_OFFSET = 1_000_000


def world_source(
    world: dict[str, Any], seed: int, n_scenes: int, cfg: SceneConfig | None = None, train: bool = False
) -> DenseSource:
    """`n_scenes` embedded scenes of seed `seed` with the class set chosen by `world` (n_classes, class_seed,
    partition_seed, held_out): evaluation scenes, or with `train` the disjoint training scenes."""
    cfg = cfg or SceneConfig()
    cfg.validate()
    if not isinstance(n_scenes, int) or isinstance(n_scenes, bool) or n_scenes < 1:
        raise SubptError(f"--scenes must be a positive integer, got {n_scenes!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise SubptError(f"--seed must be a non-negative integer, got {seed!r}")
    classes = scene_classes(**world)
    first = TRAIN_OFFSET if train else 0
    key = {"world": sorted(classes.options), "seed": seed, "scenes": n_scenes, "config": asdict(cfg)}
    if train:
        key["first"] = first
    return DenseSource(
        name="world-scenes",
        classes=classes,
        scenes=LazySequence(n_scenes, lambda i: make_scene(classes, seed, first + i, cfg), keep=min(n_scenes, 512)),
        proposals=None,
        key=key,
    )
