"""Region and mask prompt learning on seen classes: proposal labelling by IoU on hand-made boxes, the region task's
classes and partition (unseen classes never in training), training on regions with SIGKILL-resume, evaluation
with the learned background, the dense demo at tiny size, and the report's dense section."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from kill_resume import train_full_and_killed

from subpt.data.base import subsample_task
from subpt.dense.proposals import Proposals
from subpt.dense.region_task import BACKGROUND_NAME, region_task
from subpt.dense.regions import BACKGROUND_REGION, IGNORED, assign, box_iou, train_labels
from subpt.dense.source import DenseSource
from subpt.embedded.scenes import Scene, SceneClasses
from subpt.errors import SubptError
from subpt.nfl import resolve_names

TINY = {"n_classes": 6, "class_seed": 3, "train_scenes": 12, "test_scenes": 4}
TINY_ARGS = [
    "--dataset",
    "world-regions",
    "--n-classes",
    "6",
    "--class-seed",
    "3",
    "--train-scenes",
    "12",
    "--test-scenes",
    "4",
    "--shots",
    "2",
    "--n-ctx",
    "4",
    "--ctx-init",
    "a photo of a",
    "--seed",
    "1",
]


def _masks_of(boxes: np.ndarray, side: int = 16) -> np.ndarray:
    out = np.zeros((len(boxes), side, side), bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
        out[i, y0:y1, x0:x1] = True
    return out


def test_box_iou_and_assignment_by_hand():
    gt = np.array([[0, 0, 4, 4]], np.float32)
    props = np.array(
        [
            [0, 0, 4, 4],  # IoU 1: the object's class
            [0, 0, 4, 2],  # IoU 0.5: still the class
            [0, 0, 4, 1.6],  # IoU 0.4: ignored band
            [0, 0, 2, 2],  # IoU 0.25: background
            [8, 8, 12, 12],
        ],
        np.float32,
    )  # IoU 0: background
    iou = box_iou(props, gt)
    assert np.allclose(iou[:, 0], [1.0, 0.5, 0.4, 0.25, 0.0])
    assert assign(iou, np.array([7])).tolist() == [7, 7, IGNORED, BACKGROUND_REGION, BACKGROUND_REGION]
    assert (
        assign(np.zeros((2, 0)), np.zeros(0)).tolist() == [BACKGROUND_REGION] * 2
    )  # a scene without objects


def test_training_labels_never_hold_an_unseen_object():
    gt = np.array(
        [[0, 0, 4, 4], [8, 8, 12, 12]], np.float32
    )  # a seen object (label 0), an unseen one (label 1)
    gt_masks = _masks_of(gt)
    props = np.array([[0, 0, 4, 4], [8, 8, 12, 12], [12, 0, 16, 4], [6, 6, 9, 9], [2, 2, 9, 9]], np.float32)
    masks = _masks_of(props)
    labels = train_labels("box", props, masks, gt, gt_masks, np.array([0, 1]), seen={0})
    # seen object; unseen object left out; clean background; background by IoU but touching the unseen object;
    # a region overlapping both objects (ignored band or touching unseen: left out either way)
    assert labels.tolist() == [0, IGNORED, BACKGROUND_REGION, IGNORED, IGNORED]
    # the mask task decides by the proposal's mask: a box-shaped proposal whose mask misses the unseen object
    masks[3] = False
    masks[3, 6:8, 6:8] = True
    assert (
        train_labels("mask", props, masks, gt, gt_masks, np.array([0, 1]), seen={0})[3] == BACKGROUND_REGION
    )


def _hand_source() -> DenseSource:
    """Two 16 px scenes, each a seen object (label 0) and an unseen one (label 1), proposals given as from a file."""
    gt = np.array([[0, 0, 6, 6], [8, 8, 14, 14]], np.float32)
    masks = _masks_of(gt)
    instances = np.full((16, 16), -1, np.int16)
    instances[masks[0]], instances[masks[1]] = 0, 1
    image = np.zeros((16, 16, 3), np.uint8)
    image[masks[0]], image[masks[1]] = (200, 30, 30), (30, 30, 200)
    scene = Scene(image, instances, gt, np.array([0, 1]), masks, np.array([36, 36]))
    props = np.array([[0, 0, 6, 6], [8, 8, 14, 14], [10, 0, 16, 6], [0, 10, 5, 16]], np.float32)
    classes = SceneClasses(("red thing", "blue thing"), (0, 1), (0,), (1,), ())
    return DenseSource("hand", classes, [scene, scene], [Proposals(props, _masks_of(props))] * 2, {"hand": 1})


def test_region_task_classes_partition_and_unseen_kept_out_of_training():
    src = _hand_source()
    task = region_task(src, src, "box", shots=4, seed=1, template="a photo of a {}.")
    assert task.classnames == ["red thing", BACKGROUND_NAME, "blue thing"]
    base, novel = subsample_task(task, "base"), subsample_task(task, "novel")
    assert base.classnames == ["red thing", BACKGROUND_NAME]  # what the context trains on
    assert novel.classnames == ["blue thing", BACKGROUND_NAME]  # what the novel accuracy measures
    assert resolve_names("novel", task) == ["blue thing"]  # NFL's extra names: the unseen names only
    assert {it.label for it in task.train} == {0, 1} and all(it.source[3] != 1 for it in task.train)
    assert sorted(it.label for it in task.test) == [
        0,
        0,
        1,
        1,
        1,
        1,
        2,
        2,
    ]  # both classes; background: as many
    crop = task.load_image(task.train[0])
    assert crop.size[0] == crop.size[1] > 6


@pytest.fixture(scope="module")
def region_runs(tmp_path_factory):
    return train_full_and_killed(
        tmp_path_factory.mktemp("regions"), [*TINY_ARGS, "--regions", "mask", "--epochs", "6"], epochs=6
    )


def test_training_on_regions_resumes_bit_identically(region_runs):
    from subpt.runs import load_ctx, read_metrics

    full, killed = region_runs
    a, b = load_ctx(full)[0], load_ctx(killed)[0]
    assert torch.equal(a, b)
    assert [m["loss"] for m in read_metrics(full)] == [m["loss"] for m in read_metrics(killed)]


def test_region_run_learns_seen_regions_and_never_sees_unseen_names(region_runs):
    from subpt.backbone import load_backbone
    from subpt.runs import load_config, read_metrics
    from subpt.splits import prepare_data

    full, _ = region_runs
    cfg = load_config(full)
    splits = prepare_data(cfg, load_backbone(cfg.model, cfg.pretrained, "cpu"), progress=False)
    unseen = set(splits.novel.classnames) - {BACKGROUND_NAME}
    assert unseen and not unseen & set(splits.base.classnames)
    assert all(it.classname not in unseen for it in splits.base.train)
    m = read_metrics(full)
    assert np.isfinite([m[-1]["base_acc"], m[-1]["novel_acc"]]).all()
    with pytest.raises(SubptError, match="use --subsample base"):  # 'all' would put unseen names in the loss
        prepare_data(replace(cfg, subsample="all"), None, progress=False)


def test_dense_eval_of_a_region_run_uses_its_learned_background(region_runs):
    from subpt.dense.run_eval import dense_curve, dense_eval

    full, _ = region_runs
    r = dense_eval(1, 4, run=full, progress=False)
    assert r["background"] == "learned class" and r["threshold"] is None
    assert np.isfinite([r["ap50_seen"], r["miou_seen"]]).all()
    curve = dense_curve(full, 1, 4)
    assert [row["epoch"] for row in curve] == [1, 2, 3, 4, 5, 6]
    assert curve[-1]["miou_seen"] == pytest.approx(r["miou_seen"])


def test_report_shows_the_dense_section(region_runs, tmp_path, monkeypatch):
    import subpt.report.dense
    from subpt.report.build import write_report

    monkeypatch.setattr(subpt.report.dense, "REPORT_SCENES", 4)  # the scenes the test above encoded
    full, _ = region_runs
    html = write_report([full], tmp_path / "r.html", progress=False).read_text()
    assert (
        'id="dense"' in html and 'data-figure="dense-scenes"' in html and 'data-figure="dense-curve"' in html
    )


def test_dense_demo_smoke(tmp_path):
    from subpt.experiments.dense_demo import run_dense_demo

    # one task at tiny size (the region run above covers the mask task); the full demo runs both
    s = run_dense_demo(tmp_path / "demo", seeds=1, epochs=4, eval_scenes=4, options=TINY, kinds=("box",))
    assert set(s["table"]) == {"zero-shot", "chance", "CoOp", "SubPT", "SubPT+NFL"}
    assert len(s["coop_curves"]["box"][0]) == 4 and (tmp_path / "demo" / "dense_curve.png").is_file()
    for m in ("CoOp", "SubPT", "SubPT+NFL"):
        assert set(s["table"][m]) == {"ap50_seen", "ap50_unseen", "ap50_hm"}
    assert s["table"]["CoOp"]["ap50_seen"][0] == s["table"]["CoOp"]["ap50_seen"][0]  # a number, not nan
