"""Region prompt learning as a dataset the trainer already understands: the labelled proposals of a `DenseSource`
become a `TaskData` whose items are region crops (box crops for detection, masked crops for segmentation).

Classes, in label order: the seen classes, then BACKGROUND_NAME, then the unseen classes. The task fixes its own
partition: base = seen + background (what `--subsample base` trains on), novel = unseen + background (what the
trainer's novel accuracy measures: unseen regions named among the unseen names, or called background). NFL's
'novel' names are the unseen class names alone (the paper's text-only regulariser). The background is a class
*name* prompted with the learned context ("[ctx] background."), so it is learned through the shared context and
nothing else: SubPT's projection, gradflow's recording and resume cover it unchanged.

Training items: up to `shots` regions per seen class (drawn with the seed) and as many background regions as
class regions in all, labelled by `subpt.dense.regions.train_labels` (no region touching an unseen object). Test
items: every class region (seen and unseen) of the test scenes and as many background regions (drawn with a fixed
seed, the same for every training seed). `load_image` crops a region from its scene when its features are not
cached; the scenes' label index (which proposal is which class) is cached on disk.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from subpt.data.base import Item, TaskData
from subpt.data.registry import register_dataset
from subpt.dense.regions import BACKGROUND_REGION, KINDS, test_labels, train_labels
from subpt.dense.settings import CropSettings, ProposalParams
from subpt.dense.source import IGNORE
from subpt.errors import SubptError

if TYPE_CHECKING:
    from subpt.dense.source import DenseSource

BACKGROUND_NAME = "background"
INDEX_VERSION = "region-index/2"  # bump when labelling, proposals or scenes change meaning
REGION_DATASET = "world-regions"
TEST_DRAW_SEED = 0

_SOURCES: dict[str, tuple[DenseSource, ProposalParams]] = {}  # source id -> source, for load_image


def _digest(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:20]


def region_index(source: DenseSource, params: ProposalParams, kind: str, train: bool) -> np.ndarray:
    """(n, 3) int64 rows (scene, proposal, label in the source's class labels or BACKGROUND_REGION) of every
    labelled proposal of `source`, ignored ones left out; cached on disk."""
    from gradflow.atomic import atomic_write_text
    from subpt.cache_paths import cache_dir
    from subpt.dense.source_proposals import source_id, source_proposals

    sid = source_id(source, params)
    _SOURCES[sid] = (source, params)
    seen = tuple(int(c) for c in source.classes.seen)
    path = cache_dir() / "dense" / f"index-{_digest(INDEX_VERSION, sid, kind, train, seen)}.json"
    if path.is_file():
        try:
            return np.asarray(json.loads(path.read_text()), dtype=np.int64).reshape(-1, 3)
        except (ValueError, OSError):
            path.unlink(missing_ok=True)
    rows = []
    proposals = source_proposals(source, params)
    for i in range(len(source.scenes)):
        scene, props = source.scenes[i], proposals[i]
        args = (kind, props.boxes, props.masks, scene.boxes, scene.masks, scene.labels)
        labels = train_labels(*args, seen, scene.instances == IGNORE) if train else test_labels(*args)
        rows += [(i, j, int(c)) for j, c in enumerate(labels.tolist()) if c >= BACKGROUND_REGION]
    atomic_write_text(path, json.dumps(rows), mkdir=True)
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


def _draw(rows: np.ndarray, count: int, seed: int, *tag: object) -> np.ndarray:
    """`count` rows drawn without replacement (all if fewer), in their original order."""
    if len(rows) <= count:
        return rows
    rng = np.random.default_rng(int(_digest("draw", seed, *tag), 16))
    return rows[np.sort(rng.choice(len(rows), count, replace=False))]


def region_task(
    train: DenseSource,
    test: DenseSource,
    kind: str,
    shots: int,
    seed: int,
    template: str,
    teacher_templates: list[str] | None = None,
    params: ProposalParams | None = None,
    name: str = REGION_DATASET,
) -> TaskData:
    """The region classification task of a training and a test source (same class set): see the module text."""
    if kind not in KINDS:
        raise SubptError(f"--regions must be one of {', '.join(KINDS)}, got {kind!r}")
    if tuple(train.classes.names) != tuple(test.classes.names):
        raise SubptError("the training and test sources of a region task must have the same classes")
    if not isinstance(shots, int) or shots < 1:
        raise SubptError(f"--shots must be a positive integer for region training, got {shots!r}")
    params = params or ProposalParams()
    classes = train.classes
    seen, unseen = list(classes.seen), list(classes.unseen)
    order = seen + [BACKGROUND_REGION] + unseen  # region label = position in this list
    new = {c: k for k, c in enumerate(order)}
    names = [classes.names[c] for c in seen] + [BACKGROUND_NAME] + [classes.names[c] for c in unseen]
    bg = len(seen)

    from subpt.dense.source_proposals import source_id

    def items(source: DenseSource, rows: np.ndarray) -> list[Item]:
        sid = source_id(source, params)
        return [
            Item((kind, sid, int(i), int(j)), new[int(c)], names[new[int(c)]]) for i, j, c in rows.tolist()
        ]

    rows = region_index(train, params, kind, train=True)
    fg = np.concatenate([_draw(rows[rows[:, 2] == c], shots, seed, "class", c) for c in seen] or [rows[:0]])
    back = _draw(rows[rows[:, 2] == BACKGROUND_REGION], len(fg), seed, "background")
    chosen = np.concatenate([fg, back])
    chosen = chosen[np.lexsort((chosen[:, 1], chosen[:, 0]))]
    trows = region_index(test, params, kind, train=False)
    tfg = trows[trows[:, 2] >= 0]
    tback = _draw(trows[trows[:, 2] == BACKGROUND_REGION], len(tfg), TEST_DRAW_SEED, "test background")
    tall = np.concatenate([tfg, tback])
    tall = tall[np.lexsort((tall[:, 1], tall[:, 0]))]
    crops = CropSettings()

    def load_image(item: Item):
        from subpt.dense.crops import region_crop
        from subpt.dense.source_proposals import source_proposals

        k, sid, i, j = item.source
        source, p = _SOURCES[sid]
        props = source_proposals(source, p)[i]
        image = source.scenes[i].image
        return region_crop(image, props.boxes[j], props.masks[j] if k == "mask" else None, crops)

    return TaskData(
        name=name,
        classnames=names,
        template=template,
        train=items(train, chosen),
        val=[],
        test=items(test, tall),
        load_image=load_image,
        teacher_templates=list(teacher_templates or []),
        partition=(tuple(range(bg + 1)), tuple([*range(bg + 1, len(names)), bg])),
    )


def world_region_options(
    regions: str = "box",
    n_classes: int = 64,
    class_seed: int = 0,
    partition_seed: int | None = None,
    held_out: bool = False,
    scene_seed: int = 1,
    train_scenes: int = 200,
    test_scenes: int = 50,
) -> dict[str, Any]:
    """The options of the `world-regions` dataset (their defaults are the dataset's)."""
    return dict(locals())


@register_dataset(REGION_DATASET, needs_root=False, options_of=world_region_options)
def _world_regions(root: Path | None, shots: int, seed: int, **options: Any) -> TaskData:
    from subpt.dense.world_source import world_source
    from subpt.embedded.tasks import objects_task

    o = world_region_options(**options)
    world = {k: o[k] for k in ("n_classes", "class_seed", "partition_seed", "held_out")}
    for k in ("train_scenes", "test_scenes", "scene_seed"):
        v = o[k]
        if not isinstance(v, int) or isinstance(v, bool) or v < (0 if k == "scene_seed" else 1):
            raise SubptError(
                f"--{k.replace('_', '-')} must be a {'non-negative' if k == 'scene_seed' else 'positive'} "
                f"integer, got {v!r}"
            )
    objects = objects_task(shots=1, seed=0, test_per_class=1, **world)
    return region_task(
        world_source(world, o["scene_seed"], o["train_scenes"], train=True),
        world_source(world, o["scene_seed"], o["test_scenes"]),
        o["regions"],
        shots,
        seed,
        objects.template,
        objects.teacher_templates,
    )


def world_of(dataset_options: dict[str, Any]) -> dict[str, Any]:
    """The class-set options (n_classes, class_seed, partition_seed, held_out) of a world-regions run."""
    o = world_region_options(**dataset_options)
    return {k: o[k] for k in ("n_classes", "class_seed", "partition_seed", "held_out")}


REAL_TEMPLATE = "a photo of a {}."  # CLIP's generic prompt for the real benchmarks' class names


def real_region_options(
    regions: str | None = None,
    train_images: int | None = None,
    test_images: int | None = None,
    train_proposals: str | None = None,
    test_proposals: str | None = None,
    max_proposals: int = 200,
) -> dict[str, Any]:
    """The options of the `coco-regions` and `voc-regions` datasets: the task (box or mask; default box for COCO,
    mask for VOC), how many images of each split (None: all), each split's proposal file (COCO-style JSON) or
    folder (VOC masks; None: the label-free generator's photo settings) and the proposals kept per image."""
    return dict(locals())


def _real_regions(name: str, split_names: tuple[str, str], default_kind: str, root: Path | None, shots: int,
                  seed: int, options: dict[str, Any]) -> TaskData:
    """Region task of a real dense benchmark: its training split's seen regions, its test split's regions."""
    from subpt.dense.sources import load_source

    o = real_region_options(**options)
    common = {"max_proposals": o["max_proposals"]}
    train = load_source(name, root, split_names[0],
                        {**common, "max_images": o["train_images"], "proposals": o["train_proposals"]})
    test = load_source(name, root, split_names[1],
                       {**common, "max_images": o["test_images"], "proposals": o["test_proposals"]})
    return region_task(train, test, o["regions"] or default_kind, shots, seed, REAL_TEMPLATE, name=f"{name}-regions")


@register_dataset("coco-regions", options_of=real_region_options)
def _coco_regions(root: Path | None, shots: int, seed: int, **options: Any) -> TaskData:
    """OV-COCO region crops (48 seen classes trained, 17 unseen evaluated): train2017 -> val2017."""
    return _real_regions("coco", ("train", "val"), "box", root, shots, seed, options)


@register_dataset("voc-regions", options_of=real_region_options)
def _voc_regions(root: Path | None, shots: int, seed: int, **options: Any) -> TaskData:
    """PASCAL VOC 2012 masked region crops (15 seen classes trained, 5 unseen evaluated): train -> val."""
    return _real_regions("voc", ("train", "val"), "mask", root, shots, seed, options)
