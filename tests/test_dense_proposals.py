"""Label-free proposals: computed from pixels alone, deterministic, and they do find the scenes' objects."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest

from subpt.dense.proposals import ProposalParams, propose
from subpt.embedded.scenes import make_scenes, scene_classes
from subpt.errors import SubptError


@pytest.fixture(scope="module")
def scenes():
    return make_scenes(scene_classes(), seed=11, n_scenes=15)


def box_iou(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0]), 0, None)
    iy = np.clip(np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1]), 0, None)
    inter = ix * iy
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area + (box[2] - box[0]) * (box[3] - box[1]) - inter)


def test_the_proposer_takes_only_the_image_and_fixed_parameters():
    assert list(inspect.signature(propose).parameters) == ["image", "params"]
    assert {f.name for f in dataclasses.fields(ProposalParams)}.isdisjoint(
        {"labels", "boxes", "masks", "classes"}
    )


def test_identical_images_with_different_labels_give_identical_proposals(scenes):
    scene = scenes[0]
    relabelled = dataclasses.replace(scene, labels=(scene.labels + 7) % 64, image=scene.image.copy())
    a, b = propose(scene.image), propose(relabelled.image)
    assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.masks, b.masks)


def test_boxes_are_the_extent_of_their_masks(scenes):
    props = propose(scenes[1].image)
    assert len(props) > 0
    for box, mask in zip(props.boxes, props.masks):
        ys, xs = np.nonzero(mask)
        assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        assert mask.sum() >= ProposalParams().min_area


def test_proposals_find_the_objects(scenes):
    best = [box_iou(propose(s.image).boxes, gt).max() for s in scenes for gt in s.boxes]
    assert np.mean(np.array(best) >= 0.5) >= 0.9  # measured 0.99 on seed-1 scenes


def test_an_empty_scene_gives_no_proposals():
    rng = np.random.default_rng(0)
    image = np.clip(128 + rng.normal(0, 12, size=(96, 96, 3)), 0, 255).astype(np.uint8)
    assert len(propose(image)) == 0


def test_disabling_the_border_filter_lets_background_regions_through(scenes):
    image = scenes[2].image
    assert len(propose(image, ProposalParams(max_border_share=1.0))) > len(propose(image))


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        (ProposalParams(scale=0), "--proposal-scale"),
        (ProposalParams(min_area=0), "--proposal-min-area"),
        (ProposalParams(max_box_fraction=1.5), "--max-box-fraction"),
        (ProposalParams(max_border_share=2.0), "--max-border-share"),
    ],
)
def test_bad_parameters_are_one_line_errors(scenes, params, needle):
    with pytest.raises(SubptError, match=needle):
        propose(scenes[0].image, params)


def test_a_non_image_is_an_error():
    with pytest.raises(SubptError, match="uint8"):
        propose(np.zeros((8, 8), dtype=np.uint8))
