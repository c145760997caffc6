"""PASCAL VOC 2012 segmentation with the zero-shot 15 seen / 5 unseen split as a `DenseSource`.

Layout (the VOC2012 trainval archive): `ROOT/VOCdevkit/VOC2012/` holding `JPEGImages/<id>.jpg`,
`SegmentationClass/<id>.png`, `SegmentationObject/<id>.png` and `ImageSets/Segmentation/{train,val}.txt`
(1464 and 1449 ids); ROOT may also be `VOCdevkit/` or `VOC2012/` itself. The SBD-augmented training list
(`train_aug`, 10582 images) is NOT supported: its labels come as SBD `.mat` files or third-party converted PNGs
without object maps, a different layout.

Labels: the 20 VOC classes in VOC's order (aeroplane = 0, ..., tv monitor = 19; the PNGs' values minus one),
named in plain words for the text prompts ("dining table", "potted plant", "tv monitor"). Unseen: potted plant,
sheep, sofa, train, tv monitor (labels 15-19; METHOD.md section 8); seen: the other 15 (labels 0-14).

The label PNGs are palette images whose values are the labels: in `SegmentationClass` 0 = background, 1-20 the
classes, 255 = "void" (object borders and ambiguous pixels); in `SegmentationObject` 0 = background, 1..N the
objects, 255 = void. An object's class is the most frequent class of its pixels. In a scene, void pixels are
`IGNORE` in `instances` (evaluation skips them; `Scene.semantic` shows them as BACKGROUND). On the train split the
objects of unseen classes are removed and their pixels are `IGNORE` too, unless `keep_unseen`: training never
sees an unseen object, as an unlabelled one or as background.

Mask proposals: a folder with one file per image, `<id>.npz` (array `masks`, (m, H, W) bool) or `<id>.png` (a
label map: every distinct value is one segment, e.g. superpixels); or, without a folder, the label-free generator
with the photograph settings (`realdata.PHOTO_PROPOSALS`: the border prior off).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from subpt.dense.proposals import Proposals
from subpt.dense.realdata import (
    PHOTO_PROPOSALS,
    LazySequence,
    check_reader_options,
    file_fingerprint,
    label_free_proposals,
    mask_extent,
    proposals_from_masks,
    read_index_png,
    read_rgb,
)
from subpt.dense.source import IGNORE, DenseSource
from subpt.embedded.scenes import BACKGROUND, Scene, SceneClasses
from subpt.errors import SubptError

VOC_NAMES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "dining table", "dog",
    "horse", "motorbike", "person", "potted plant", "sheep", "sofa", "train", "tv monitor",
)  # fmt: skip
VOC_UNSEEN = ("potted plant", "sheep", "sofa", "train", "tv monitor")
VOID = 255
SPLITS = ("train", "val")
SETUP = (
    "download VOCtrainval_11-May-2012.tar from http://host.robots.ox.ac.uk/pascal/VOC/voc2012/ and extract it "
    "into {root}"
)


def voc_classes() -> SceneClasses:
    """The 20 VOC classes in VOC's order, with the 15 seen and 5 unseen labels."""
    return SceneClasses(
        names=VOC_NAMES,
        kinds=(),
        seen=tuple(i for i, n in enumerate(VOC_NAMES) if n not in VOC_UNSEEN),
        unseen=tuple(i for i, n in enumerate(VOC_NAMES) if n in VOC_UNSEEN),
        options=(("dataset", "voc"), ("classes", "voc-15-5")),
    )


def voc_root(root: Path) -> Path:
    """The VOC2012 folder under `root` (given as the folder holding VOCdevkit/, VOCdevkit/ or VOC2012/)."""
    root = Path(root)
    for cand in (root / "VOCdevkit" / "VOC2012", root / "VOC2012", root):
        if (cand / "JPEGImages").is_dir() or (cand / "ImageSets").is_dir():
            return cand
    return root / "VOCdevkit" / "VOC2012"


def split_file(root: Path, split: str) -> Path:
    """`VOC2012/ImageSets/Segmentation/{split}.txt`."""
    return voc_root(root) / "ImageSets" / "Segmentation" / f"{split}.txt"


def check_split(split: str) -> None:
    """Raise a one-line SubptError for a split that is not train or val."""
    if split not in SPLITS:
        extra = "; the SBD-augmented train_aug list is not supported" if split == "train_aug" else ""
        raise SubptError(f"VOC split must be one of {', '.join(SPLITS)}, got {split!r}{extra}")


def read_ids(root: Path, split: str) -> list[str]:
    """Image ids listed in the split file (blank lines skipped)."""
    check_split(split)
    path = split_file(root, split)
    try:
        ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except FileNotFoundError:
        raise SubptError(f"VOC split file {path} does not exist; {SETUP.format(root=Path(root))}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SubptError(f"cannot read VOC split file {path} ({e}); re-extract the archive") from None
    if not ids:
        raise SubptError(f"VOC split file {path} lists no image; re-extract the archive")
    return ids


@dataclass(frozen=True)
class VocOptions:
    """Reader options: how many images, unseen objects in training, the proposal folder and its cap."""

    max_images: int | None = None  # the first this many ids of the split file; None: all
    keep_unseen: bool = False  # train split: keep unseen-class objects (not zero-shot practice)
    # folder of <id>.npz / <id>.png mask proposals; None: the label-free generator
    proposals: str | None = None
    max_proposals: int = 200  # first this many masks of a file

    def validate(self) -> None:
        """Raise a one-line SubptError for impossible settings."""
        check_reader_options(self.max_images, self.max_proposals)


class VocSplit:
    """The images of one VOC segmentation split and how to read each as a Scene."""

    def __init__(self, root: Path, split: str, keep_unseen: bool = False) -> None:
        self.base = voc_root(Path(root))
        self.split = split
        self.ids = read_ids(root, split)
        self.classes = voc_classes()
        self.dropped = set() if split == "val" or keep_unseen else set(self.classes.unseen)
        self.fix = f"re-extract it; {SETUP.format(root=Path(root))}"

    def image(self, i: int) -> np.ndarray:
        """(H, W, 3) uint8 pixels of image i."""
        return read_rgb(self.base / "JPEGImages" / f"{self.ids[i]}.jpg", self.fix)

    def scene(self, i: int) -> Scene:
        """Scene of image i (see the module docstring)."""
        image_id = self.ids[i]
        image = self.image(i)
        h, w = image.shape[:2]
        maps = {}
        for folder in ("SegmentationClass", "SegmentationObject"):
            path = self.base / folder / f"{image_id}.png"
            m = read_index_png(path, f"VOC {folder} map", self.fix)
            if m.shape != (h, w):
                raise SubptError(
                    f"VOC {folder} map {path} is {m.shape[1]}x{m.shape[0]}, its image {w}x{h}; {self.fix}"
                )
            bad = np.setdiff1d(np.unique(m), np.r_[0 : len(VOC_NAMES) + 1, VOID])
            if folder == "SegmentationClass" and bad.size:
                raise SubptError(
                    f"VOC {folder} map {path} holds value(s) {bad[:5].tolist()} outside 0-{len(VOC_NAMES)} and "
                    f"{VOID}; {self.fix}"
                )
            maps[folder] = m
        cls, obj = maps["SegmentationClass"], maps["SegmentationObject"]
        instances = np.full((h, w), BACKGROUND, dtype=np.int16)
        instances[(cls == VOID) | (obj == VOID)] = IGNORE
        labels, masks = [], []
        for j in np.unique(obj):
            if j in (0, VOID):
                continue
            m = obj == j
            votes = np.bincount(cls[m][(cls[m] > 0) & (cls[m] != VOID)], minlength=len(VOC_NAMES) + 1)
            if votes.sum() == 0:
                continue  # an object map region with no class pixel: nothing to name
            label = int(votes.argmax()) - 1
            if label in self.dropped:
                instances[m] = IGNORE
                continue
            instances[m] = len(labels)
            labels.append(label)
            masks.append(m)
        k = len(labels)
        mask_arr = np.stack(masks) if k else np.zeros((0, h, w), dtype=bool)
        return Scene(
            image=image,
            instances=instances,
            boxes=np.array([mask_extent(m) for m in mask_arr], dtype=np.float32).reshape(-1, 4),
            labels=np.array(labels, dtype=np.int64),
            masks=mask_arr,
            full_areas=mask_arr.reshape(k, -1).sum(axis=1).astype(np.int64),
        )


def _proposal_path(folder: Path, image_id: str) -> Path | None:
    for ext in (".npz", ".png"):
        p = folder / f"{image_id}{ext}"
        if p.is_file():
            return p
    return None


def folder_proposals(split: VocSplit, folder: Path, max_proposals: int) -> LazySequence[Proposals]:
    """Mask proposals of every image of the split from a folder of `<id>.npz` / `<id>.png` files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SubptError(f"proposal folder {folder} does not exist or is not a folder")
    paths = [_proposal_path(folder, i) for i in split.ids]
    missing = [i for i, p in zip(split.ids, paths) if p is None]
    if missing:
        raise SubptError(
            f"proposal folder {folder} has no {missing[0]}.npz or {missing[0]}.png ({len(missing)} of "
            f"{len(split.ids)} images lack one); write one file per image of the split"
        )

    def make(i: int) -> Proposals:
        path = paths[i]
        assert path is not None
        image = split.image(i)
        h, w = image.shape[:2]
        if path.suffix == ".npz":
            try:
                with np.load(path) as z:
                    if "masks" not in z.files:
                        raise SubptError(
                            f"proposal file {path} has no array 'masks' (it has {', '.join(z.files) or 'none'}); "
                            "save the (m, H, W) bool masks as masks="
                        )
                    masks = np.asarray(z["masks"])
            except SubptError:
                raise
            except Exception as e:
                raise SubptError(f"proposal file {path} does not load ({type(e).__name__}: {e})") from None
            if masks.ndim != 3 or masks.shape[1:] != (h, w):
                raise SubptError(
                    f"proposal file {path}: 'masks' has shape {list(masks.shape)}; it must be (m, {h}, {w}) for "
                    "this image"
                )
            masks = masks.astype(bool)
        else:
            seg = read_index_png(path, "proposal label map", "write one label PNG per image")
            if seg.shape != (h, w):
                raise SubptError(
                    f"proposal label map {path} is {seg.shape[1]}x{seg.shape[0]}, its image {w}x{h}"
                )
            masks = np.stack([seg == v for v in np.unique(seg)])
        return proposals_from_masks(masks[:max_proposals], h, w)

    return LazySequence(len(split.ids), make)


def voc_source(root: Path, split: str, options: VocOptions | None = None) -> DenseSource:
    """The VOC 2012 segmentation `split` (train or val) under `root` as a DenseSource (lazy scenes)."""
    options = options or VocOptions()
    options.validate()
    voc = VocSplit(root, split, keep_unseen=options.keep_unseen)
    if options.max_images is not None:
        voc.ids = voc.ids[: options.max_images]
    n = len(voc.ids)
    if options.proposals is not None:
        proposals = folder_proposals(voc, Path(options.proposals), options.max_proposals)
        prop_key: dict = {"folder": str(Path(options.proposals).resolve()), "max": options.max_proposals}
    else:
        proposals = label_free_proposals(n, voc.image)
        prop_key = {"label_free": PHOTO_PROPOSALS.key()}
    key = {
        "dataset": "voc",
        "root": str(voc.base.resolve()),
        "split": split,
        "split_file": file_fingerprint(split_file(root, split)),
        "options": {**asdict(options), "proposals": prop_key},
    }
    return DenseSource(
        name=f"voc-{split}",
        classes=voc.classes,
        scenes=LazySequence(n, voc.scene),
        proposals=proposals,
        key=key,
    )
