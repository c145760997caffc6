"""The real dense readers on fake trees: OV-COCO detection and VOC 2012 segmentation read into DenseSources
(classes and split, boxes = mask extents, void / crowd pixels ignored, proposal files), the source registry,
and `subpt data check` on good and broken trees."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fake_dense import COCO_OBJECTS, H, W, make_fake_coco, make_fake_voc, palette_png
from PIL import Image
from pycocotools import mask as mask_utils
from subpt._cli.data_cmd import data_app
from typer.testing import CliRunner

from subpt.data.check import checks_failed, format_report
from subpt.data.dense_check import check_dense
from subpt.dense.coco import COCO_NAMES, OV_COCO_NAMES, OV_COCO_SEEN, OV_COCO_UNSEEN
from subpt.dense.source import IGNORE
from subpt.dense.sources import load_source
from subpt.dense.voc import VOC_NAMES
from subpt.embedded.scenes import BACKGROUND, make_scenes, scene_classes
from subpt.errors import SubptError


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fake_coco(tmp_path_factory.mktemp("coco"))


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fake_voc(tmp_path_factory.mktemp("voc"))


def _extent(m: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(m)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_ov_coco_split_is_48_seen_17_unseen_of_coco_names() -> None:
    assert (
        len(OV_COCO_SEEN) == 48 and len(OV_COCO_UNSEEN) == 17 and not set(OV_COCO_SEEN) & set(OV_COCO_UNSEEN)
    )
    assert set(OV_COCO_SEEN) | set(OV_COCO_UNSEEN) <= set(COCO_NAMES) and len(OV_COCO_NAMES) == 65


def test_coco_val_scenes_labels_masks_boxes_and_crowd(coco_root: Path) -> None:
    src = load_source("coco", coco_root, "val", {"max_proposals": 5})
    c = src.classes
    assert c.names == OV_COCO_NAMES and c.kinds == ()
    assert [c.names[i] for i in c.seen] == [n for n in OV_COCO_NAMES if n in OV_COCO_SEEN]
    assert {c.names[i] for i in c.unseen} == set(OV_COCO_UNSEEN) and len(c.seen) == 48
    assert len(src) == 2  # image 13 holds only a non-OV class (stop sign)
    s0, s1 = src.scenes[0], src.scenes[1]
    assert s0.image.shape == (H, W, 3) and s0.image.dtype == np.uint8
    assert [c.names[i] for i in s0.labels] == ["person", "cat"]
    for s in (s0, s1):
        for box, m in zip(s.boxes, s.masks, strict=True):
            assert box.tolist() == _extent(m)  # boxes are the mask extents
    for (_, _, (x0, y0, x1, y1), _), box in zip(COCO_OBJECTS["val"][11], s0.boxes, strict=True):
        assert np.abs(box - [x0, y0, x1, y1]).max() <= 1.0  # and agree with COCO's bbox to a pixel
    # the RLE cat decodes to the mask pycocotools gives for the same annotation
    ann = json.loads((coco_root / "annotations/instances_val2017.json").read_text())["annotations"][1]
    assert np.array_equal(
        s0.masks[1],
        mask_utils.decode({**ann["segmentation"], "counts": ann["segmentation"]["counts"].encode()}).astype(
            bool
        ),
    )
    assert (s0.semantic[s0.masks[1]] == c.names.index("cat")).all()
    # crowd dog: not an object, its pixels outside the cup are IGNORE and show as BACKGROUND in the semantic map
    assert [c.names[i] for i in s1.labels] == ["cup"]
    ign = s1.instances == IGNORE
    assert ign.sum() > 50 and (s1.semantic[ign] == BACKGROUND).all() and not (ign & s1.masks[0]).any()


def test_coco_train_keeps_seen_boxes_only(coco_root: Path) -> None:
    src = load_source("coco", coco_root, "train", {})
    assert len(src) == 2  # image 2 holds only an unseen dog
    s0, s1 = src.scenes[0], src.scenes[1]
    assert [src.classes.names[i] for i in s0.labels] == ["person"]  # the unseen cat is unlabelled
    assert [src.classes.names[i] for i in s1.labels] == ["bicycle"]  # no segmentation: the box is the mask
    assert s1.boxes.tolist() == [[2, 2, 12, 12]] and s1.masks[0].sum() == 100
    kept = load_source("coco", coco_root, "train", {"keep_unseen": True})
    assert len(kept) == 3 and "cat" in [kept.classes.names[i] for i in kept.scenes[0].labels]


def test_coco_proposal_file_read_ranked_and_capped(coco_root: Path, tmp_path: Path) -> None:
    seg = mask_utils.encode(
        np.asfortranarray(np.pad(np.ones((10, 10), np.uint8), ((5, H - 15), (5, W - 15))))
    )
    props = [
        {"image_id": 11, "bbox": [0, 0, 10, 10], "score": 0.2},
        {
            "image_id": 11,
            "bbox": [5, 5, 10, 10],
            "score": 0.9,
            "segmentation": {"size": seg["size"], "counts": seg["counts"].decode()},
        },
        {"image_id": 11, "bbox": [40, 30, 20, 20], "score": 0.5},  # clipped to the image
        {"image_id": 11, "bbox": [1, 1, 2, 2], "score": 0.1},  # below the cap
        {"image_id": 999, "bbox": [0, 0, 5, 5], "score": 1.0},  # another split's image: ignored
    ]
    path = tmp_path / "props.json"
    path.write_text(json.dumps(props))
    src = load_source("coco", coco_root, "val", {"proposals": path, "max_proposals": 3})  # a Path works too
    p = src.proposals[0]
    assert p.boxes.tolist() == [[5, 5, 15, 15], [40, 30, 48, 40], [0, 0, 10, 10]]
    assert p.masks.shape == (3, H, W) and p.masks[0].sum() == 100 and p.masks[1].sum() == 80
    assert len(src.proposals[1]) == 0  # image 12 has no proposal
    assert src.key["options"]["proposals"]["file"]["path"] == str(path.resolve())
    json.dumps(src.key)  # the cache key is plain data


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "does not exist"),
        ("{not json", "is not valid JSON"),
        ('{"image_id": 11}', "holds a dict, not a list"),
        ('[{"image_id": 11, "bbox": [0, 0, 1, 1]}]', "entry 0 has no 'score'"),
        ('[{"image_id": 11, "bbox": [0, 0, -1, 1], "score": 1}]', "entry 0 has 'bbox'"),
        ('[{"image_id": 11, "bbox": [0, 0, 1, 1], "score": "high"}]', "entry 0 has 'score'"),
        ('[{"image_id": 5, "bbox": [0, 0, 1, 1], "score": 1}]', "no proposal for any image of this split"),
    ],
)
def test_coco_bad_proposal_file_names_file_and_field(
    coco_root: Path, tmp_path: Path, content, needle
) -> None:
    path = tmp_path / "p.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SubptError, match=needle) as e:
        load_source("coco", coco_root, "val", {"proposals": str(path)})
    assert str(path) in str(e.value)


def test_voc_scenes_labels_void_and_unseen_in_train(voc_root: Path) -> None:
    val = load_source("voc", voc_root, "val", {})
    c = val.classes
    assert c.names == VOC_NAMES and c.seen == tuple(range(15)) and c.unseen == tuple(range(15, 20))
    assert [c.names[i] for i in c.unseen] == ["potted plant", "sheep", "sofa", "train", "tv monitor"]
    s = val.scenes[0]
    assert [c.names[i] for i in s.labels] == ["tv monitor", "dog"]
    assert s.boxes.tolist() == [[4, 4, 24, 24], [28, 8, 44, 30]]
    ign = s.instances == IGNORE
    assert ign.sum() == (22 * 22 - 400) + (18 * 24 - 16 * 22)  # the 1-px void borders
    assert (s.semantic[ign] == BACKGROUND).all() and (s.semantic[5:20, 5:20] == 19).all()
    train = load_source("voc", voc_root, "train", {})
    t = train.scenes[0]
    assert [c.names[i] for i in t.labels] == ["aeroplane"]  # the unseen sheep is removed ...
    assert (t.instances[10:34, 26:44] == IGNORE).all()  # ... and its pixels ignored, not background
    kept = load_source("voc", voc_root, "train", {"keep_unseen": True})
    assert [c.names[i] for i in kept.scenes[0].labels] == ["aeroplane", "sheep"]


def test_voc_proposal_folder_npz_and_png(voc_root: Path, tmp_path: Path) -> None:
    m = np.zeros((2, H, W), bool)
    m[0, 4:24, 4:24] = True
    m[1, 0:3, 0:5] = True
    np.savez(tmp_path / "2008_000001.npz", masks=m)
    label_map = np.zeros((H, W), np.uint8)
    label_map[10:30, 10:30] = 7
    Image.fromarray(label_map, mode="L").save(tmp_path / "2008_000002.png")
    src = load_source("voc", voc_root, "val", {"proposals": str(tmp_path)})
    p0, p1 = src.proposals[0], src.proposals[1]
    assert p0.boxes.tolist() == [[4, 4, 24, 24], [0, 0, 5, 3]] and np.array_equal(p0.masks, m)
    assert len(p1) == 2 and [10, 10, 30, 30] in p1.boxes.tolist()  # one proposal per value of the label map
    (tmp_path / "2008_000002.png").unlink()
    with pytest.raises(SubptError, match="has no 2008_000002.npz or 2008_000002.png"):
        load_source("voc", voc_root, "val", {"proposals": str(tmp_path)})
    np.savez(tmp_path / "2008_000002.npz", boxes=np.zeros((1, 4)))
    bad = load_source("voc", voc_root, "val", {"proposals": str(tmp_path)})
    with pytest.raises(SubptError, match="has no array 'masks'"):
        bad.proposals[1]


def test_voc_label_free_proposals_are_the_photo_generator(voc_root: Path) -> None:
    src = load_source("voc", voc_root, "val", {"max_images": 1})
    assert len(src) == 1 and src.key["options"]["proposals"]["label_free"]["max_border_share"] == 1.0
    p = src.proposals[0]
    assert len(p) >= 1 and p.masks.shape[1:] == (H, W)


def test_voc_rgb_label_png_is_a_clear_error(voc_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "v"
    shutil.copytree(voc_root, root)
    png = root / "VOCdevkit/VOC2012/SegmentationClass/2008_000001.png"
    Image.open(png).convert("RGB").save(png)
    src = load_source("voc", root, "val", {})
    with pytest.raises(SubptError, match="is a RGB image"):
        src.scenes[0]
    with pytest.raises(SubptError, match="train_aug list is not supported"):
        load_source("voc", root, "train_aug", {})


def test_load_source_world_scenes_and_errors(tmp_path: Path) -> None:
    opts = {"n_classes": 8, "seed": 3, "scenes": 2}
    test = load_source("world-scenes", None, "test", opts)
    ref = make_scenes(scene_classes(n_classes=8), 3, 2)
    assert test.proposals is None and test.classes == scene_classes(n_classes=8)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(test.scenes, ref, strict=True))
    train = load_source("world-scenes", None, "train", opts)
    assert not np.array_equal(train.scenes[0].image, ref[0].image) and train.key != test.key
    with pytest.raises(SubptError, match="unknown option.*shots.*n_classes"):
        load_source("world-scenes", None, "test", {"shots": 1})
    with pytest.raises(SubptError, match="unknown dense source 'lvis'"):
        load_source("lvis", tmp_path, "val")
    with pytest.raises(SubptError, match="needs --root"):
        load_source("coco", None, "val")
    with pytest.raises(SubptError, match="instances_val2017.json does not exist"):
        load_source("coco", tmp_path, "val")


def test_data_check_passes_good_trees(coco_root: Path, voc_root: Path) -> None:
    coco = check_dense("coco", coco_root)
    assert coco.status == "ok", coco.problems
    assert coco.counts == {"train": 3, "val": 3} and coco.images_checked == 6
    cat = next(r for r in coco.class_counts if r["classname"] == "cat")
    assert cat == {
        "label": OV_COCO_NAMES.index("cat"),
        "classname": "cat",
        "role": "unseen",
        "train": 1,
        "val": 1,
    }
    assert any("seen classes without a training object" in n for n in coco.notes)
    voc = check_dense("voc", voc_root)
    assert voc.status == "ok", voc.problems
    assert voc.counts == {"train": 2, "val": 2} and voc.images_checked == 4
    assert next(r for r in voc.class_counts if r["classname"] == "sheep")["train"] == 1
    assert "1 ok, 0 with problems" in format_report([voc])
    res = CliRunner().invoke(data_app, ["check", "--root", str(voc_root), "--dataset", "voc", "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["datasets"][0]["dataset"] == "voc"


def test_data_check_names_the_broken_file(coco_root: Path, voc_root: Path, tmp_path: Path) -> None:
    c = tmp_path / "c"
    shutil.copytree(coco_root, c)
    (c / "annotations/instances_val2017.json").write_text("{oops")
    (c / "train2017/000000000001.jpg").write_bytes(b"not a jpeg")
    check = check_dense("coco", c)
    text = "\n".join(check.problems)
    assert check.status == "problems" and checks_failed([check], named=True)
    assert "instances_val2017.json is not valid JSON" in text and "000000000001.jpg does not decode" in text
    v = tmp_path / "v"
    shutil.copytree(voc_root, v)
    base = v / "VOCdevkit/VOC2012"
    (base / "ImageSets/Segmentation/val.txt").unlink()
    cls = np.zeros((H, W), np.uint8)
    cls[0, 0] = 42
    palette_png(cls, base / "SegmentationClass/2007_000002.png")
    check = check_dense("voc", v)
    text = "\n".join(check.problems)
    assert "split file" in text and "val.txt is missing" in text
    assert "2007_000002.png holds values [42]" in text
    res = CliRunner().invoke(data_app, ["check", "--root", str(v), "--dataset", "voc"])
    assert res.exit_code == 1 and "val.txt is missing" in res.output
    empty = check_dense("voc", tmp_path / "c" / "train2017")
    assert empty.status == "missing"


@pytest.mark.parametrize("dataset", ["coco-regions", "voc-regions"])
def test_fake_tree_region_dataset_trains_one_epoch(dataset: str, coco_root: Path, voc_root: Path,
                                                   tmp_path: Path) -> None:
    """A fake COCO / VOC tree becomes a region dataset (seen + background trained, unseen held out) that
    `subpt train` trains for one epoch and evaluates."""
    from subpt.config import TrainConfig
    from subpt.runs import read_metrics
    from subpt.train import train

    root = coco_root if dataset == "coco-regions" else voc_root
    cfg = TrainConfig(dataset=dataset, root=str(root), shots=2, epochs=1, n_ctx=2, batch_size=4,
                      dataset_options={"max_proposals": 20})
    train(cfg, tmp_path / "run", progress=False)
    metrics = read_metrics(tmp_path / "run")
    assert len(metrics) == 1 and np.isfinite(metrics[0]["loss"])
    from subpt.data.catalogue import build_task

    task = build_task(dataset, root=str(root), shots=2, seed=1, max_proposals=20)
    names = VOC_NAMES if dataset == "voc-regions" else OV_COCO_NAMES
    assert "background" in task.classnames and set(task.classnames) - {"background"} <= set(names)
    trained = {item.classname for item in task.train}
    seen = {task.classnames[c] for c in task.partition[0]}
    assert trained and trained <= seen
    # the run's context names the regions of the benchmark's evaluation split (AP50 / mIoU by the same code as
    # the world's); the run brings its source, root and proposal settings
    from subpt.dense.run_eval import dense_eval

    result = dense_eval(1, run=tmp_path / "run", progress=False)
    source = load_source(dataset.split("-")[0], root, "val", {"max_proposals": 20})
    assert result["mode"] == "run" and result["scenes"] == len(source)
    assert set(result["unseen"]) == {source.classes.names[c] for c in source.classes.unseen}


def test_training_regions_mostly_on_unlabelled_pixels_are_left_out() -> None:
    from subpt.dense.regions import BACKGROUND_REGION, IGNORED, train_labels

    ignore = np.zeros((20, 20), dtype=bool)
    ignore[:, 10:] = True  # a crowd / void / removed unseen object covers the right half
    boxes = np.array([[0, 0, 8, 8], [10, 0, 20, 10], [6, 0, 14, 8]], dtype=np.float32)  # left, right, 50 % right
    no_objects = (np.zeros((0, 4), np.float32), np.zeros((0, 20, 20), bool), np.zeros(0, np.int64))
    labels = train_labels("box", boxes, np.zeros((3, 20, 20), bool), *no_objects, seen=[0], ignore=ignore)
    assert labels.tolist() == [BACKGROUND_REGION, IGNORED, IGNORED]
    assert train_labels("box", boxes, np.zeros((3, 20, 20), bool), *no_objects, seen=[0]).tolist() == [
        BACKGROUND_REGION] * 3


def test_miou_leaves_unlabelled_pixels_out() -> None:
    from subpt.dense.evaluate import IGNORE_PIXEL, segmentation_iou, target_pixels
    from subpt.embedded.scenes import Scene

    inst = np.array([[0, 0, -1, IGNORE]], dtype=np.int16)
    scene = Scene(np.zeros((1, 4, 3), np.uint8), inst, np.zeros((1, 4), np.float32), np.array([1]),
                  np.array([[[True, True, False, False]]]), np.array([2]))
    target = target_pixels(scene, background=2)
    assert target.tolist() == [[1, 1, 2, IGNORE_PIXEL]]
    # class 1 predicted on its two pixels and on the unlabelled one: that pixel does not count against it
    r = segmentation_iou([np.array([[1, 1, 2, 1]])], [target], 2, seen=[1], unseen=[0])
    assert r["miou_seen"] == 100.0 and r["iou_background"] == 100.0
