"""The generic `imagefolder` and `csv` datasets."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from fake_datasets import write_image

from subpt.data.base import subsample_task
from subpt.data.catalogue import build_task
from subpt.errors import SubptError

CLASSES = ("golden_retriever", "tabby_cat", "zebra")


def _tree(root: Path, splits: dict[str, int]) -> None:
    """root/<split>/<class>/img_k.png with n images per class (split '' = one tree)."""
    seed = 0
    for split, n in splits.items():
        for c in CLASSES:
            for k in range(n):
                seed += 1
                write_image(root / split / c / f"img_{k}.png", seed)


def _keys(items: list) -> list[tuple[str, int]]:
    return [(str(it.source), it.label) for it in items]


def test_imagefolder_split_layout(tmp_path: Path) -> None:
    _tree(tmp_path, {"train": 4, "val": 3, "test": 2})
    task = build_task("imagefolder", root=tmp_path, shots=2, seed=1)
    assert task.classnames == ["golden retriever", "tabby cat", "zebra"]
    assert task.template == "a photo of a {}."
    assert Counter(it.label for it in task.train) == {0: 2, 1: 2, 2: 2}
    assert all("/train/" in str(it.source) for it in task.train)
    assert all("/val/" in str(it.source) for it in task.val) and len(task.val) == 6
    assert len(task.test) == 6 and all("/test/" in str(it.source) for it in task.test)
    assert task.load_image(task.test[0]).mode == "RGB"


def test_imagefolder_missing_val_is_carved_from_train(tmp_path: Path) -> None:
    _tree(tmp_path, {"train": 10, "test": 2})
    task = build_task("imagefolder", root=tmp_path, shots=0, seed=1)
    assert len(task.val) == 3 * 2 and len(task.train) == 3 * 8  # 20 % of 10 per class
    assert not set(_keys(task.train)) & set(_keys(task.val))


def test_imagefolder_single_tree_split_by_seeded_ratio(tmp_path: Path) -> None:
    _tree(tmp_path, {"": 10})
    a = build_task("imagefolder", root=tmp_path, shots=0, seed=1)
    b = build_task("imagefolder", root=tmp_path, shots=0, seed=1)
    c = build_task("imagefolder", root=tmp_path, shots=0, seed=1, split_seed=7)
    assert (len(a.train), len(a.val), len(a.test)) == (15, 6, 9)
    assert _keys(a.test) == _keys(b.test) and _keys(a.test) != _keys(c.test)
    every = set(_keys(a.train)) | set(_keys(a.val)) | set(_keys(a.test))
    assert len(every) == 30
    few1 = build_task("imagefolder", root=tmp_path, shots=2, seed=1)
    few2 = build_task("imagefolder", root=tmp_path, shots=2, seed=2)
    assert _keys(few1.train) != _keys(few2.train)


def test_imagefolder_options(tmp_path: Path) -> None:
    _tree(tmp_path, {"train": 4, "test": 2})
    (tmp_path / "names.txt").write_text("golden_retriever golden retriever dog\ntabby_cat tabby\n")
    task = build_task(
        "imagefolder", root=tmp_path, shots=1, seed=1, template="a {} in a field.", classnames="names.txt"
    )
    assert task.template == "a {} in a field."
    assert task.classnames == ["golden retriever dog", "tabby", "zebra"]
    assert subsample_task(task, "novel").classnames == ["zebra"]
    with pytest.raises(SubptError, match="template"):
        build_task("imagefolder", root=tmp_path, shots=1, seed=1, template="no slot")
    with pytest.raises(SubptError, match="no option 'colour'"):
        build_task("imagefolder", root=tmp_path, shots=1, seed=1, colour="red")
    with pytest.raises(SubptError, match="does not exist"):
        build_task("imagefolder", root=tmp_path / "nope", shots=1, seed=1)


def test_csv_with_header_and_split_column(tmp_path: Path) -> None:
    _tree(tmp_path / "img", {"": 5})
    rows = ["split,label,path,classname"]
    for i, c in enumerate(CLASSES):
        for k in range(5):
            rows.append(f"{['train', 'train', 'val', 'val', 'test'][k]},{i},img/{c}/img_{k}.png,{c}")
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    task = build_task("csv", root=tmp_path, shots=2, seed=1)  # the folder's only .csv
    assert task.classnames == ["golden retriever", "tabby cat", "zebra"]
    assert len(task.train) == 6 and len(task.val) == 6 and len(task.test) == 3
    assert all(Path(str(it.source)).is_file() for it in task.train)


def test_csv_without_header_and_string_labels(tmp_path: Path) -> None:
    _tree(tmp_path, {"": 10})
    lines = [f"{c}/img_{k}.png,{c}" for c in CLASSES for k in range(10)]
    (tmp_path / "list.csv").write_text("\n".join(lines))
    task = build_task("csv", root=tmp_path / "list.csv", shots=2, seed=1)
    assert task.classnames == ["golden retriever", "tabby cat", "zebra"]
    assert (len(task.train), len(task.val), len(task.test)) == (6, 6, 9)


def test_csv_errors_are_clear(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x.png,0\ny.png,1\n")
    with pytest.raises(SubptError, match="label 0 has no class name"):
        build_task("csv", root=tmp_path / "a.csv", shots=1, seed=1)
    (tmp_path / "b.csv").write_text("path,label,split\nx.png,cat,train\ny.png,dog,\n")
    with pytest.raises(SubptError, match="some rows have a split"):
        build_task("csv", root=tmp_path / "b.csv", shots=1, seed=1)
    (tmp_path / "c.csv").write_text("path,label,split\nx.png,cat,holdout\n")
    with pytest.raises(SubptError, match="line 2"):
        build_task("csv", root=tmp_path / "c.csv", shots=1, seed=1)
    with pytest.raises(SubptError, match="3 .csv files"):
        build_task("csv", root=tmp_path, shots=1, seed=1)
