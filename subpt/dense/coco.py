"""COCO-format detection with the OV-COCO seen / unseen split (48 / 17 classes) as a `DenseSource`.

Layout (the standard one): `ROOT/annotations/instances_{train,val}2017.json` and `ROOT/{train,val}2017/*.jpg`;
ROOT may also be a folder holding `coco/` with that layout.

The split is the one of Bansal et al. (ECCV 2018, "Zero-Shot Object Detection") as used for open-vocabulary
detection by OVR-CNN (Zareian et al., CVPR 2021), ViLD and Detic: 48 seen (base) and 17 unseen (novel) classes; the
other 15 COCO classes take no part. The class lists below are the ones of Detic's `coco_zeroshot.py`
(github.com/facebookresearch/Detic, `detic/data/datasets/coco_zeroshot.py`, `categories_seen` /
`categories_unseen`), the same 17 novel names as mmdetection-based OVD configs.

What a scene holds (docs/dense-real.md says why):
- Label order: the 65 classes in COCO category-id order (person = 0, bicycle = 1, car = 2, ...), so seen and
  unseen labels interleave; `SceneClasses.seen` / `.unseen` list them explicitly (CoOp's "first half" rule does
  NOT apply). `SceneClasses.kinds` is empty (it indexes the embedded world's kinds).
- Objects: the non-crowd annotations of the kept classes. On the train split only the 48 seen classes are kept
  (OV-COCO practice: training never sees a novel box; their objects are unlabelled background), unless
  `keep_unseen`; on val all 65 (the generalised setting). Images with no kept object are left out of the split.
- Masks from the annotations' polygons or RLE (pycocotools); an annotation without a segmentation gets its box
  as mask. Boxes are the extents of the masks ([x0, y0, x1, y1), pixel edges), which agree with COCO's `bbox`
  to within the rasterisation of the polygon (under one pixel per edge).
- `instances`: objects painted from the largest to the smallest (a small object on a large one stays visible);
  crowd regions of kept classes not covered by an object are `IGNORE`.
Proposals: a COCO-style results JSON (a list of {image_id, bbox [x, y, w, h], score[, segmentation]}), the
`max_proposals` highest-scoring per image (a proposal without a segmentation gets its box as mask); or, without a
file, the label-free generator with the photograph settings (`realdata.PHOTO_PROPOSALS`).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from subpt.dense.proposals import Proposals
from subpt.dense.realdata import (
    LazySequence,
    check_reader_options,
    file_fingerprint,
    label_free_proposals,
    mask_extent,
    read_rgb,
)
from subpt.dense.source import IGNORE, DenseSource
from subpt.embedded.scenes import BACKGROUND, Scene, SceneClasses
from subpt.errors import SubptError

# The 80 COCO detection classes in category-id order (the names of instances_*2017.json).
COCO_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip
OV_COCO_UNSEEN = (
    "airplane", "bus", "cat", "dog", "cow", "elephant", "umbrella", "tie", "snowboard", "skateboard", "cup",
    "knife", "cake", "couch", "keyboard", "sink", "scissors",
)  # fmt: skip
OV_COCO_SEEN = (
    "person", "bicycle", "car", "motorcycle", "train", "truck", "boat", "bench", "bird", "horse", "sheep", "bear",
    "zebra", "giraffe", "backpack", "handbag", "suitcase", "frisbee", "skis", "kite", "surfboard", "bottle",
    "fork", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "pizza", "donut",
    "chair", "bed", "toilet", "tv", "laptop", "mouse", "remote", "microwave", "oven", "toaster", "refrigerator",
    "book", "clock", "vase", "toothbrush",
)  # fmt: skip
OV_COCO_NAMES = tuple(n for n in COCO_NAMES if n in OV_COCO_SEEN or n in OV_COCO_UNSEEN)
SPLITS = ("train", "val")
SETUP = "download {what} from https://cocodataset.org/#download (2017) and extract it into {root}"


def ov_coco_classes() -> SceneClasses:
    """The 65 OV-COCO classes in COCO category-id order, with the 48 seen and 17 unseen labels."""
    return SceneClasses(
        names=OV_COCO_NAMES,
        kinds=(),
        seen=tuple(i for i, n in enumerate(OV_COCO_NAMES) if n in OV_COCO_SEEN),
        unseen=tuple(i for i, n in enumerate(OV_COCO_NAMES) if n in OV_COCO_UNSEEN),
        options=(("dataset", "coco"), ("classes", "ov-coco-48-17")),
    )


def coco_root(root: Path) -> Path:
    """The COCO root under `root`: `root` itself if it holds `annotations/`, else `root/coco` if that does."""
    root = Path(root)
    if not (root / "annotations").is_dir() and (root / "coco" / "annotations").is_dir():
        return root / "coco"
    return root


def annotation_file(root: Path, split: str) -> Path:
    """`ROOT/annotations/instances_{split}2017.json`."""
    return coco_root(root) / "annotations" / f"instances_{split}2017.json"


def image_folder(root: Path, split: str) -> Path:
    """`ROOT/{split}2017`."""
    return coco_root(root) / f"{split}2017"


def check_split(split: str) -> None:
    """Raise a one-line SubptError for a split that is not train or val."""
    if split not in SPLITS:
        raise SubptError(f"COCO split must be one of {', '.join(SPLITS)}, got {split!r}")


def read_json(path: Path, what: str, fix: str) -> Any:
    """The parsed JSON of a file; a missing or garbled file is a SubptError naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise SubptError(f"{what} {path} does not exist; {fix}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SubptError(f"{what} {path} is not valid JSON ({e}); {fix}") from None
    except OSError as e:
        raise SubptError(f"cannot read {what} {path} ({e}); check the permissions and the disk") from None


@dataclass(frozen=True)
class CocoOptions:
    """Reader options: how many images, unseen boxes in training, the proposal file and how many proposals."""

    max_images: int | None = None  # the first this many images of the split (by image id); None: all
    keep_unseen: bool = False  # train split: keep unseen-class boxes (not OV-COCO practice)
    # COCO-style JSON of class-agnostic proposals; None: the label-free generator
    proposals: str | None = None
    max_proposals: int = 200  # highest-scoring proposals kept per image

    def validate(self) -> None:
        """Raise a one-line SubptError for impossible settings."""
        check_reader_options(self.max_images, self.max_proposals)


@dataclass
class _Object:
    label: int
    bbox: tuple[float, float, float, float]  # x, y, w, h
    segmentation: Any
    crowd: bool
    ann_id: Any


def _decode_segmentation(segm: Any, h: int, w: int) -> np.ndarray | None:
    """(H, W) bool mask of a COCO polygon list or RLE (compressed or not); None if there is none."""
    from pycocotools import mask as mask_utils

    if segm is None or (isinstance(segm, (list, dict)) and not segm):
        return None
    if isinstance(segm, list):
        polys = [[float(v) for v in p] for p in segm if isinstance(p, list) and len(p) >= 6]
        if not polys:
            return None
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, h, w))
    elif isinstance(segm, dict) and isinstance(segm.get("counts"), list):
        rle = mask_utils.frPyObjects(segm, h, w)
    elif isinstance(segm, dict) and isinstance(segm.get("counts"), (str, bytes)):
        counts = segm["counts"]
        rle = {"size": list(segm["size"]), "counts": counts.encode() if isinstance(counts, str) else counts}
    else:
        raise ValueError("a segmentation must be a list of polygons or an RLE dict with 'size' and 'counts'")
    m = mask_utils.decode(rle).astype(bool)
    if m.shape != (h, w):
        raise ValueError(f"its size {list(m.shape)} is not the image's {[h, w]}")
    return m


def _box_mask(box: tuple[float, float, float, float], h: int, w: int) -> np.ndarray:
    """(H, W) bool mask of the pixels a [x0, y0, x1, y1) box covers (at least one pixel)."""
    x0, y0, x1, y1 = box
    c0, r0 = min(max(int(math.floor(x0)), 0), w - 1), min(max(int(math.floor(y0)), 0), h - 1)
    c1, r1 = max(min(int(math.ceil(x1)), w), c0 + 1), max(min(int(math.ceil(y1)), h), r0 + 1)
    m = np.zeros((h, w), dtype=bool)
    m[r0:r1, c0:c1] = True
    return m


def _valid_bbox(b: Any) -> bool:
    return (
        isinstance(b, (list, tuple))
        and len(b) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in b)
        and b[2] >= 0
        and b[3] >= 0
    )


class CocoIndex:
    """The parsed annotation file of one split: its images (with a kept object) and their kept objects."""

    def __init__(self, root: Path, split: str, keep_unseen: bool = False) -> None:
        check_split(split)
        self.root = coco_root(Path(root))
        self.split = split
        self.path = annotation_file(self.root, split)
        self.classes = ov_coco_classes()
        fix = SETUP.format(what=f"the 2017 train/val annotations ({self.path.name})", root=self.root)
        data = read_json(self.path, "COCO annotation file", fix)
        if not isinstance(data, dict) or not all(k in data for k in ("images", "annotations", "categories")):
            raise SubptError(
                f"COCO annotation file {self.path} lacks 'images', 'annotations' or 'categories'; "
                "it must be an instances_*.json file"
            )
        by_name: dict[str, int] = {}
        for c in data["categories"]:
            if not (isinstance(c, dict) and "id" in c and "name" in c):
                raise SubptError(f"COCO annotation file {self.path}: a category lacks 'id' or 'name'")
            by_name[str(c["name"])] = c["id"]
        absent = [n for n in OV_COCO_NAMES if n not in by_name]
        if absent:
            raise SubptError(
                f"COCO annotation file {self.path} has no categor{'y' if len(absent) == 1 else 'ies'} "
                f"{', '.join(repr(n) for n in absent[:5])}{' ...' if len(absent) > 5 else ''}; OV-COCO needs the "
                "65 classes under their COCO 2017 names"
            )
        label_of = {by_name[n]: i for i, n in enumerate(OV_COCO_NAMES)}
        kept = set(self.classes.seen) | (set(self.classes.unseen) if split == "val" or keep_unseen else set())
        images: dict[Any, dict] = {}
        for im in data["images"]:
            if not (isinstance(im, dict) and all(k in im for k in ("id", "file_name", "height", "width"))):
                raise SubptError(
                    f"COCO annotation file {self.path}: an image entry lacks 'id', 'file_name', 'height' or "
                    "'width'"
                )
            images[im["id"]] = im
        objects: dict[Any, list[_Object]] = defaultdict(list)
        for ann in data["annotations"]:
            if not (isinstance(ann, dict) and all(k in ann for k in ("image_id", "category_id", "bbox"))):
                raise SubptError(
                    f"COCO annotation file {self.path}: annotation {ann.get('id') if isinstance(ann, dict) else ann!r}"
                    " lacks 'image_id', 'category_id' or 'bbox'"
                )
            label = label_of.get(ann["category_id"])
            if label is None or label not in kept:
                continue
            if ann["image_id"] not in images:
                raise SubptError(
                    f"COCO annotation file {self.path}: annotation {ann.get('id')} names image_id "
                    f"{ann['image_id']!r}, which is not in 'images'"
                )
            if not _valid_bbox(ann["bbox"]):
                raise SubptError(
                    f"COCO annotation file {self.path}: annotation {ann.get('id')} has bbox {ann['bbox']!r}; "
                    "it must be [x, y, width, height] with width, height >= 0"
                )
            objects[ann["image_id"]].append(
                _Object(
                    label,
                    tuple(ann["bbox"]),
                    ann.get("segmentation"),
                    bool(ann.get("iscrowd", 0)),
                    ann.get("id"),
                )
            )
        ids = sorted((i for i, objs in objects.items() if any(not o.crowd for o in objs)), key=_sort_key)
        self.images = [images[i] for i in ids]
        self.objects = [objects[i] for i in ids]
        self.num_annotation_images = len(images)

    def image_path(self, i: int) -> Path:
        """Path of image i of the split."""
        return image_folder(self.root, self.split) / str(self.images[i]["file_name"])

    def image(self, i: int) -> np.ndarray:
        """(H, W, 3) uint8 pixels of image i, checked against the annotation file's size."""
        info = self.images[i]
        path = self.image_path(i)
        img = read_rgb(path, SETUP.format(what=f"{self.split}2017.zip", root=self.root))
        if img.shape[:2] != (int(info["height"]), int(info["width"])):
            raise SubptError(
                f"image {path} is {img.shape[1]}x{img.shape[0]} but {self.path} says "
                f"{info['width']}x{info['height']}; re-extract the images of this annotation file's release"
            )
        return img

    def scene(self, i: int) -> Scene:
        """Scene of image i: its pixels and kept objects (see the module docstring)."""
        image = self.image(i)
        h, w = image.shape[:2]
        labels, boxes, masks, crowd = [], [], [], []
        for o in self.objects[i]:
            x, y, bw, bh = o.bbox
            try:
                m = _decode_segmentation(o.segmentation, h, w)
            except Exception as e:
                raise SubptError(
                    f"COCO annotation file {self.path}: annotation {o.ann_id} has a segmentation that does not "
                    f"decode ({e}); fix or remove it"
                ) from None
            if m is None or not m.any():
                m = _box_mask((x, y, x + bw, y + bh), h, w)
            if o.crowd:
                crowd.append(m)
                continue
            labels.append(o.label)
            masks.append(m)
            boxes.append(mask_extent(m))
        k = len(labels)
        mask_arr = np.stack(masks) if k else np.zeros((0, h, w), dtype=bool)
        areas = mask_arr.reshape(k, -1).sum(axis=1).astype(np.int64)
        instances = np.full((h, w), BACKGROUND, dtype=np.int16)
        for j in sorted(range(k), key=lambda j: (-int(areas[j]), j)):  # largest first, smallest on top
            instances[mask_arr[j]] = j
        for m in crowd:
            instances[m & (instances == BACKGROUND)] = IGNORE
        return Scene(
            image=image,
            instances=instances,
            boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
            labels=np.array(labels, dtype=np.int64),
            masks=mask_arr,
            full_areas=areas,
        )


def _sort_key(image_id: Any) -> tuple[int, Any]:
    return (0, image_id) if isinstance(image_id, int) else (1, str(image_id))


def read_proposal_file(path: Path, image_ids: set) -> dict[Any, list[dict]]:
    """The entries of a COCO-style proposal JSON grouped by image id, for the images in `image_ids`; a missing
    file, bad JSON or an entry without a valid image_id / bbox / score is a SubptError naming file and field."""
    what = "proposal file"
    fix = "it must be a JSON list of {image_id, bbox [x, y, w, h], score[, segmentation]}"
    data = read_json(path, what, fix)
    if not isinstance(data, list):
        raise SubptError(f"{what} {path} holds a {type(data).__name__}, not a list; {fix}")
    out: dict[Any, list[dict]] = defaultdict(list)
    for n, e in enumerate(data):
        if not isinstance(e, dict):
            raise SubptError(f"{what} {path}: entry {n} is a {type(e).__name__}, not an object; {fix}")
        for field in ("image_id", "bbox", "score"):
            if field not in e:
                raise SubptError(f"{what} {path}: entry {n} has no '{field}'; {fix}")
        if not _valid_bbox(e["bbox"]):
            raise SubptError(
                f"{what} {path}: entry {n} has 'bbox' {e['bbox']!r}; it must be [x, y, width, height] of four "
                "finite numbers with width, height >= 0"
            )
        s = e["score"]
        if not (isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s)):
            raise SubptError(f"{what} {path}: entry {n} has 'score' {s!r}; it must be a finite number")
        if e["image_id"] in image_ids:
            out[e["image_id"]].append(e)
    if image_ids and not out:
        raise SubptError(
            f"{what} {path} has no proposal for any image of this split ({len(data)} entries); is it the file "
            "for this split (its image_id values must be the annotation file's image ids)?"
        )
    return out


def file_proposals(index: CocoIndex, path: Path, max_proposals: int) -> LazySequence[Proposals]:
    """Proposals of every image of `index` from a COCO-style JSON file (made on demand)."""
    grouped = read_proposal_file(path, {im["id"] for im in index.images})

    def make(i: int) -> Proposals:
        info = index.images[i]
        h, w = int(info["height"]), int(info["width"])
        entries = sorted(grouped.get(info["id"], []), key=lambda e: -float(e["score"]))[:max_proposals]
        boxes, masks = [], []
        for e in entries:
            x, y, bw, bh = (float(v) for v in e["bbox"])
            box = (max(x, 0.0), max(y, 0.0), min(x + bw, float(w)), min(y + bh, float(h)))
            if box[2] <= box[0] or box[3] <= box[1]:
                continue  # empty inside the image
            try:
                m = _decode_segmentation(e.get("segmentation"), h, w)
            except Exception as err:
                raise SubptError(
                    f"proposal file {path}: a proposal of image_id {info['id']!r} has a segmentation that does "
                    f"not decode ({err})"
                ) from None
            boxes.append(box)
            masks.append(m if m is not None and m.any() else _box_mask(box, h, w))
        if not boxes:
            return Proposals(np.zeros((0, 4), np.float32), np.zeros((0, h, w), bool))
        return Proposals(np.array(boxes, dtype=np.float32), np.stack(masks))

    return LazySequence(len(index.images), make)


def coco_source(root: Path, split: str, options: CocoOptions | None = None) -> DenseSource:
    """The OV-COCO `split` (train or val) under `root` as a DenseSource (lazy scenes; see the module docstring)."""
    options = options or CocoOptions()
    options.validate()
    index = CocoIndex(root, split, keep_unseen=options.keep_unseen)
    if not index.images:
        raise SubptError(f"COCO annotation file {index.path} has no image with an object of the kept classes")
    if options.max_images is not None:
        index.images = index.images[: options.max_images]
        index.objects = index.objects[: options.max_images]
    n = len(index.images)
    if options.proposals is not None:
        proposals = file_proposals(index, Path(options.proposals), options.max_proposals)
        prop_key: dict = {"file": file_fingerprint(Path(options.proposals)), "max": options.max_proposals}
    else:
        from subpt.dense.realdata import PHOTO_PROPOSALS

        proposals = label_free_proposals(n, index.image)
        prop_key = {"label_free": PHOTO_PROPOSALS.key()}
    key = {
        "dataset": "coco",
        "root": str(index.root.resolve()),
        "split": split,
        "annotations": file_fingerprint(index.path),
        "options": {**asdict(options), "proposals": prop_key},
    }
    return DenseSource(
        name=f"coco-{split}",
        classes=index.classes,
        scenes=LazySequence(n, index.scene),
        proposals=proposals,
        key=key,
    )
