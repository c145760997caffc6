"""Tiny fake COCO 2017 and PASCAL VOC 2012 trees in their real on-disk formats, for tests.

`make_fake_coco(root)` writes `annotations/instances_{train,val}2017.json` (all 80 categories with their real ids;
polygon, compressed-RLE and crowd uncompressed-RLE segmentations made by pycocotools) and `{train,val}2017/*.jpg`
images of drawn shapes. `make_fake_voc(root)` writes `VOCdevkit/VOC2012` with JPEG images, palette PNG class and
object maps (255 borders) and the two split files. `COCO_OBJECTS` / `VOC_OBJECTS` say what each image holds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from subpt.dense.coco import COCO_NAMES

W, H = 48, 40
SKIPPED_IDS = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}  # COCO's unused category ids
COCO_IDS = [i for i in range(1, 91) if i not in SKIPPED_IDS]
CAT_ID = dict(zip(COCO_NAMES, COCO_IDS, strict=True))

# Per split: image id -> list of (class name, kind, (x0, y0, x1, y1), iscrowd); kind: poly, rle or none.
COCO_OBJECTS: dict[str, dict[int, list[tuple[str, str, tuple[int, int, int, int], int]]]] = {
    "train": {
        1: [("person", "poly", (4, 6, 20, 30), 0), ("cat", "rle", (24, 8, 40, 24), 0)],
        2: [("dog", "rle", (10, 10, 30, 30), 0)],  # only an unseen object: left out of OV-COCO train
        3: [("bicycle", "none", (2, 2, 12, 12), 0), ("stop sign", "poly", (30, 20, 44, 36), 0)],
    },
    "val": {
        11: [("person", "poly", (4, 6, 20, 30), 0), ("cat", "rle", (24, 8, 40, 24), 0)],
        12: [("cup", "rle", (6, 6, 18, 18), 0), ("dog", "crowd", (20, 14, 46, 38), 1)],
        13: [("stop sign", "poly", (30, 20, 44, 36), 0)],  # no OV-COCO object: left out
    },
}


def _coco_segmentation(kind: str, box: tuple[int, int, int, int]) -> object:
    x0, y0, x1, y1 = box
    if kind == "poly":
        return [[x0, y0, x1, y0, x1, y1, x0, y1]]
    m = np.zeros((H, W), dtype=np.uint8, order="F")
    yy, xx = np.mgrid[:H, :W]
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, min(x1 - x0, y1 - y0) / 2
    m[(xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r] = 1
    if kind == "crowd":  # crowd regions come as uncompressed RLE: counts as a list of run lengths
        flat = m.flatten(order="F")
        runs, cur, n = [], 0, 0
        for v in flat:
            if v != cur:
                runs.append(n)
                cur, n = v, 0
            n += 1
        runs.append(n)
        return {"size": [H, W], "counts": runs}
    rle = mask_utils.encode(m)
    return {"size": rle["size"], "counts": rle["counts"].decode()}


def make_fake_coco(root: Path) -> Path:
    """Write the fake COCO tree under `root` and return `root`."""
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    categories = [{"id": CAT_ID[n], "name": n, "supercategory": "thing"} for n in COCO_NAMES]
    ann_id = 100
    for split, per_image in COCO_OBJECTS.items():
        folder = root / f"{split}2017"
        folder.mkdir(exist_ok=True)
        images, anns = [], []
        for image_id, objects in per_image.items():
            name = f"{image_id:012d}.jpg"
            img = Image.new("RGB", (W, H), (90, 120, 90))
            draw = ImageDraw.Draw(img)
            for k, (cls, kind, box, crowd) in enumerate(objects):
                draw.rectangle([box[0], box[1], box[2] - 1, box[3] - 1], fill=(200, 40 * k, 30))
                x0, y0, x1, y1 = box
                ann = {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": CAT_ID[cls],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": float((x1 - x0) * (y1 - y0)),
                    "iscrowd": crowd,
                }
                if kind != "none":
                    ann["segmentation"] = _coco_segmentation(kind, box)
                anns.append(ann)
                ann_id += 1
            img.save(folder / name, quality=95)
            images.append({"id": image_id, "file_name": name, "height": H, "width": W})
        data = {"images": images, "annotations": anns, "categories": categories}
        (root / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(data))
    return root


# Per split: image id -> list of (VOC class value 1-20, (x0, y0, x1, y1)); each object gets a 1-px void border.
VOC_OBJECTS: dict[str, dict[str, list[tuple[int, tuple[int, int, int, int]]]]] = {
    "train": {
        "2007_000001": [(1, (4, 4, 20, 20)), (17, (26, 10, 44, 34))],  # aeroplane, sheep (unseen)
        "2007_000002": [(15, (8, 6, 40, 36))],  # person
    },
    "val": {
        "2008_000001": [(20, (4, 4, 24, 24)), (12, (28, 8, 44, 30))],  # tv monitor, dog
        "2008_000002": [(16, (10, 10, 30, 30))],  # potted plant
    },
}


def palette_png(values: np.ndarray, path: Path) -> None:
    """Save label values as a palette PNG with a full 256-colour palette (so Pillow keeps the indices)."""
    img = Image.fromarray(values.astype(np.uint8), mode="P")
    palette = [0, 0, 0] + [(37 * i) % 256 for i in range(3, 765)]
    palette[255 * 3 : 255 * 3 + 3] = [224, 224, 192]  # VOC's void colour
    img.putpalette(palette[:768])
    img.save(path)


def make_fake_voc(root: Path) -> Path:
    """Write the fake VOC 2012 tree under `root` (as `root/VOCdevkit/VOC2012`) and return `root`."""
    base = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationObject", "ImageSets/Segmentation"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    for split, per_image in VOC_OBJECTS.items():
        for image_id, objects in per_image.items():
            img = Image.new("RGB", (W, H), (60, 90, 150))
            draw = ImageDraw.Draw(img)
            cls = np.zeros((H, W), dtype=np.uint8)
            obj = np.zeros((H, W), dtype=np.uint8)
            for k, (value, (x0, y0, x1, y1)) in enumerate(objects, start=1):
                draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=(220, 30 * k, 20))
                cls[y0 - 1 : y1 + 1, x0 - 1 : x1 + 1] = 255  # the void border around the object
                obj[y0 - 1 : y1 + 1, x0 - 1 : x1 + 1] = 255
                cls[y0:y1, x0:x1] = value
                obj[y0:y1, x0:x1] = k
            img.save(base / "JPEGImages" / f"{image_id}.jpg", quality=95)
            palette_png(cls, base / "SegmentationClass" / f"{image_id}.png")
            palette_png(obj, base / "SegmentationObject" / f"{image_id}.png")
        (base / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(per_image) + "\n")
    return root
