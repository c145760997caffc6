"""Readers of CoOp's on-disk layouts: split-file datasets, FGVCAircraft, ImageNet and its four variants.

Each reader returns a RawDataset (all items, cleaned class names) or raises a one-line SubptError that
names the file at fault and how to fix it. Labels and class order follow CoOp's readers exactly:
- split-file datasets: the labels stored in split_zhou_<Name>.json;
- FGVCAircraft: the line order of variants.txt;
- ImageNet and ImageNet-Sketch/-A/-R: sorted <wnid> folders, names from classnames.txt;
- ImageNet-V2: folder <i> is line i of classnames.txt.
"""

from __future__ import annotations

import os
from pathlib import Path

from subpt.data.base import Item
from subpt.data.coop_specs import FGVC, IMAGENET, SPLIT_FILE, VARIANT, CoopSpec
from subpt.data.coop_splits import (
    RawDataset,
    classnames_from_labels,
    file_fingerprint,
    items_from_triples,
    list_images,
    list_subdirs,
    parse_split_entries,
    read_classnames_txt,
    read_json_file,
)
from subpt.errors import SubptError

VARIANT_IGNORED = ("README.txt",)  # CoOp's TO_BE_IGNORED for ImageNet-A/-R (files, skipped anyway)


def dataset_dir(spec: CoopSpec, root: Path) -> Path:
    """The dataset's folder under the data root."""
    return root / spec.folder


def image_root(spec: CoopSpec, root: Path) -> Path:
    """The image folder split paths are relative to: the first of the spec's candidates that exists."""
    d = dataset_dir(spec, root)
    for rel in spec.image_dirs:
        if (d / rel).is_dir():
            return d / rel
    return d / spec.image_dirs[0]


def setup_hint(spec: CoopSpec) -> str:
    """One line saying where to get the dataset and where its files go (see docs/datasets.md)."""
    where = f"get it from {spec.get}"
    if spec.split_url and spec.kind == SPLIT_FILE:
        where += f" and {spec.split_file} from {spec.split_url}"
    return f"{where}; lay it out under {spec.folder}/ as docs/datasets.md describes"


def _require_dir(path: Path, spec: CoopSpec) -> None:
    if not path.is_dir():
        raise SubptError(f"{spec.title} image folder {path} is missing; {setup_hint(spec)}")


def read_raw(spec: CoopSpec, root: Path) -> RawDataset:
    """Read dataset `spec` under data root `root` (all items, before few-shot sampling)."""
    d = dataset_dir(spec, root)
    if not d.is_dir():
        raise SubptError(f"{spec.title} folder {d} does not exist; {setup_hint(spec)}")
    if spec.kind == SPLIT_FILE:
        return _read_split_dataset(spec, root)
    if spec.kind == FGVC:
        return _read_fgvc(spec, root)
    if spec.kind == IMAGENET:
        return _read_imagenet(spec, root)
    if spec.kind == VARIANT:
        return _read_variant(spec, root)
    raise AssertionError(spec.kind)


def _read_split_dataset(spec: CoopSpec, root: Path) -> RawDataset:
    assert spec.split_file is not None
    d = dataset_dir(spec, root)
    images = image_root(spec, root)
    _require_dir(images, spec)
    path = d / spec.split_file
    fix = f"download {spec.split_file} from {spec.split_url} into {d}"
    rows = parse_split_entries(read_json_file(path, "split file", fix), path, fix)
    splits = {s: items_from_triples(r, images, spec.clean) for s, r in rows.items()}
    classnames = classnames_from_labels(
        ((it.label, it.classname) for s in ("train", "val", "test") for it in splits[s]), path
    )
    return RawDataset(
        name=spec.name,
        dataset_dir=d,
        image_root=images,
        classnames=classnames,
        fingerprint=file_fingerprint(path, extra=spec.name),
        val=splits["val"],
        test=splits["test"],
        sources=[path],
        _train=splits["train"],
    )


def _read_fgvc(spec: CoopSpec, root: Path) -> RawDataset:
    d = dataset_dir(spec, root)
    images = image_root(spec, root)
    _require_dir(images, spec)
    fix = f"re-extract data/ of fgvc-aircraft-2013b.tar.gz as {d} ({spec.get})"
    variants_file = d / "variants.txt"
    try:
        variants = [ln.strip() for ln in variants_file.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except FileNotFoundError:
        raise SubptError(f"FGVCAircraft class list {variants_file} is missing; {fix}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SubptError(f"FGVCAircraft class list {variants_file} cannot be read ({e}); {fix}") from None
    if not variants:
        raise SubptError(f"FGVCAircraft class list {variants_file} is empty; {fix}")
    label_of = {name: i for i, name in enumerate(variants)}
    classnames = [spec.clean(v) for v in variants]
    splits: dict[str, list[Item]] = {}
    files = [variants_file]
    for split in ("train", "val", "test"):
        path = d / f"images_variant_{split}.txt"
        files.append(path)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise SubptError(f"FGVCAircraft split file {path} is missing; {fix}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise SubptError(f"FGVCAircraft split file {path} cannot be read ({e}); {fix}") from None
        items: list[Item] = []
        for n, line in enumerate(lines, 1):
            line = line.strip()
            if not line:
                continue
            image_id, _, variant = line.partition(" ")
            if variant not in label_of:
                raise SubptError(
                    f"{path} line {n}: {line!r} is not '<image id> <variant>' with a variant of {variants_file}; "
                    f"{fix}"
                )
            label = label_of[variant]
            items.append(
                Item(
                    source=os.path.join(str(images), image_id + ".jpg"),
                    label=label,
                    classname=classnames[label],
                )
            )
        splits[split] = items
    return RawDataset(
        name=spec.name,
        dataset_dir=d,
        image_root=images,
        classnames=classnames,
        fingerprint=file_fingerprint(*files, extra=spec.name),
        val=splits["val"],
        test=splits["test"],
        sources=files,
        _train=splits["train"],
    )


def _folder_items(folder: Path, folders: list[str], labels: list[int], classnames: list[str]) -> list[Item]:
    """Items of `folder/<sub>/<image>` for each sub-folder with its label."""
    items: list[Item] = []
    base = str(folder)
    for sub, label in zip(folders, labels, strict=True):
        sub_dir = os.path.join(base, sub)
        for name in list_images(Path(sub_dir)):
            items.append(Item(source=os.path.join(sub_dir, name), label=label, classname=classnames[label]))
    return items


def _read_imagenet(spec: CoopSpec, root: Path) -> RawDataset:
    d = dataset_dir(spec, root)
    images = image_root(spec, root)
    classnames_file = d / "classnames.txt"
    names = read_classnames_txt(
        classnames_file, f"download classnames.txt from {spec.split_url} into {d} (lines 'n01440764 tench')"
    )
    train_dir, val_dir = images / "train", images / "val"
    for sub in (train_dir, val_dir):
        if not sub.is_dir():
            raise SubptError(
                f"ImageNet folder {sub} is missing; extract the ILSVRC2012 train and val sets into {images} "
                "(val sorted into <wnid>/ folders)"
            )
    wnids = list_subdirs(train_dir)
    if not wnids:
        raise SubptError(
            f"ImageNet folder {train_dir} has no <wnid>/ class folders; re-extract the train set"
        )
    unknown = [w for w in wnids if w not in names]
    if unknown:
        raise SubptError(
            f"ImageNet class folder {train_dir / unknown[0]} is not listed in {classnames_file} "
            f"({len(unknown)} such folders); use CoOp's classnames.txt ({spec.split_url})"
        )
    classnames = [spec.clean(names[w]) for w in wnids]
    label_of = {w: i for i, w in enumerate(wnids)}
    val_wnids = list_subdirs(val_dir)
    if not val_wnids and list_images(val_dir):
        raise SubptError(
            f"ImageNet folder {val_dir} holds images directly; sort them into <wnid>/ folders like train/ "
            "(for example with the widely used valprep.sh script)"
        )
    stray = [w for w in val_wnids if w not in label_of]
    if stray:
        raise SubptError(
            f"ImageNet val folder {val_dir / stray[0]} has no counterpart in {train_dir}; "
            "train/ and val/ must hold the same <wnid>/ folders"
        )
    test = _folder_items(val_dir, val_wnids, [label_of[w] for w in val_wnids], classnames)

    def load_train() -> list[Item]:
        return _folder_items(train_dir, wnids, list(range(len(wnids))), classnames)

    return RawDataset(
        name=spec.name,
        dataset_dir=d,
        image_root=images,
        classnames=classnames,
        # The train listing is deferred, so the fingerprint covers the class list, not every file.
        fingerprint=file_fingerprint(classnames_file, extra=spec.name + "\n" + "\n".join(wnids)),
        val=[],  # CoOp: ImageNet's val set is its test set
        test=test,
        sources=[classnames_file],
        train_loader=load_train,
    )


def variant_classnames_file(spec: CoopSpec, root: Path) -> tuple[Path, str | None]:
    """The classnames.txt a variant reads: its own copy (CoOp), else imagenet/classnames.txt with a note."""
    own = dataset_dir(spec, root) / "classnames.txt"
    if own.is_file():
        return own, None
    shared = root / "imagenet" / "classnames.txt"
    if shared.is_file():
        return shared, f"{own} is missing, so {shared} was used (CoOp expects a copy in {spec.folder}/)"
    return own, None


def _read_variant(spec: CoopSpec, root: Path) -> RawDataset:
    d = dataset_dir(spec, root)
    images = image_root(spec, root)
    _require_dir(images, spec)
    classnames_file, note = variant_classnames_file(spec, root)
    names = read_classnames_txt(
        classnames_file, f"copy imagenet/classnames.txt (CoOp's ImageNet class names) into {d}"
    )
    folders = list_subdirs(images)
    if not folders:
        raise SubptError(f"{spec.title} folder {images} has no class folders; {setup_hint(spec)}")
    if spec.name == "imagenet_v2":
        # Folder <i> holds images of class i of ImageNet (line i of classnames.txt).
        ordered = list(names.values())
        bad = [f for f in folders if not (f.isdigit() and int(f) < len(ordered))]
        if bad:
            raise SubptError(
                f"ImageNet-V2 folder {images / bad[0]} is not a class index 0..{len(ordered) - 1} "
                f"of {classnames_file}; re-extract imagenetv2-matched-frequency.tar.gz"
            )
        classnames = [spec.clean(n) for n in ordered]
        folders = sorted(folders, key=int)
        labels = [int(f) for f in folders]
    else:
        # Sketch (1000 classes), -A and -R (200-class subsets): sorted <wnid> folders, labels 0..n-1.
        unknown = [f for f in folders if f not in names]
        if unknown:
            raise SubptError(
                f"{spec.title} class folder {images / unknown[0]} is not listed in {classnames_file}; "
                "use CoOp's ImageNet classnames.txt"
            )
        classnames = [spec.clean(names[f]) for f in folders]
        labels = list(range(len(folders)))
    test = _folder_items(images, folders, labels, classnames)
    return RawDataset(
        name=spec.name,
        dataset_dir=d,
        image_root=images,
        classnames=classnames,
        fingerprint=file_fingerprint(classnames_file, extra=spec.name + "\n" + "\n".join(folders)),
        val=[],
        test=test,
        sources=[classnames_file],
        notes=[note] if note else [],
        _train=[],
    )
