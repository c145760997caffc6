"""Class-agnostic region proposals from pixels alone: graph-based segmentation, then selective-search grouping.

`propose(image)` takes nothing but the image (and fixed parameters): no label, box or mask of any scene reaches it.
1. scikit-image's `felzenszwalb` segments the image (Felzenszwalb & Huttenlocher 2004): `scale` sets the preferred
   segment size (larger: fewer, larger segments), `sigma` the Gaussian smoothing before segmentation (it absorbs the
   pixel noise), `min_size` the smallest segment kept (smaller ones are merged into a neighbour).
2. Hierarchical grouping as in selective search (Uijlings et al. 2013): repeatedly merge the two most similar
   adjacent regions, similarity = colour (intersection of 25-bin per-channel histograms) + size (small regions merge
   first) + fill (regions whose joint box they fill well merge first). Every segment and every merged region is a
   proposal; an object made of several segments (body, stripes, outline, spot) appears as one merged region.
3. Filters, also from pixels alone: a proposal smaller than `min_area` pixels, or whose box covers more than
   `max_box_fraction` of the image (the background region and its unions), is dropped; duplicate masks are dropped;
   and a proposal more than `max_border_share` of whose pixels lie within `border_distance` (RGB, Euclidean) of the
   image border's median colour is dropped: a label-free objectness prior (the border is mostly background, so a
   region of the border's colour is background). It suits the embedded world, whose scenes have one background
   colour; on real photographs it is a weak prior and should be disabled (max_border_share = 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.segmentation import felzenszwalb

from subpt.dense.settings import ProposalParams
from subpt.errors import SubptError

BINS = 25


@dataclass
class Proposals:
    """Boxes (m, 4) float32 [x0, y0, x1, y1) and masks (m, H, W) bool of one image's proposals."""

    boxes: np.ndarray
    masks: np.ndarray

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


def _histogram(pixels: np.ndarray) -> np.ndarray:
    h = np.concatenate([np.histogram(pixels[:, c], bins=BINS, range=(0, 256))[0] for c in range(3)]).astype(
        np.float64
    )
    return h / max(h.sum(), 1.0)


def _neighbours(seg: np.ndarray) -> set[tuple[int, int]]:
    pairs = set()
    for a, b in ((seg[:, :-1], seg[:, 1:]), (seg[:-1, :], seg[1:, :])):
        diff = a != b
        for i, j in zip(a[diff].tolist(), b[diff].tolist()):
            pairs.add((min(i, j), max(i, j)))
    return pairs


def propose(image: np.ndarray, params: ProposalParams | None = None) -> Proposals:
    """Class-agnostic proposals (boxes and masks) of an (H, W, 3) uint8 image, computed from its pixels alone."""
    params = params or ProposalParams()
    params.validate()
    if not (
        isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    ):
        got = getattr(image, "shape", type(image).__name__)
        raise SubptError(f"propose needs an (H, W, 3) uint8 image, got {got}")
    h, w = image.shape[:2]
    seg = felzenszwalb(
        image, scale=params.scale, sigma=params.sigma, min_size=params.min_size, channel_axis=-1
    )
    n = int(seg.max()) + 1
    flat = seg.ravel()
    pixels = image.reshape(-1, 3)
    order = np.argsort(flat, kind="stable")
    starts = np.searchsorted(flat[order], np.arange(n + 1))
    ys, xs = np.divmod(np.arange(h * w), w)
    regions: dict[int, dict] = {}
    members: dict[int, np.ndarray] = {}
    for r in range(n):
        idx = order[starts[r] : starts[r + 1]]
        members[r] = idx
        regions[r] = {
            "size": idx.size,
            "hist": _histogram(pixels[idx]),
            "box": (int(xs[idx].min()), int(ys[idx].min()), int(xs[idx].max()) + 1, int(ys[idx].max()) + 1),
        }
    image_area = float(h * w)
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]).astype(np.float64)
    like_border = np.linalg.norm(pixels - np.median(border, axis=0), axis=1) <= params.border_distance

    def similarity(a: int, b: int) -> float:
        ra, rb = regions[a], regions[b]
        colour = float(np.minimum(ra["hist"], rb["hist"]).sum())
        size = 1.0 - (ra["size"] + rb["size"]) / image_area
        box = _union(ra["box"], rb["box"])
        fill = 1.0 - ((box[2] - box[0]) * (box[3] - box[1]) - ra["size"] - rb["size"]) / image_area
        return colour + size + fill

    sims = {pair: similarity(*pair) for pair in _neighbours(seg)}
    order_of_regions = list(range(n))
    next_id = n
    while sims:
        a, b = max(sims, key=lambda p: (sims[p], -p[0], -p[1]))
        t = next_id
        next_id += 1
        ra, rb = regions[a], regions[b]
        size = ra["size"] + rb["size"]
        regions[t] = {
            "size": size,
            "hist": (ra["hist"] * ra["size"] + rb["hist"] * rb["size"]) / size,
            "box": _union(ra["box"], rb["box"]),
        }
        members[t] = np.concatenate([members[a], members[b]])
        order_of_regions.append(t)
        touching = {i for p in sims if a in p or b in p for i in p} - {a, b}
        sims = {p: s for p, s in sims.items() if a not in p and b not in p}
        for i in touching:
            sims[(i, t)] = similarity(i, t)
    boxes, masks, seen = [], [], set()
    for r in order_of_regions:
        reg = regions[r]
        x0, y0, x1, y1 = reg["box"]
        if reg["size"] < params.min_area or (x1 - x0) * (y1 - y0) > params.max_box_fraction * image_area:
            continue
        if params.max_border_share < 1 and like_border[members[r]].mean() > params.max_border_share:
            continue
        key = tuple(np.sort(members[r]).tolist())
        if key in seen:
            continue
        seen.add(key)
        m = np.zeros(h * w, dtype=bool)
        m[members[r]] = True
        boxes.append(reg["box"])
        masks.append(m.reshape(h, w))
        if len(boxes) >= params.max_proposals:
            break
    if not boxes:
        return Proposals(np.zeros((0, 4), np.float32), np.zeros((0, h, w), bool))
    return Proposals(np.array(boxes, dtype=np.float32), np.stack(masks))


def _union(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])
