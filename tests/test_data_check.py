"""`check_root` and `subpt data check` on fake CoOp trees: good trees pass, every problem names its file."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from fake_datasets import ALL_DATASETS, make_fake_dataset
from PIL import Image
from subpt._cli.data_cmd import data_app
from typer.testing import CliRunner

from subpt.data.check import check_root, checks_failed, format_report
from subpt.errors import SubptError


@pytest.fixture(scope="module")
def good_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("good")
    for name in ALL_DATASETS:
        make_fake_dataset(root, name)
    return root


def _one(root: Path, name: str, shots: int = 2, **kw: object):
    (check,) = check_root(root, name, shots, **kw)  # type: ignore[arg-type]
    return check


def test_good_tree_is_ok_for_all_fifteen(good_root: Path) -> None:
    checks = check_root(good_root, shots=2)
    assert [c.dataset for c in checks] == list(ALL_DATASETS)
    assert all(c.status == "ok" and not c.problems for c in checks), [c.problems for c in checks]
    assert not checks_failed(checks)
    caltech = checks[1]
    assert caltech.counts == {"train": 16, "val": 16, "test": 16} and caltech.images_checked == 48
    assert caltech.class_counts[0] == {"label": 0, "classname": "face", "train": 4, "val": 4, "test": 4}
    assert checks[0].counts == {"train": 16, "test": 16}  # ImageNet: val is the test set
    assert checks[-1].counts == {"test": 16}  # variants are test-only
    json.dumps([c.to_dict() for c in checks])
    report = format_report(checks)
    assert all(name in report for name in ALL_DATASETS)
    assert "15 ok, 0 with problems, 0 missing" in report


def test_absent_datasets_are_reported_missing_with_where_to_get_them(tmp_path: Path) -> None:
    make_fake_dataset(tmp_path, "eurosat")
    checks = check_root(tmp_path, shots=2)
    status = {c.dataset: c.status for c in checks}
    assert status.pop("eurosat") == "ok" and set(status.values()) == {"missing"}
    food = next(c for c in checks if c.dataset == "food101")
    assert "food-101" in food.hint and "split_zhou_Food101.json" in food.hint
    assert not checks_failed(checks)  # some present and fine, the rest simply absent
    assert checks_failed(check_root(tmp_path, "food101", 2), named=True)
    assert checks_failed(check_root(tmp_path / "eurosat", shots=2))  # nothing found at all
    assert "missing datasets" in format_report(checks)


def test_missing_split_file_is_named(tmp_path: Path) -> None:
    make_fake_dataset(tmp_path, "caltech101")
    split = tmp_path / "caltech-101" / "split_zhou_Caltech101.json"
    split.unlink()
    c = _one(tmp_path, "caltech101")
    assert c.status == "problems"
    assert any(str(split) in p and "download" in p for p in c.problems)


def test_invalid_json_split_file_is_named(tmp_path: Path) -> None:
    make_fake_dataset(tmp_path, "oxford_pets")
    split = tmp_path / "oxford_pets" / "split_zhou_OxfordPets.json"
    split.write_text('{"train": [["a.jpg", 0, "x"]')
    (problem,) = _one(tmp_path, "oxford_pets").problems
    assert str(split) in problem and "not valid JSON" in problem


@pytest.mark.parametrize(
    "content, words",
    [
        ("[1, 2, 3]", "JSON object"),
        ('{"train": [], "test": []}', "no 'val'"),
        ('{"train": {}, "val": [], "test": []}', "must be a list"),
        ('{"train": [["a.jpg", "zero", "x"]], "val": [], "test": []}', "entry 0"),
        ('{"train": [["a.jpg", 0]], "val": [], "test": []}', "entry 0"),
    ],
)
def test_wrongly_structured_split_file_is_named(tmp_path: Path, content: str, words: str) -> None:
    make_fake_dataset(tmp_path, "food101")
    split = tmp_path / "food-101" / "split_zhou_Food101.json"
    split.write_text(content)
    (problem,) = _one(tmp_path, "food101").problems
    assert str(split) in problem and words in problem


def test_undecodable_and_missing_images_are_named(tmp_path: Path) -> None:
    make_fake_dataset(tmp_path, "dtd")
    images = tmp_path / "dtd" / "images"
    broken = next(images.glob("banded/*.jpg"))
    broken.write_bytes(b"\x00garbage, not an image")
    gone = next(images.glob("blotchy/*.jpg"))
    gone.unlink()
    c = _one(tmp_path, "dtd")
    assert c.status == "problems" and len(c.unreadable) == 2
    assert any(str(broken) in p and "does not decode" in p for p in c.problems)
    assert any(str(gone) in p and "does not exist" in p for p in c.problems)
    assert {u["path"] for u in c.unreadable} == {str(broken), str(gone)}


def test_truncated_jpeg_is_caught_by_full_decode(tmp_path: Path) -> None:
    make_fake_dataset(tmp_path, "eurosat")
    target = next((tmp_path / "eurosat" / "2750").glob("Forest/*.jpg"))
    buf = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(buf, format="JPEG")
    target.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    decoded = _one(tmp_path, "eurosat", decode=True)
    assert decoded.image_check == "decode"
    assert any(str(target) in p for p in decoded.problems)


def test_class_with_fewer_images_than_shots_is_named(tmp_path: Path) -> None:
    make_fake_dataset(tmp_path, "ucf101", n_per_class=4)
    split_path = tmp_path / "ucf101" / "split_zhou_UCF101.json"
    split = json.loads(split_path.read_text())
    # label 2 keeps 1 of its 4 training images; label 0 keeps 1 of its 4 validation images
    split["train"] = [e for e in split["train"] if e[1] != 2] + [e for e in split["train"] if e[1] == 2][:1]
    split["val"] = [e for e in split["val"] if e[1] != 0] + [e for e in split["val"] if e[1] == 0][:1]
    split_path.write_text(json.dumps(split))
    c = _one(tmp_path, "ucf101", shots=3)
    assert c.status == "problems"
    assert c.low_shot_classes == ["Apply Eye Makeup", "Band Marching"]
    assert any("'Band Marching'" in p and "1 train image" in p and "--shots 3" in p for p in c.problems)
    assert any(
        "'Apply Eye Makeup'" in p and "1 val image" in p and "--shots 1 or fewer" in p for p in c.problems
    )
    assert _one(tmp_path, "ucf101", shots=1).ok


def test_fgvc_and_imagenet_missing_files_are_named(tmp_path: Path) -> None:
    make_fake_dataset(tmp_path, "fgvc_aircraft")
    make_fake_dataset(tmp_path, "imagenet")
    (tmp_path / "fgvc_aircraft" / "images_variant_val.txt").unlink()
    (tmp_path / "imagenet" / "classnames.txt").unlink()
    fgvc = _one(tmp_path, "fgvc_aircraft")
    assert any("images_variant_val.txt" in p for p in fgvc.problems)
    imagenet = _one(tmp_path, "imagenet")
    assert any(str(tmp_path / "imagenet" / "classnames.txt") in p for p in imagenet.problems)


def test_variant_with_unknown_class_folder_is_named(tmp_path: Path) -> None:
    make_fake_dataset(tmp_path, "imagenet_r")
    shutil.copytree(
        next(p for p in (tmp_path / "imagenet-rendition" / "imagenet-r").iterdir() if p.is_dir()),
        tmp_path / "imagenet-rendition" / "imagenet-r" / "n99999999",
    )
    (problem,) = _one(tmp_path, "imagenet_r").problems
    assert "n99999999" in problem and "classnames.txt" in problem


def test_unknown_dataset_and_missing_root_are_subpt_errors(tmp_path: Path) -> None:
    with pytest.raises(SubptError, match="unknown CoOp dataset"):
        check_root(tmp_path, "mnist")
    with pytest.raises(SubptError, match="does not exist"):
        check_root(tmp_path / "nope")


def test_cli_exit_codes_and_json(good_root: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(data_app, ["check", "--root", str(good_root), "--dataset", "eurosat", "--shots", "2"])
    assert ok.exit_code == 0, ok.output
    assert "eurosat" in ok.output and "1 ok" in ok.output
    out = runner.invoke(data_app, ["check", "--root", str(good_root), "--shots", "2", "--json"])
    assert out.exit_code == 0
    data = json.loads(out.output)
    assert data["ok"] is True and len(data["datasets"]) == 15
    short = runner.invoke(data_app, ["check", "--root", str(good_root), "--dataset", "dtd", "--shots", "16"])
    assert short.exit_code == 1 and "fewer than --shots 16" in short.output
    missing_named = runner.invoke(data_app, ["check", "--root", str(tmp_path), "--dataset", "dtd"])
    assert missing_named.exit_code == 1 and "dtd" in missing_named.output
    no_root = runner.invoke(data_app, ["check", "--root", str(tmp_path / "absent")])
    assert no_root.exit_code == 2
    assert "does not exist" in no_root.output and "Traceback" not in no_root.output
    assert len(no_root.output.strip().splitlines()) == 1
    bad_name = runner.invoke(data_app, ["check", "--root", str(tmp_path), "--dataset", "mnist"])
    assert bad_name.exit_code == 2 and "unknown CoOp dataset" in bad_name.output
