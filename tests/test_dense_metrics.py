"""Dense metrics and decisions on hand-made cases whose AP50, IoU and painted labels are known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from subpt.dense.evaluate import box_ap50, decide, detections, harmonic, paint, segmentation_iou, square_crop


def dets(boxes, scores, labels):
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor(scores, dtype=torch.float32),
        "labels": torch.tensor(labels, dtype=torch.long),
    }


def gts(boxes, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "labels": torch.tensor(labels)}


def test_ap50_hand_case_seen_unseen_and_harmonic_mean():
    # class 0: exact hit (AP 100); class 1: the only detection has IoU 25/175 < 0.5 (AP 0);
    # class 2 (unseen): IoU 320/400 = 0.8 (AP 100); class 3 (unseen) has no ground truth and is left out.
    target = gts([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 60, 60]], [0, 1, 2])
    pred = dets([[0, 0, 10, 10], [25, 25, 35, 35], [40, 40, 60, 56]], [0.9, 0.8, 0.7], [0, 1, 2])
    out = box_ap50([pred], [target], seen=[0, 1], unseen=[2, 3])
    assert out["ap50_per_class"] == pytest.approx({0: 100.0, 1: 0.0, 2: 100.0})
    assert out["ap50_seen"] == pytest.approx(50.0)
    assert out["ap50_unseen"] == pytest.approx(100.0)
    assert out["ap50_hm"] == pytest.approx(200.0 / 3.0)


def test_ap50_a_confident_false_positive_halves_the_precision():
    # ranked: a false positive (0.9), then the hit (0.5): precision 1/2 at recall 1, so AP = 50
    target = gts([[0, 0, 10, 10]], [0])
    pred = dets([[50, 50, 60, 60], [0, 0, 10, 10]], [0.9, 0.5], [0, 0])
    assert box_ap50([pred], [target], seen=[0], unseen=[1])["ap50_seen"] == pytest.approx(50.0)


def test_ap50_a_wrong_name_is_a_miss_for_both_classes():
    target = gts([[0, 0, 10, 10]], [1])
    pred = dets([[0, 0, 10, 10]], [0.9], [0])
    out = box_ap50([pred], [target], seen=[0], unseen=[1])
    assert out["ap50_unseen"] == 0.0 and math.isnan(out["ap50_seen"])  # class 0 has no ground truth


def test_miou_hand_case():
    b = 2  # background label for two classes
    target = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, b, b], [0, 0, b, b]])
    pred = np.array([[0, b, 1, b], [0, b, 1, b], [0, 0, 1, b], [0, 0, 1, b]])
    out = segmentation_iou([pred], [target], num_classes=2, seen=[0], unseen=[1])
    assert out["miou_seen"] == pytest.approx(75.0)  # 6 / 8
    assert out["miou_unseen"] == pytest.approx(100.0 / 3)  # 2 / 6
    assert out["iou_background"] == pytest.approx(25.0)  # 2 / 8
    assert out["hiou"] == pytest.approx(2 * 75 * (100 / 3) / (75 + 100 / 3))


def test_miou_accumulates_pixels_over_scenes_not_scene_means():
    b = 1
    t1, p1 = np.array([[0, 0, 0, 0]]), np.array([[0, 0, 0, 0]])  # 4 / 4
    t2, p2 = np.array([[0, b, b, b]]), np.array([[b, 0, b, b]])  # 0 / 2
    out = segmentation_iou([p1, p2], [t1, t2], num_classes=1, seen=[0], unseen=[])
    assert out["miou_seen"] == pytest.approx(100.0 * 4 / 6)
    assert math.isnan(out["miou_unseen"]) and math.isnan(out["hiou"])


def test_paint_highest_score_wins_and_low_scores_are_background():
    masks = np.zeros((3, 2, 4), dtype=bool)
    masks[0, :, 0:2] = True  # label 0, score 0.6
    masks[1, :, 1:3] = True  # label 1, score 0.9: wins column 1
    masks[2, :, 3] = True  # label 0, score 0.1: below the threshold
    labels, scores = torch.tensor([0, 1, 0]), torch.tensor([0.6, 0.9, 0.1])
    kept = scores >= 0.3
    out = paint(masks, labels, scores, kept, background=5)
    assert out.tolist() == [[0, 1, 1, 5], [0, 1, 1, 5]]


def test_decide_threshold_and_chance():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]])
    labels, scores, kept = decide(probs, threshold=0.5)
    assert (
        labels.tolist() == [0, 0]
        and scores.tolist() == pytest.approx([0.7, 0.4])
        and kept.tolist() == [True, False]
    )
    many = torch.full((3000, 3), 1 / 3)
    many[:, 0] += 0.1
    rand, s, k = decide(many, 0.0, chance=torch.Generator().manual_seed(0))
    counts = torch.bincount(rand, minlength=3).float() / 3000
    assert (counts - 1 / 3).abs().max() < 0.04  # uniform names, not the argmax
    assert torch.equal(s, many.max(dim=-1).values) and bool(k.all())  # same scores and kept regions


def test_detections_suppress_duplicates_of_one_class_only():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 11], [0, 0, 10, 10]], dtype=np.float32)
    labels, scores = torch.tensor([0, 0, 1]), torch.tensor([0.9, 0.8, 0.7])
    out = detections(boxes, labels, scores, torch.tensor([True, True, True]))
    assert out["labels"].tolist() == [0, 1] and out["scores"].tolist() == pytest.approx([0.9, 0.7])
    none = detections(boxes, labels, scores, torch.tensor([False, False, False]))
    assert none["boxes"].shape == (0, 4)


def test_square_crop_geometry_padding_and_mask():
    image = np.arange(10 * 10 * 3, dtype=np.uint8).reshape(10, 10, 3)
    crop = np.asarray(
        square_crop(image, [2, 2, 6, 4], 1.0, (1, 2, 3))
    )  # 4 x 2 box: a 4 x 4 square around (4, 3)
    assert crop.shape == (4, 4, 3) and np.array_equal(crop, image[1:5, 2:6])
    edge = np.asarray(square_crop(image, [0, 0, 2, 2], 2.0, (1, 2, 3)))  # 4 x 4 square from (-1, -1)
    assert edge.shape == (4, 4, 3) and (edge[0] == (1, 2, 3)).all() and (edge[:, 0] == (1, 2, 3)).all()
    assert np.array_equal(edge[1:, 1:], image[0:3, 0:3])
    mask = np.zeros((10, 10), dtype=bool)
    mask[2, 2] = True
    masked = np.asarray(square_crop(image, [2, 2, 6, 4], 1.0, (1, 2, 3), mask=mask))
    assert np.array_equal(masked[1, 0], image[2, 2]) and (masked[0, 0] == (1, 2, 3)).all()
    assert int((masked != np.array([1, 2, 3], dtype=np.uint8)).any(axis=-1).sum()) == 1


def test_harmonic_mean():
    assert harmonic(50.0, 100.0) == pytest.approx(200.0 / 3)
    assert harmonic(0.0, 0.0) == 0.0 and math.isnan(harmonic(float("nan"), 1.0))
