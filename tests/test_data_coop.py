"""CoOp's 15 dataset readers on tiny fake trees in the real layouts (tests/fake_datasets.py)."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest
from fake_datasets import ALL_DATASETS, TEMPLATES, expected_classnames, make_fake_dataset, write_image

import subpt.data.coop_fewshot as coop_fewshot
from subpt.data.base import Item, subsample_task
from subpt.data.catalogue import build_task, dataset_names
from subpt.data.coop_specs import (
    clean_caltech101,
    clean_eurosat,
    clean_oxford_pets,
    clean_stanford_cars,
    clean_sun397,
    clean_ucf101,
)
from subpt.errors import SubptError

FEW_SHOT = ALL_DATASETS[:11]
VARIANTS = ALL_DATASETS[11:]
FOLDERS = {
    "imagenet": "imagenet",
    "caltech101": "caltech-101",
    "oxford_pets": "oxford_pets",
    "stanford_cars": "stanford_cars",
    "oxford_flowers": "oxford_flowers",
    "food101": "food-101",
    "fgvc_aircraft": "fgvc_aircraft",
    "sun397": "sun397",
    "dtd": "dtd",
    "eurosat": "eurosat",
    "ucf101": "ucf101",
}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    for name in ALL_DATASETS:
        make_fake_dataset(root, name)
    return root


def _keys(items: list[Item]) -> list[tuple[str, int]]:
    return [(str(it.source), it.label) for it in items]


def test_all_fifteen_registered() -> None:
    names = dataset_names()
    for n in (*ALL_DATASETS, "imagefolder", "csv"):
        assert n in names


@pytest.mark.parametrize("name", ALL_DATASETS)
def test_build_task_classnames_template_and_sizes(data_root: Path, name: str) -> None:
    task = build_task(name, root=data_root, shots=2, seed=1, cache=False)
    assert task.name == name
    assert task.classnames == expected_classnames(name, 4)
    assert task.template == TEMPLATES[name]
    assert task.templates[-1] == TEMPLATES[name] or name == "imagenet"
    if name in VARIANTS:
        assert task.train == [] and task.val == []
        assert len(task.test) == 16
    else:
        assert Counter(it.label for it in task.train) == {0: 2, 1: 2, 2: 2, 3: 2}
        assert Counter(it.label for it in task.val) == {0: 2, 1: 2, 2: 2, 3: 2}
        assert len(task.test) == 16
        assert not set(_keys(task.train)) & set(_keys(task.val))
    for it in [*task.train, *task.val, *task.test]:
        assert it.classname == task.classnames[it.label]
        assert os.path.isfile(str(it.source))
    img = task.load_image(task.test[0])
    assert img.mode == "RGB" and img.size == (8, 8)


@pytest.mark.parametrize("name", FEW_SHOT)
def test_few_shot_reproducible_per_seed_and_differs_across_seeds(data_root: Path, name: str) -> None:
    a = build_task(name, root=data_root, shots=2, seed=1, cache=False)
    b = build_task(name, root=data_root, shots=2, seed=1, cache=False)
    c = build_task(name, root=data_root, shots=2, seed=2, cache=False)
    assert _keys(a.train) == _keys(b.train) and _keys(a.val) == _keys(b.val)
    assert _keys(a.train) != _keys(c.train)


@pytest.mark.parametrize("name", FEW_SHOT)
def test_fewshot_cache_written_and_reused(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    make_fake_dataset(tmp_path, name)
    first = build_task(name, root=tmp_path, shots=2, seed=3)
    path = tmp_path / FOLDERS[name] / "split_fewshot" / "shot_2-seed_3.json"
    data = json.loads(path.read_text())
    assert (data["dataset"], data["shots"], data["seed"]) == (name, 2, 3)
    assert len(data["train"]) == 8 and len(data["val"]) == 8
    assert all(not os.path.isabs(rel) for rel, _, _ in data["train"])

    def no_draw(*args: object, **kwargs: object) -> None:
        raise AssertionError("few_shot must not run when the cache matches")

    monkeypatch.setattr(coop_fewshot, "few_shot", no_draw)
    second = build_task(name, root=tmp_path, shots=2, seed=3)
    assert _keys(second.train) == _keys(first.train) and _keys(second.val) == _keys(first.val)
    assert second.classnames == first.classnames


def test_cache_is_relative_so_a_moved_root_still_uses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_fake_dataset(tmp_path / "a", "eurosat")
    first = build_task("eurosat", root=tmp_path / "a", shots=2, seed=1)
    shutil.move(tmp_path / "a", tmp_path / "b")
    monkeypatch.setattr(coop_fewshot, "few_shot", lambda *a, **k: pytest.fail("cache not reused"))
    moved = build_task("eurosat", root=tmp_path / "b", shots=2, seed=1)
    assert [Path(str(i.source)).name for i in moved.train] == [Path(str(i.source)).name for i in first.train]
    assert all(str(i.source).startswith(str(tmp_path / "b")) for i in moved.train)


def test_imagenet_cached_draw_does_not_list_the_training_set(tmp_path: Path) -> None:
    make_fake_dataset(tmp_path, "imagenet")
    first = build_task("imagenet", root=tmp_path, shots=2, seed=1)
    for wnid_dir in (tmp_path / "imagenet" / "images" / "train").iterdir():
        for f in wnid_dir.iterdir():  # keep the class folders, drop the files
            f.unlink()
    again = build_task("imagenet", root=tmp_path, shots=2, seed=1)
    assert _keys(again.train) == _keys(first.train)


def test_imagenet_val_is_drawn_from_its_test_set(data_root: Path) -> None:
    task = build_task("imagenet", root=data_root, shots=2, seed=1, cache=False)
    assert set(_keys(task.val)) <= set(_keys(task.test))
    assert all("/images/val/" in str(it.source) for it in task.test)
    assert all("/images/train/" in str(it.source) for it in task.train)


def test_changed_split_file_invalidates_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_fake_dataset(tmp_path, "dtd")
    build_task("dtd", root=tmp_path, shots=2, seed=1)
    split_path = tmp_path / "dtd" / "split_zhou_DescribableTextures.json"
    split = json.loads(split_path.read_text())
    split["train"] = split["train"][1:]  # one image fewer
    split_path.write_text(json.dumps(split))
    calls = []
    real = coop_fewshot.few_shot
    monkeypatch.setattr(coop_fewshot, "few_shot", lambda *a, **k: calls.append(1) or real(*a, **k))
    task = build_task("dtd", root=tmp_path, shots=2, seed=1)
    assert calls, "a stale cache must be redrawn"
    assert set(_keys(task.train)) <= {
        (str(tmp_path / "dtd" / "images" / r), lbl) for r, lbl, _ in split["train"]
    }


def test_corrupt_cache_is_redrawn_and_rewritten(tmp_path: Path) -> None:
    make_fake_dataset(tmp_path, "food101")
    ref = build_task("food101", root=tmp_path, shots=2, seed=1, cache=False)
    path = tmp_path / "food-101" / "split_fewshot" / "shot_2-seed_1.json"
    path.parent.mkdir()
    path.write_text("{not json")
    task = build_task("food101", root=tmp_path, shots=2, seed=1)
    assert _keys(task.train) == _keys(ref.train)
    assert json.loads(path.read_text())["seed"] == 1


def test_cache_off_writes_nothing(tmp_path: Path) -> None:
    make_fake_dataset(tmp_path, "ucf101")
    build_task("ucf101", root=tmp_path, shots=2, seed=1, cache=False)
    assert not (tmp_path / "ucf101" / "split_fewshot").exists()


def test_unwritable_cache_folder_falls_back_silently(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_fake_dataset(tmp_path, "caltech101")
    (tmp_path / "caltech-101" / "split_fewshot").write_text("a file where the folder should be")
    a = build_task("caltech101", root=tmp_path, shots=2, seed=1)

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError("read-only file system")

    monkeypatch.setattr(coop_fewshot, "atomic_write_text", denied)
    (tmp_path / "caltech-101" / "split_fewshot").unlink()
    b = build_task("caltech101", root=tmp_path, shots=2, seed=1)
    assert _keys(a.train) == _keys(b.train)
    assert not list((tmp_path / "caltech-101" / "split_fewshot").glob("*.json"))


@pytest.mark.parametrize("name", FEW_SHOT)
def test_subsample_base_novel_follows_coop_rule(data_root: Path, name: str) -> None:
    task = build_task(name, root=data_root, shots=2, seed=1, cache=False)
    names = expected_classnames(name, 4)
    base, novel = subsample_task(task, "base"), subsample_task(task, "novel")
    assert base.classnames == names[:2] and novel.classnames == names[2:]
    for part, offset in ((base, 0), (novel, 2)):
        for split in ("train", "val", "test"):
            items = part.split(split)
            assert {it.label for it in items} == {0, 1}
            assert all(it.classname == names[it.label + offset] for it in items)
    via_option = build_task(name, root=data_root, shots=2, seed=1, cache=False, subsample="novel")
    assert _keys(via_option.test) == _keys(novel.test)


def test_subsample_odd_class_count_gives_base_the_extra_class(tmp_path: Path) -> None:
    make_fake_dataset(tmp_path, "eurosat", n_classes=5, n_per_class=2)
    task = build_task("eurosat", root=tmp_path, shots=1, seed=1)
    assert subsample_task(task, "base").num_classes == 3
    assert subsample_task(task, "novel").classnames == ["Highway or Road", "Industrial Buildings"]


def test_variants_labels_and_subsets(data_root: Path) -> None:
    v2 = build_task("imagenet_v2", root=data_root, shots=16, seed=1)
    assert all(int(Path(str(it.source)).parent.name) == it.label for it in v2.test)
    imagenet = build_task("imagenet", root=data_root, shots=2, seed=1, cache=False)
    sketch = build_task("imagenet_sketch", root=data_root, shots=2, seed=1)
    assert sketch.classnames == imagenet.classnames == v2.classnames
    a = build_task("imagenet_a", root=data_root, shots=2, seed=1)
    assert sorted({it.label for it in a.test}) == [0, 1, 2, 3]
    assert not any(str(it.source).endswith("README.txt") for it in a.test)


def test_variant_falls_back_to_imagenet_classnames(tmp_path: Path) -> None:
    make_fake_dataset(tmp_path, "imagenet")
    make_fake_dataset(tmp_path, "imagenet_sketch")
    (tmp_path / "imagenet-sketch" / "classnames.txt").unlink()
    task = build_task("imagenet_sketch", root=tmp_path, shots=2, seed=1)
    assert task.classnames == expected_classnames("imagenet_sketch")


def test_dtd_nested_layout_is_accepted(tmp_path: Path) -> None:
    make_fake_dataset(tmp_path, "dtd")
    (tmp_path / "dtd" / "dtd").mkdir()
    shutil.move(tmp_path / "dtd" / "images", tmp_path / "dtd" / "dtd" / "images")
    task = build_task("dtd", root=tmp_path, shots=2, seed=1, cache=False)
    assert all("/dtd/dtd/images/" in str(it.source) for it in task.test)


def test_raw_classnames_are_cleaned_like_coop() -> None:
    assert clean_caltech101("Faces") == "face" and clean_caltech101("airplanes") == "airplane"
    assert clean_caltech101("dollar_bill") == "dollar bill"
    assert clean_eurosat("AnnualCrop") == "Annual Crop Land" and clean_eurosat("SeaLake") == "Sea or Lake"
    assert clean_eurosat("Annual Crop Land") == "Annual Crop Land"
    assert clean_oxford_pets("Egyptian_Mau") == "egyptian mau"
    assert clean_ucf101("ApplyEyeMakeup") == "Apply Eye Makeup" and clean_ucf101("YoYo") == "Yo Yo"
    assert clean_ucf101("Apply_Eye_Makeup") == "Apply Eye Makeup"
    assert clean_sun397("/a/apartment_building/outdoor") == "outdoor apartment building"
    assert clean_sun397("outdoor apartment_building") == "outdoor apartment building"
    assert clean_stanford_cars("Tesla Model S 2012") == "2012 Tesla Model S"
    assert clean_stanford_cars("2012 Tesla Model S") == "2012 Tesla Model S"


def test_load_image_errors_name_the_file(tmp_path: Path) -> None:
    make_fake_dataset(tmp_path, "eurosat")
    task = build_task("eurosat", root=tmp_path, shots=2, seed=1, cache=False)
    bad = task.test[0]
    Path(str(bad.source)).write_bytes(b"not an image at all")
    with pytest.raises(SubptError, match=str(bad.source)):
        task.load_image(bad)
    gone = task.test[1]
    os.unlink(str(gone.source))
    with pytest.raises(SubptError, match="does not exist"):
        task.load_image(gone)


def test_user_errors_are_one_line_subpt_errors(tmp_path: Path, data_root: Path) -> None:
    with pytest.raises(SubptError, match="caltech-101"):
        build_task("caltech101", root=tmp_path, shots=2, seed=1)
    with pytest.raises(SubptError, match="no option 'bogus'"):
        build_task("caltech101", root=data_root, shots=2, seed=1, bogus=1)
    with pytest.raises(SubptError, match="--shots 4 or fewer"):
        build_task("caltech101", root=data_root, shots=5, seed=1, cache=False)
    make_fake_dataset(tmp_path, "food101")
    (tmp_path / "food-101" / "split_zhou_Food101.json").write_text('{"train": [], "val": []}')
    with pytest.raises(SubptError, match=r"split_zhou_Food101.json has no 'test'"):
        build_task("food101", root=tmp_path, shots=2, seed=1)


def test_imagenet_flat_val_folder_is_explained(tmp_path: Path) -> None:
    make_fake_dataset(tmp_path, "imagenet")
    val = tmp_path / "imagenet" / "images" / "val"
    shutil.rmtree(val)
    write_image(val / "ILSVRC2012_val_00000001.JPEG", 1)
    with pytest.raises(SubptError, match="wnid"):
        build_task("imagenet", root=tmp_path, shots=2, seed=1)
