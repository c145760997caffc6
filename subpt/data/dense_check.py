"""Verify a dense benchmark's layout: OV-COCO detection (`coco`) or PASCAL VOC 2012 segmentation (`voc`).

`check_dense(name, root)` (what `subpt data check --dataset coco|voc` runs) never raises for a problem in the data: it returns a `DatasetCheck` (the classification
check's record) with a problem per missing folder or file, garbled annotation file, bad label map or unreadable
image, each naming the path and the fix; counts of images per split; per class the number of objects per split
and whether it is seen or unseen; and notes for seen classes absent from train or unseen classes absent from val.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from subpt.data.check import MAX_LISTED, MAX_RECORDED, MISSING, OK, PROBLEMS, DatasetCheck, verify_images
from subpt.errors import SubptError

if TYPE_CHECKING:
    from subpt.embedded.scenes import SceneClasses

DENSE_DATASETS = ("coco", "voc")


def _record_unreadable(result: DatasetCheck, bad: list[tuple[str, str]], fix: str) -> None:
    for i, (path, err) in enumerate(bad):
        if i < MAX_RECORDED:
            result.unreadable.append({"path": path, "error": err})
        if i < MAX_LISTED:
            what = "does not exist" if err == "missing" else f"does not decode ({err})"
            result.problems.append(f"image {path} {what}; {fix}")
    if len(bad) > MAX_LISTED:
        result.problems.append(
            f"... and {len(bad) - MAX_LISTED} more missing or unreadable images (see --json)"
        )


def _presence_notes(
    result: DatasetCheck, seen: tuple[int, ...], unseen: tuple[int, ...], names, train, val
) -> None:
    """Notes / problems on which seen classes have training objects and which unseen ones have val objects."""
    if train is not None:
        absent = [names[c] for c in seen if train[c] == 0]
        if len(absent) == len(seen):
            result.problems.append("no seen class has a training object: nothing to learn prompts from")
        elif absent:
            result.notes.append(f"seen classes without a training object: {', '.join(absent)}")
    if val is not None:
        absent = [names[c] for c in unseen if val[c] == 0]
        if len(absent) == len(unseen):
            result.problems.append(
                "no unseen class has a val object: unseen-class figures cannot be measured"
            )
        elif absent:
            result.notes.append(
                f"unseen classes without a val object (left out of the means): {', '.join(absent)}"
            )


def _finish(
    result: DatasetCheck,
    classes: SceneClasses,
    names: tuple[str, ...] | list[str],
    per_split: dict[str, list[int]],
    paths: list[str],
    fix: str,
    decode: bool,
    workers: int | None,
) -> None:
    """Per-class object counts, presence notes, the image check and the status of a finished dense check."""
    result.class_counts = [
        {
            "label": c,
            "classname": n,
            "role": "seen" if c in classes.seen else "unseen",
            **{s: per_split[s][c] for s in per_split},
        }
        for c, n in enumerate(names)
    ]
    _presence_notes(result, classes.seen, classes.unseen, names, per_split.get("train"), per_split.get("val"))
    result.images_checked = len(paths)
    _record_unreadable(result, verify_images(paths, decode=decode, workers=workers), fix)
    result.status = PROBLEMS if result.problems else OK


def check_coco(root: Path, decode: bool = False, workers: int | None = None) -> DatasetCheck:
    """Check an OV-COCO root: annotation files, image folders, every listed image, objects per class."""
    from subpt.dense.coco import OV_COCO_NAMES, SETUP, SPLITS, annotation_file, coco_root, image_folder
    from subpt.dense.coco import ov_coco_classes as classes_of

    base = coco_root(Path(root))
    classes = classes_of()
    result = DatasetCheck(
        dataset="coco",
        title="COCO 2017 detection, OV-COCO 48 seen / 17 unseen",
        folder=str(base),
        hint=SETUP.format(what="train2017.zip, val2017.zip and annotations_trainval2017.zip", root=base),
        image_check="decode" if decode else "verify",
    )
    if not base.is_dir() or not any((base / p).exists() for p in ("annotations", "train2017", "val2017")):
        result.status = MISSING
        return result
    result.num_classes = len(OV_COCO_NAMES)
    per_split: dict[str, list[int]] = {}
    paths: list[str] = []
    for split in SPLITS:
        ann, folder = annotation_file(base, split), image_folder(base, split)
        fix = SETUP.format(what=f"{split}2017.zip and annotations_trainval2017.zip", root=base)
        if not ann.is_file():
            result.problems.append(f"annotation file {ann} is missing; {fix}")
        if not folder.is_dir():
            result.problems.append(f"image folder {folder} is missing; {fix}")
        if not ann.is_file():
            continue
        try:
            data = json.loads(ann.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            result.problems.append(f"annotation file {ann} is not valid JSON ({e}); download it again")
            continue
        except OSError as e:
            result.problems.append(f"cannot read annotation file {ann} ({e}); check the permissions")
            continue
        if not isinstance(data, dict) or not all(k in data for k in ("images", "annotations", "categories")):
            result.problems.append(
                f"annotation file {ann} lacks 'images', 'annotations' or 'categories'; it must be instances_*.json"
            )
            continue
        by_name = {str(c.get("name")): c.get("id") for c in data["categories"] if isinstance(c, dict)}
        absent = [n for n in OV_COCO_NAMES if n not in by_name]
        if absent:
            result.problems.append(
                f"annotation file {ann} has no categor{'y' if len(absent) == 1 else 'ies'} {', '.join(absent[:5])}"
                f"{' ...' if len(absent) > 5 else ''}; OV-COCO needs the 65 classes under their COCO 2017 names"
            )
        label_of = {by_name[n]: i for i, n in enumerate(OV_COCO_NAMES) if n in by_name}
        images = {im.get("id"): im for im in data["images"] if isinstance(im, dict)}
        counts = [0] * len(OV_COCO_NAMES)
        bad_refs = Counter()
        for a in data["annotations"]:
            if not isinstance(a, dict) or a.get("image_id") not in images:
                bad_refs["image_id not in 'images'"] += 1
                continue
            b = a.get("bbox")
            if not (isinstance(b, list) and len(b) == 4 and all(isinstance(v, (int, float)) for v in b)):
                bad_refs["bbox not [x, y, w, h]"] += 1
                continue
            if a.get("category_id") in label_of and not a.get("iscrowd", 0):
                counts[label_of[a["category_id"]]] += 1
        for why, n in bad_refs.items():
            result.problems.append(f"annotation file {ann}: {n} annotation(s) with {why}; download it again")
        per_split[split] = counts
        result.counts[split] = len(images)
        result.notes.append(f"{split}: {len(images)} images, {sum(counts)} objects of the 65 OV-COCO classes")
        if folder.is_dir():
            paths += [str(folder / str(im.get("file_name"))) for im in images.values()]
    _finish(result, classes, OV_COCO_NAMES, per_split, paths, "re-extract the image archive", decode, workers)
    return result


def _png_values(path: Path) -> tuple[np.ndarray | None, tuple[int, int] | None, str | None]:
    """(values, (w, h), None) of a label PNG, or (None, None, why it is unusable)."""
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L"):
                return None, None, f"is a {im.mode} image, not a palette label PNG"
            return np.asarray(im), im.size, None
    except FileNotFoundError:
        return None, None, "does not exist"
    except Exception as e:
        return None, None, f"does not decode ({type(e).__name__}: {e})"


def check_voc(root: Path, decode: bool = False, workers: int | None = None) -> DatasetCheck:
    """Check a VOC 2012 root: folders, split files, every image and label map, objects per class."""
    from subpt.dense.voc import SETUP, SPLITS, VOC_NAMES, VOID, split_file, voc_classes, voc_root

    base = voc_root(Path(root))
    classes = voc_classes()
    fix = f"re-extract it; {SETUP.format(root=Path(root))}"
    result = DatasetCheck(
        dataset="voc",
        title="PASCAL VOC 2012 segmentation, 15 seen / 5 unseen",
        folder=str(base),
        hint=SETUP.format(root=Path(root)),
        image_check="decode" if decode else "verify",
    )
    if not base.is_dir():
        result.status = MISSING
        return result
    result.num_classes = len(VOC_NAMES)
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationObject", "ImageSets/Segmentation"):
        if not (base / sub).is_dir():
            result.problems.append(f"folder {base / sub} is missing; {fix}")
    per_split: dict[str, list[int]] = {}
    paths: list[str] = []
    label_problems: list[str] = []
    for split in SPLITS:
        sf = split_file(root, split)
        if not sf.is_file():
            result.problems.append(f"split file {sf} is missing; {fix}")
            continue
        ids = [
            ln.strip() for ln in sf.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()
        ]
        result.counts[split] = len(ids)
        counts = [0] * len(VOC_NAMES)
        for image_id in ids:
            paths.append(str(base / "JPEGImages" / f"{image_id}.jpg"))
            cls_path, obj_path = (
                base / f / f"{image_id}.png" for f in ("SegmentationClass", "SegmentationObject")
            )
            cls, size, why = _png_values(cls_path)
            if why:
                label_problems.append(f"class map {cls_path} {why}; {fix}")
                continue
            bad = sorted(set(np.unique(cls).tolist()) - set(range(len(VOC_NAMES) + 1)) - {VOID})
            if bad:
                label_problems.append(
                    f"class map {cls_path} holds values {bad[:5]} outside 0-20 and 255; {fix}"
                )
                continue
            obj, osize, why = _png_values(obj_path)
            if why or osize != size:
                label_problems.append(
                    f"object map {obj_path} {why or 'differs in size from its class map'}; {fix}"
                )
                continue
            for j in np.unique(obj):
                if j in (0, VOID):
                    continue
                v = cls[(obj == j) & (cls > 0) & (cls != VOID)]
                if v.size:
                    counts[int(np.bincount(v).argmax()) - 1] += 1
        per_split[split] = counts
    result.problems += label_problems[:MAX_LISTED]
    if len(label_problems) > MAX_LISTED:
        result.problems.append(f"... and {len(label_problems) - MAX_LISTED} more bad label maps")
    _finish(result, classes, VOC_NAMES, per_split, paths, fix, decode, workers)
    return result


def check_dense(name: str, root: Path, decode: bool = False, workers: int | None = None) -> DatasetCheck:
    """Check the dense benchmark `name` (coco or voc) under `root`."""
    if name == "coco":
        return check_coco(root, decode, workers)
    if name == "voc":
        return check_voc(root, decode, workers)
    raise SubptError(f"unknown dense dataset {name!r}; choose one of {', '.join(DENSE_DATASETS)}")
