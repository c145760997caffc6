"""Generic datasets: an ImageFolder tree or a CSV file, registered as `imagefolder` and `csv`.

imagefolder (root = the tree):
    root/train/<class>/<image> [root/val/<class>/...] [root/test/<class>/...]  - split layout, or
    root/<class>/<image>                                                         - one tree
    Splits that are not on disk are carved per class from train (or from the one tree) with a seeded
    shuffle: `val_ratio` (0.2) and `test_ratio` (0.3) of each class's images.
csv (root = the .csv file, or a folder holding exactly one .csv, or a folder plus option `file`):
    rows path,label[,classname[,split]] without a header, or any column order with a header naming
    path, label and optionally classname and split (train/val/test). Paths are relative to the CSV's
    folder (or option `image_root`). A label that is not an integer is itself the class name.
Class names are folder names / CSV names with `_` turned into spaces (as CoOp does before prompting);
an optional `classnames` file of lines '<folder or label> <class name>' overrides them.
Options of both: template ('a photo of a {}.'), val_ratio, test_ratio, split_seed (0), classnames,
name, subsample ('all'/'base'/'novel'); csv also: file, image_root.
"""

from __future__ import annotations

import csv
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from subpt.data.base import Item, TaskData, subsample_task
from subpt.data.coop_specs import underscores_to_spaces
from subpt.data.coop_splits import (
    SPLITS,
    list_images,
    list_subdirs,
    load_image_file,
    read_classnames_txt,
)
from subpt.data.registry import register_dataset
from subpt.data.sampling import few_shot, validation_shots
from subpt.errors import SubptError

DEFAULT_TEMPLATE = "a photo of a {}."
_COMMON = ("template", "val_ratio", "test_ratio", "split_seed", "classnames", "name", "subsample")


def _check_options(dataset: str, options: Mapping[str, Any], allowed: Sequence[str]) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise SubptError(
            f"dataset {dataset!r} has no option {unknown[0]!r}; its options are: {', '.join(allowed)}"
        )


def _ratio(options: Mapping[str, Any], key: str, default: float) -> float:
    value = options.get(key, default)
    try:
        r = float(value)
    except (TypeError, ValueError):
        raise SubptError(f"option {key} must be a number in [0, 1), got {value!r}") from None
    if not 0.0 <= r < 1.0:
        raise SubptError(f"option {key} must lie in [0, 1), got {r}")
    return r


def _int(options: Mapping[str, Any], key: str, default: int) -> int:
    value = options.get(key, default)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SubptError(f"option {key} must be an integer, got {value!r}") from None


def _template(options: Mapping[str, Any]) -> str:
    t = str(options.get("template", DEFAULT_TEMPLATE))
    if t.count("{}") != 1:
        raise SubptError(
            f"option template must contain '{{}}' exactly once (where the class name goes), got {t!r}"
        )
    return t


def carve_splits(
    by_class: Mapping[int, Sequence[str]],
    fractions: Mapping[str, float],
    split_seed: int,
    source: str,
) -> dict[str, dict[int, list[str]]]:
    """Split each class's paths with a seeded shuffle: `fractions` of them go to each named split
    (rounded, CoOp-style), the rest stays in 'train'. Each class's draw depends only on its own paths."""
    out: dict[str, dict[int, list[str]]] = {"train": {}, **{s: {} for s in fractions}}
    for label in sorted(by_class):
        paths = sorted(by_class[label])
        rng = random.Random(f"{split_seed}/{label}/{len(paths)}")
        rng.shuffle(paths)
        start = 0
        for split, frac in fractions.items():
            n = round(len(paths) * frac)
            if frac > 0:
                n = max(n, 1)
            out[split][label] = paths[start : start + n]
            start += n
        out["train"][label] = paths[start:]
        if not out["train"][label]:
            raise SubptError(
                f"{source}: class with label {label} has only {len(paths)} images, too few to carve "
                f"{', '.join(fractions)} from; add images, lower val_ratio/test_ratio, or provide the splits"
            )
    return out


def _task(
    name: str,
    classnames: list[str],
    splits: Mapping[str, Mapping[int, Sequence[str]]],
    shots: int,
    seed: int,
    options: Mapping[str, Any],
) -> TaskData:
    def items(split: str) -> list[Item]:
        return [
            Item(source=p, label=label, classname=classnames[label])
            for label in sorted(splits[split])
            for p in splits[split][label]
        ]

    task = TaskData(
        name=str(options.get("name", name)),
        classnames=classnames,
        template=_template(options),
        train=few_shot(items("train"), shots, seed, "train"),
        val=few_shot(items("val"), validation_shots(shots), seed, "val"),
        test=items("test"),
        load_image=load_image_file,
        templates=[_template(options)],
    )
    return subsample_task(task, str(options.get("subsample", "all")))


def _fill_missing(
    present: dict[str, dict[int, list[str]]], options: Mapping[str, Any], source: str
) -> dict[str, dict[int, list[str]]]:
    """Carve the splits missing from `present` out of its train split, per class."""
    fractions = {
        s: _ratio(options, f"{s}_ratio", d) for s, d in (("val", 0.2), ("test", 0.3)) if s not in present
    }
    if sum(fractions.values()) >= 1.0:
        raise SubptError(f"val_ratio + test_ratio must be below 1, got {sum(fractions.values())}")
    if not fractions:
        return present
    carved = carve_splits(present["train"], fractions, _int(options, "split_seed", 0), source)
    return {**present, **carved}


def _names_override(root: Path, options: Mapping[str, Any]) -> dict[str, str] | None:
    if options.get("classnames") in (None, ""):
        return None
    path = Path(str(options["classnames"]))
    if not path.is_absolute():
        path = root / path
    return read_classnames_txt(path, "give a file of lines '<folder or label> <class name>'")


def read_imagefolder(root: Path, options: Mapping[str, Any] | None = None) -> tuple[list[str], dict]:
    """Class names and {split: {label: [paths]}} of an ImageFolder tree (see the module docstring)."""
    options = options or {}
    if not root.is_dir():
        raise SubptError(
            f"image folder {root} does not exist; pass the folder holding <class>/ or train/ folders"
        )
    split_layout = (root / "train").is_dir()
    trees = {s: root / s for s in SPLITS if (root / s).is_dir()} if split_layout else {"train": root}
    folders = list_subdirs(trees["train"])
    if not folders:
        raise SubptError(f"image folder {trees['train']} has no <class>/ folders with images")
    label_of = {f: i for i, f in enumerate(folders)}
    present: dict[str, dict[int, list[str]]] = {}
    for split, tree in trees.items():
        per_class: dict[int, list[str]] = {}
        for f in list_subdirs(tree):
            if f not in label_of:
                raise SubptError(
                    f"class folder {tree / f} has no counterpart in {trees['train']}; add it there"
                )
            per_class[label_of[f]] = [str(tree / f / n) for n in list_images(tree / f)]
        present[split] = per_class
    empty = [f for f in folders if not present["train"].get(label_of[f])]
    if empty:
        raise SubptError(
            f"class folder {trees['train'] / empty[0]} holds no images ({len(empty)} such folders)"
        )
    override = _names_override(root, options)
    classnames = [underscores_to_spaces(override.get(f, f) if override else f) for f in folders]
    return classnames, _fill_missing(present, options, str(root))


def _csv_path(root: Path, options: Mapping[str, Any]) -> Path:
    if root.is_file():
        return root
    if not root.is_dir():
        raise SubptError(f"CSV dataset {root} does not exist; pass the .csv file or its folder")
    if options.get("file"):
        return root / str(options["file"])
    found = sorted(p for p in root.iterdir() if p.suffix.lower() == ".csv")
    if len(found) != 1:
        raise SubptError(
            f"{root} holds {len(found)} .csv files; pass the file itself as --root or name it with option file"
        )
    return found[0]


def read_csv_dataset(root: Path, options: Mapping[str, Any] | None = None) -> tuple[list[str], dict]:
    """Class names and {split: {label: [paths]}} of a CSV dataset (see the module docstring)."""
    options = options or {}
    path = _csv_path(root, options)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    except FileNotFoundError:
        raise SubptError(f"CSV file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise SubptError(f"CSV file {path} cannot be read ({e})") from None
    if not rows:
        raise SubptError(f"CSV file {path} is empty; give rows path,label[,classname[,split]]")
    header = [c.strip().lower() for c in rows[0]]
    if "path" in header:
        missing = [c for c in ("path", "label") if c not in header]
        if missing:
            raise SubptError(f"CSV file {path}: the header has no {missing[0]!r} column")
        cols = {c: header.index(c) for c in ("path", "label", "classname", "split") if c in header}
        body = list(enumerate(rows[1:], 2))
    else:
        cols = {
            c: i for i, c in enumerate(("path", "label", "classname", "split")[: max(len(r) for r in rows)])
        }
        body = list(enumerate(rows, 1))
    base = Path(str(options["image_root"])) if options.get("image_root") else path.parent
    if not base.is_absolute():
        base = path.parent / base
    records: list[tuple[str, str, str | None, str | None]] = []
    for n, r in body:
        if (
            len(r) <= max(cols["path"], cols["label"])
            or not r[cols["path"]].strip()
            or not r[cols["label"]].strip()
        ):
            raise SubptError(f"CSV file {path} line {n}: {','.join(r)!r} lacks a path or a label")
        cell = {c: (r[i].strip() if i < len(r) and r[i].strip() else None) for c, i in cols.items()}
        split = cell.get("split")
        if split is not None and split.lower() not in SPLITS:
            raise SubptError(f"CSV file {path} line {n}: split {split!r} is not one of train, val, test")
        records.append(
            (str(base / cell["path"]), cell["label"], cell.get("classname"), split and split.lower())
        )
    if not records:
        raise SubptError(f"CSV file {path} has a header but no rows")
    int_labels = all(_is_int(lbl) for _, lbl, _, _ in records)
    keys = sorted({lbl for _, lbl, _, _ in records}, key=(lambda s: int(s)) if int_labels else None)
    label_of = {k: i for i, k in enumerate(keys)}
    names: dict[int, str] = {}
    for _, lbl, cname, _ in records:
        label = label_of[lbl]
        given = cname if cname is not None else (None if int_labels else lbl)
        if given is None:
            continue
        if names.setdefault(label, given) != given:
            raise SubptError(f"CSV file {path}: label {lbl} is called both {names[label]!r} and {given!r}")
    override = _names_override(path.parent, options)
    classnames = []
    for k in keys:
        name = (override or {}).get(k) or names.get(label_of[k])
        if name is None:
            raise SubptError(
                f"CSV file {path}: label {k} has no class name; add a classname column or option classnames"
            )
        classnames.append(underscores_to_spaces(name))
    has_split = any(s is not None for *_, s in records)
    if has_split and any(s is None for *_, s in records):
        raise SubptError(f"CSV file {path}: some rows have a split and some do not; give every row a split")
    present: dict[str, dict[int, list[str]]] = defaultdict(dict)
    for p, lbl, _, split in records:
        present[split or "train"].setdefault(label_of[lbl], []).append(p)
    if "train" not in present:
        raise SubptError(f"CSV file {path} has no train rows")
    return classnames, _fill_missing(dict(present), options, str(path))


def _is_int(s: str) -> bool:
    try:
        int(s)
    except ValueError:
        return False
    return True


@register_dataset("imagefolder")
def build_imagefolder(root: Path | None, shots: int, seed: int, **options: Any) -> TaskData:
    """An ImageFolder tree as a task (registry name `imagefolder`)."""
    _check_options("imagefolder", options, _COMMON)
    if root is None:
        raise SubptError("dataset 'imagefolder' reads files: pass --root DIR")
    classnames, splits = read_imagefolder(Path(root), options)
    return _task("imagefolder", classnames, splits, shots, seed, options)


@register_dataset("csv")
def build_csv(root: Path | None, shots: int, seed: int, **options: Any) -> TaskData:
    """A CSV of path,label[,classname][,split] as a task (registry name `csv`)."""
    _check_options("csv", options, (*_COMMON, "file", "image_root"))
    if root is None:
        raise SubptError("dataset 'csv' reads files: pass --root FILE.csv")
    classnames, splits = read_csv_dataset(Path(root), options)
    return _task("csv", classnames, splits, shots, seed, options)
