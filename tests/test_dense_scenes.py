"""Embedded scenes: deterministic by seed, exact masks and boxes, the occlusion rule, the classification task's
class set and seen/unseen split."""

from __future__ import annotations

import numpy as np
import pytest

from subpt.data.base import base_novel_labels, subsample_task
from subpt.embedded import world
from subpt.embedded.scenes import BACKGROUND, SceneConfig, make_scene, make_scenes, scene_classes
from subpt.embedded.tasks import objects_task
from subpt.errors import SubptError


@pytest.fixture(scope="module")
def classes():
    return scene_classes()


@pytest.fixture(scope="module")
def scenes(classes):
    return make_scenes(classes, seed=1, n_scenes=40)


def test_same_options_and_seed_give_identical_arrays(classes):
    a, b = make_scenes(classes, 3, 5), make_scenes(scene_classes(), 3, 5)
    for x, y in zip(a, b):
        for field in ("image", "instances", "boxes", "labels", "masks", "full_areas"):
            assert np.array_equal(getattr(x, field), getattr(y, field)), field


def test_scene_does_not_depend_on_how_many_are_made_and_seeds_differ(classes):
    few, more = make_scenes(classes, 2, 2), make_scenes(classes, 2, 6)
    assert all(np.array_equal(x.image, y.image) for x, y in zip(few, more))
    other = make_scenes(classes, 4, 2)
    assert not np.array_equal(few[0].image, other[0].image)


def test_boxes_are_the_extent_of_visible_masks_and_maps_agree(scenes):
    for s in scenes:
        assert s.image.shape == (128, 128, 3) and s.image.dtype == np.uint8
        assert len(s.labels) == len(s.boxes) == len(s.masks) >= 1
        for k, (m, box) in enumerate(zip(s.masks, s.boxes)):
            assert np.array_equal(m, s.instances == k)
            ys, xs = np.nonzero(m)
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        sem = s.semantic
        assert np.array_equal(sem == BACKGROUND, s.instances == BACKGROUND)
        for k, label in enumerate(s.labels):
            assert (sem[s.masks[k]] == label).all()


def test_occlusion_rule_keeps_half_of_every_object_and_objects_do_overlap(scenes):
    occluded = 0
    for s in scenes:
        visible = s.masks.sum(axis=(1, 2))
        assert (visible >= 0.5 * s.full_areas).all()
        assert (visible <= s.full_areas).all()
        occluded += int((visible < s.full_areas).sum())
    assert occluded >= 5  # overlaps happen: the rule is exercised, not vacuous


def test_objects_are_at_least_the_towers_input_size(scenes):
    # an enlarged 32 px tile: the object's extent before occlusion is at least what the renderer draws at 32 px
    smallest_disc = np.pi * world.SIZES["small"] ** 2
    assert min(int(a) for s in scenes for a in s.full_areas) >= 0.5 * smallest_disc


def test_noise_free_scene_masks_are_exact(classes):
    s = make_scene(classes, seed=5, index=0, cfg=SceneConfig(noise=0.0))
    background = s.image[s.instances == BACKGROUND]
    assert (background == background[0]).all()  # one background colour everywhere outside the masks
    inside = s.image[s.instances != BACKGROUND]
    assert not (inside == background[0]).all(axis=-1).any()  # no object pixel has the background colour
    assert tuple(background[0]) in {tuple(c) for c in world.BACKGROUNDS.values()}


def test_object_counts_lie_in_range(scenes):
    counts = [len(s.labels) for s in scenes]
    assert min(counts) >= 1 and max(counts) <= 5 and np.mean(counts) >= 2.5


def test_classes_and_split_are_the_classification_tasks(classes):
    task = objects_task(shots=1, seed=0)
    assert list(classes.names) == task.classnames
    seen, unseen = base_novel_labels(64)
    assert list(classes.seen) == seen and list(classes.unseen) == unseen
    assert [classes.names[i] for i in classes.seen] == subsample_task(task, "base").classnames
    assert all(world.OBJECT_KINDS[k].name == n for k, n in zip(classes.kinds, classes.names))


def test_world_options_choose_the_class_set():
    c = scene_classes(n_classes=10, class_seed=3, partition_seed=7)
    task = objects_task(shots=1, seed=0, n_classes=10, class_seed=3, partition_seed=7)
    assert list(c.names) == task.classnames and len(c.seen) == 5
    assert list(scene_classes(n_classes=10, class_seed=3).names) != list(c.names)


def test_scenes_hold_seen_and_unseen_objects(scenes, classes):
    labels = np.concatenate([s.labels for s in scenes])
    assert np.isin(labels, classes.seen).any() and np.isin(labels, classes.unseen).any()


@pytest.mark.parametrize(
    ("cfg", "needle"),
    [
        (SceneConfig(canvas=16), "--canvas"),
        (SceneConfig(min_objects=3, max_objects=2), "--min-objects"),
        (SceneConfig(max_scale=5.0), "--max-scale"),
        (SceneConfig(min_visible=0.0), "--min-visible"),
        (SceneConfig(noise=-1.0), "--noise"),
    ],
)
def test_bad_settings_are_one_line_errors(classes, cfg, needle):
    with pytest.raises(SubptError, match=needle):
        make_scenes(classes, 1, 1, cfg)


def test_bad_counts_and_seeds_are_errors(classes):
    with pytest.raises(SubptError, match="--scenes"):
        make_scenes(classes, 1, 0)
    with pytest.raises(SubptError, match="--seed"):
        make_scenes(classes, -1, 1)
    with pytest.raises(SubptError, match="--n-classes"):
        scene_classes(n_classes=1)
