"""Labelling proposals for region prompt learning: each proposal becomes a class region, a background region, or
is left out, by its overlap (IoU) with the ground-truth objects.

The rule (Fast R-CNN's, with an ignored band as in most two-stage detectors):
- IoU >= FG_IOU (0.5) with an object: the region of that object's class (the object of highest IoU);
- IoU < BG_IOU (0.3) with every object: background;
- in between: ignored (neither a clean object crop nor clean background).
IoU is box IoU for the box task (detection) and mask IoU for the mask task (segmentation).

Training regions (`train_labels`) never contain an unseen object: a proposal whose region (its box for the box
task, its mask for the mask task) covers any visible pixel of an unseen object is left out, whatever its IoU.
So unseen objects are neither trained as their class (their names are not in training) nor as background (which
would teach the context that they are not objects). Test regions (`test_labels`) keep every class.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

FG_IOU = 0.5
BG_IOU = 0.3
BACKGROUND_REGION = -1  # label of a background region
IGNORED = (
    -2
)  # label of a proposal left out (IoU in the ignored band, or touching an unseen object in training)
KINDS = ("box", "mask")
IGNORE_SHARE = 0.5  # share of a training region on unlabelled pixels above which it is left out


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU (m, k) of boxes a (m, 4) and b (k, 4), [x0, y0, x1, y1) in pixels."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU (m, k) of boolean masks a (m, H, W) and b (k, H, W)."""
    fa = a.reshape(a.shape[0], -1).astype(np.float64)
    fb = b.reshape(b.shape[0], -1).astype(np.float64)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _box_region(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(m, H, W) masks of the pixels inside each box."""
    h, w = shape
    ys, xs = np.arange(h)[:, None], np.arange(w)[None, :]
    out = np.zeros((len(boxes), h, w), dtype=bool)
    for i, (x0, y0, x1, y1) in enumerate(np.asarray(boxes).reshape(-1, 4)):
        out[i] = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
    return out


def overlaps(
    kind: str, boxes: np.ndarray, masks: np.ndarray, gt_boxes: np.ndarray, gt_masks: np.ndarray
) -> np.ndarray:
    """IoU (m, k) of proposals with objects: box IoU for the box task, mask IoU for the mask task."""
    if kind == "box":
        return box_iou(boxes, gt_boxes)
    return mask_iou(masks, gt_masks)


def assign(iou: np.ndarray, gt_labels: np.ndarray) -> np.ndarray:
    """Label of every proposal from its IoU (m, k) with k objects: the best object's class at IoU >= FG_IOU,
    BACKGROUND_REGION below BG_IOU with every object, IGNORED in between."""
    m = iou.shape[0]
    if iou.shape[1] == 0:
        return np.full(m, BACKGROUND_REGION, dtype=np.int64)
    best = iou.argmax(1)
    top = iou[np.arange(m), best]
    out = np.full(m, IGNORED, dtype=np.int64)
    out[top >= FG_IOU] = np.asarray(gt_labels, dtype=np.int64)[best[top >= FG_IOU]]
    out[top < BG_IOU] = BACKGROUND_REGION
    return out


def test_labels(
    kind: str,
    boxes: np.ndarray,
    masks: np.ndarray,
    gt_boxes: np.ndarray,
    gt_masks: np.ndarray,
    gt_labels: np.ndarray,
) -> np.ndarray:
    """Labels of one scene's proposals for evaluation: every class, background, or IGNORED."""
    return assign(overlaps(kind, boxes, masks, gt_boxes, gt_masks), gt_labels)


def train_labels(
    kind: str,
    boxes: np.ndarray,
    masks: np.ndarray,
    gt_boxes: np.ndarray,
    gt_masks: np.ndarray,
    gt_labels: np.ndarray,
    seen: Collection[int],
    ignore: np.ndarray | None = None,
) -> np.ndarray:
    """Labels of one scene's proposals for training: seen classes and background only; a proposal whose region
    (box or mask, by `kind`) covers a visible pixel of an unseen object is IGNORED, as is any unseen-class match.

    `ignore` (H, W) marks pixels a real dataset leaves unlabelled (`subpt.dense.source.IGNORE`: COCO crowds, VOC's
    void band and the unseen objects a zero-shot training split removes): a proposal with at least IGNORE_SHARE of
    its region on them is IGNORED too, since its label is unknown."""
    labels = test_labels(kind, boxes, masks, gt_boxes, gt_masks, gt_labels)
    seen = set(int(c) for c in seen)
    unseen_objects = [j for j, c in enumerate(np.asarray(gt_labels).tolist()) if c not in seen]
    if ignore is not None and bool(ignore.any()) and len(labels):
        region = _box_region(boxes, ignore.shape) if kind == "box" else masks
        area = region.reshape(len(labels), -1).sum(1)
        on_ignore = (region & ignore[None]).reshape(len(labels), -1).sum(1)
        labels[on_ignore >= IGNORE_SHARE * np.maximum(area, 1)] = IGNORED
    if unseen_objects and len(labels):
        region = _box_region(boxes, gt_masks.shape[1:]) if kind == "box" else masks
        covered = np.any(gt_masks[unseen_objects], axis=0)
        touches = (region & covered[None]).reshape(len(labels), -1).any(1)
        labels[touches] = IGNORED
    labels[(labels >= 0) & ~np.isin(labels, list(seen))] = IGNORED
    return labels
