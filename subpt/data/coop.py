"""CoOp's 15 datasets as registered tasks: `build_task("caltech101", root=DATA, shots=16, seed=1)`.

Registry names: imagenet, caltech101, oxford_pets, stanford_cars, oxford_flowers, food101, fgvc_aircraft,
sun397, dtd, eurosat, ucf101 (few-shot train/val/test) and imagenet_v2, imagenet_sketch, imagenet_a,
imagenet_r (test-only, for domain generalisation from ImageNet). `root` is the data root ($DATA in
CoOp's DATASETS.md) holding one folder per dataset; see docs/datasets.md.

Importing this module also registers the generic `imagefolder` and `csv` datasets (subpt.data.folder).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from subpt.data import folder as _folder  # noqa: F401  (registers imagefolder and csv)
from subpt.data.base import Item, TaskData, subsample_task
from subpt.data.coop_fewshot import fewshot_draw
from subpt.data.coop_readers import read_raw
from subpt.data.coop_specs import COOP_DATASETS, IMAGENET, VARIANT, CoopSpec, get_spec
from subpt.data.coop_splits import RawDataset, load_image_file
from subpt.data.registry import register_dataset
from subpt.errors import SubptError

__all__ = ["COOP_DATASETS", "build_coop_task", "load_image_file"]

_OPTIONS = ("cache", "subsample")


def build_coop_task(
    name: str, root: Path | None, shots: int, seed: int, *, cache: bool = True, subsample: str = "all"
) -> TaskData:
    """Read CoOp dataset `name` under `root` and draw its few-shot train/val splits.

    train = few_shot(train, shots, seed); val = few_shot(val, min(shots, 4), seed) (for ImageNet, whose
    val set CoOp uses as the test set, val is drawn from the test images); test is the full test split.
    Draws are cached in `<dataset>/split_fewshot/shot_{shots}-seed_{seed}.json` when `cache` is on and
    the folder is writable. The ImageNet variants have empty train/val and ignore `shots`.
    `subsample` ('all', 'base', 'novel') applies CoOp's base/novel rule to the result.
    """
    spec = get_spec(name)
    if root is None:
        raise SubptError(f"dataset {name!r} reads files: pass --root DIR (see docs/datasets.md)")
    raw = read_raw(spec, Path(root))
    if spec.kind == VARIANT:
        train, val = [], []
    else:
        train, val = fewshot_draw(
            dataset=spec.name,
            dataset_dir=raw.dataset_dir,
            image_root=raw.image_root,
            fingerprint=raw.fingerprint,
            classnames=raw.classnames,
            train=lambda: raw.train,
            val=_val_pool(spec, raw),
            shots=shots,
            seed=seed,
            cache=cache,
        )
    task = TaskData(
        name=spec.name,
        classnames=list(raw.classnames),
        template=spec.template,
        train=train,
        val=val,
        test=list(raw.test),
        load_image=load_image_file,
        templates=spec.templates,
    )
    return subsample_task(task, subsample)


def _val_pool(spec: CoopSpec, raw: RawDataset) -> Callable[[], list[Item]]:
    if spec.kind == IMAGENET:
        return lambda: raw.test
    return lambda: raw.val


def _make_factory(name: str) -> Callable[..., TaskData]:
    def factory(root: Path | None, shots: int, seed: int, **options: Any) -> TaskData:
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise SubptError(
                f"dataset {name!r} has no option {unknown[0]!r}; its options are: {', '.join(_OPTIONS)}"
            )
        cache = options.get("cache", True)
        if isinstance(cache, str):
            cache = cache.strip().lower() not in ("0", "false", "no", "off")
        return build_coop_task(
            name, root, shots, seed, cache=bool(cache), subsample=str(options.get("subsample", "all"))
        )

    factory.__name__ = f"build_{name}"
    factory.__doc__ = f"Registry factory of CoOp's {get_spec(name).title} (see build_coop_task)."
    return factory


for _name in COOP_DATASETS:
    register_dataset(_name)(_make_factory(_name))
