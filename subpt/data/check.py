"""Verify a data root against CoOp's layouts: folders, split files, every image, counts and low-shot classes.

`check_root(root)` checks all 15 CoOp datasets (or one), never raises for a problem in the data (each
problem is a message naming the file and the fix) and returns one DatasetCheck per dataset, printable
with `format_report` and JSON-able with `DatasetCheck.to_dict()`. A dataset whose folder is absent is
reported as `missing` with where to get it.

Images are checked with PIL: by default `Image.open` + `verify()` (reads the header and, for PNG, the
chunk checksums; fast, but a truncated JPEG body passes), or with `decode=True` a full pixel decode
(`load()`, catches truncated files; several times slower).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image

from subpt.data.coop_readers import dataset_dir, image_root, read_raw, setup_hint, variant_classnames_file
from subpt.data.coop_specs import COOP_DATASETS, FGVC, IMAGENET, SPLIT_FILE, VARIANT, CoopSpec, get_spec
from subpt.data.coop_splits import RawDataset
from subpt.data.sampling import validation_shots
from subpt.errors import SubptError

OK, PROBLEMS, MISSING = "ok", "problems", "missing"
MAX_LISTED = 10  # unreadable images listed one by one in the problems; all go to `unreadable` (capped)
MAX_RECORDED = 1000


@dataclass
class DatasetCheck:
    """The result of checking one dataset under a data root."""

    dataset: str
    title: str
    folder: str
    status: str = OK  # ok | problems | missing
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    hint: str = ""  # where to get the dataset (always filled; shown when missing)
    num_classes: int | None = None
    counts: dict[str, int] = field(default_factory=dict)  # images per split
    class_counts: list[dict[str, object]] = field(default_factory=list)  # label, classname, per split
    images_checked: int = 0
    image_check: str = "verify"  # verify | decode
    unreadable: list[dict[str, str]] = field(default_factory=list)  # path, error (first MAX_RECORDED)
    low_shot_classes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the dataset is present and has no problem."""
        return self.status == OK

    def to_dict(self) -> dict[str, object]:
        """A JSON-able dict of every field."""
        return asdict(self)


def _problem_paths(spec: CoopSpec, root: Path) -> list[str]:
    """Layout problems: required folders/files absent (all of them, not just the first)."""
    d = dataset_dir(spec, root)
    out: list[str] = []
    img = image_root(spec, root)
    if spec.kind != IMAGENET and not img.is_dir():
        tried = " or ".join(str(d / r) for r in spec.image_dirs)
        out.append(f"image folder {tried} is missing; {setup_hint(spec)}")
    if spec.kind == SPLIT_FILE and not (d / str(spec.split_file)).is_file():
        out.append(
            f"split file {d / str(spec.split_file)} is missing; download it from {spec.split_url} into {d}"
        )
    if spec.kind == FGVC:
        for name in (str(spec.split_file), *spec.extra):
            if not (d / name).is_file():
                out.append(f"FGVCAircraft file {d / name} is missing; re-extract data/ of {spec.get}")
    if spec.kind == IMAGENET:
        if not (d / "classnames.txt").is_file():
            out.append(
                f"class-name file {d / 'classnames.txt'} is missing; download it from {spec.split_url}"
            )
        for sub in ("train", "val"):
            if not (img / sub).is_dir():
                out.append(f"ImageNet folder {img / sub} is missing; extract ILSVRC2012 {sub} into {img}")
    if spec.kind == VARIANT:
        path, _ = variant_classnames_file(spec, root)
        if not path.is_file():
            out.append(f"class-name file {path} is missing; copy imagenet/classnames.txt into {d}")
    return out


def _verify_one(path: str, decode: bool) -> str | None:
    """None if the image opens (and verifies or decodes), else why not."""
    try:
        with Image.open(path) as im:
            if decode:
                im.load()
            else:
                im.verify()
    except FileNotFoundError:
        return "missing"
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, struct.error, ...)
        return f"{type(e).__name__}: {e}"
    return None


def _verify_batch(paths: Sequence[str], decode: bool) -> list[tuple[str, str]]:
    out = []
    for p in paths:
        err = _verify_one(p, decode)
        if err is not None:
            out.append((p, err))
    return out


def verify_images(
    paths: Sequence[str], decode: bool = False, workers: int | None = None
) -> list[tuple[str, str]]:
    """(path, error) for every image in `paths` that is missing or does not open; threads do the I/O."""
    workers = workers or min(8, (os.cpu_count() or 1) * 2)
    batch = 256
    chunks = [paths[i : i + batch] for i in range(0, len(paths), batch)]
    if workers <= 1 or len(chunks) <= 1:
        return [bad for c in chunks for bad in _verify_batch(c, decode)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [bad for res in pool.map(lambda c: _verify_batch(c, decode), chunks) for bad in res]


def _count(raw: RawDataset) -> tuple[dict[str, int], list[dict[str, object]]]:
    counts = {s: len(raw.split(s)) for s in ("train", "val", "test")}
    per = [
        {"label": i, "classname": n, "train": 0, "val": 0, "test": 0} for i, n in enumerate(raw.classnames)
    ]
    for s in ("train", "val", "test"):
        for it in raw.split(s):
            per[it.label][s] += 1  # type: ignore[operator]
    return counts, per


def _low_shot(spec: CoopSpec, per: Iterable[dict[str, object]], shots: int) -> tuple[list[str], list[str]]:
    """Problems for classes with fewer images than a `shots`-shot draw needs, and those classes."""
    if shots <= 0 or spec.kind == VARIANT:
        return [], []
    val_split = "test" if spec.kind == IMAGENET else "val"
    need = {"train": shots, val_split: validation_shots(shots)}
    problems, names = [], []
    for row in per:
        for split, k in need.items():
            have = int(row[split])  # type: ignore[call-overload]
            if have < k:
                what = f"--shots {shots}" if split == "train" else f"min(shots, 4) = {k} validation shots"
                fix = f"use --shots {have} or fewer, or add images" if have else "add images or fix the split"
                problems.append(
                    f"class {row['classname']!r} (label {row['label']}) has {have} {split} image(s), "
                    f"fewer than {what}; {fix}"
                )
                names.append(str(row["classname"]))
    return problems, sorted(set(names))


def check_dataset(
    name: str, root: Path, shots: int = 16, *, decode: bool = False, workers: int | None = None
) -> DatasetCheck:
    """Check one CoOp dataset under the data root `root` (see the module docstring)."""
    spec = get_spec(name)
    d = dataset_dir(spec, root)
    result = DatasetCheck(
        dataset=spec.name,
        title=spec.title,
        folder=str(d),
        hint=setup_hint(spec),
        image_check="decode" if decode else "verify",
    )
    if not d.is_dir():
        result.status = MISSING
        return result
    result.problems += _problem_paths(spec, root)
    if result.problems:
        result.status = PROBLEMS
        return result
    try:
        raw = read_raw(spec, root)
        train = raw.train  # ImageNet lists its training files here
    except SubptError as e:
        result.problems.append(str(e))
        result.status = PROBLEMS
        return result
    except OSError as e:
        result.problems.append(f"cannot read {d} ({e}); check the permissions and the disk")
        result.status = PROBLEMS
        return result
    result.notes += raw.notes
    result.num_classes = len(raw.classnames)
    result.counts, result.class_counts = _count(raw)
    # Splits that do not exist by design: ImageNet's val is its test set; the variants are test-only.
    absent = {IMAGENET: ("val",), VARIANT: ("train", "val")}.get(spec.kind, ())
    result.counts = {s: n for s, n in result.counts.items() if s not in absent}
    for row in result.class_counts:
        for s in absent:
            row.pop(s)
    low, result.low_shot_classes = _low_shot(spec, result.class_counts, shots)
    result.problems += low
    paths = list(dict.fromkeys(str(it.source) for items in (train, raw.val, raw.test) for it in items))
    result.images_checked = len(paths)
    bad = verify_images(paths, decode=decode, workers=workers)
    listing = ", ".join(p.name for p in raw.sources) or "the folder"
    for i, (path, err) in enumerate(bad):
        if i < MAX_RECORDED:
            result.unreadable.append({"path": path, "error": err})
        if i < MAX_LISTED:
            if err == "missing":
                result.problems.append(
                    f"image {path} (listed in {listing}) does not exist; re-extract the dataset archive"
                )
            else:
                result.problems.append(
                    f"image {path} does not decode ({err}); re-extract it from the dataset archive"
                )
    if len(bad) > MAX_LISTED:
        result.problems.append(
            f"... and {len(bad) - MAX_LISTED} more missing or unreadable images ({len(bad)} of {len(paths)}; "
            "all are listed with --json)"
        )
    result.status = PROBLEMS if result.problems else OK
    return result


def check_root(
    root: Path,
    dataset: str | None = None,
    shots: int = 16,
    *,
    decode: bool = False,
    workers: int | None = None,
) -> list[DatasetCheck]:
    """Check `dataset` (or all 15 CoOp datasets) under the data root; a missing root is a SubptError."""
    root = Path(root)
    if not root.is_dir():
        raise SubptError(f"data root {root} does not exist or is not a folder")
    names = [dataset] if dataset else list(COOP_DATASETS)
    for n in names:
        get_spec(n)  # unknown names fail before any work
    return [check_dataset(n, root, shots, decode=decode, workers=workers) for n in names]


def checks_failed(checks: Sequence[DatasetCheck], named: bool = False) -> bool:
    """Whether a check run should fail: any problem; a named dataset that is missing; nothing found at all."""
    if any(c.status == PROBLEMS for c in checks):
        return True
    if named and any(c.status == MISSING for c in checks):
        return True
    return bool(checks) and all(c.status == MISSING for c in checks)


def _fmt(n: int | None) -> str:
    return "-" if n is None else str(n)


def format_report(checks: Sequence[DatasetCheck]) -> str:
    """A plain-text table (one row per dataset) followed by every problem, note and missing-dataset hint."""
    header = ("dataset", "status", "classes", "train", "val", "test", "min/class", "images", "problems")
    rows = []
    for c in checks:
        train_min = min((int(r["train"]) for r in c.class_counts if "train" in r), default=None)  # type: ignore[call-overload]
        present = c.status != MISSING and c.num_classes is not None
        rows.append(
            (
                c.dataset,
                c.status,
                _fmt(c.num_classes),
                _fmt(c.counts.get("train")) if present else "-",
                _fmt(c.counts.get("val")) if present else "-",
                _fmt(c.counts.get("test")) if present else "-",
                _fmt(train_min) if present and c.counts.get("train") else "-",
                _fmt(c.images_checked) if present else "-",
                "-" if c.status == MISSING else str(len(c.problems)),
            )
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    for c in checks:
        if c.problems:
            lines += ["", f"{c.dataset} ({c.folder}): {len(c.problems)} problem(s)"]
            lines += [f"  - {p}" for p in c.problems]
        if c.notes and c.status != MISSING:
            lines += ["", f"{c.dataset}: note(s)"] if not c.problems else []
            lines += [f"  * {n}" for n in c.notes]
    missing = [c for c in checks if c.status == MISSING]
    if missing:
        lines += ["", "missing datasets (folder absent):"]
        lines += [f"  {c.dataset}: {c.folder} - {c.hint}" for c in missing]
    n_ok = sum(c.status == OK for c in checks)
    n_bad = sum(c.status == PROBLEMS for c in checks)
    mode = checks[0].image_check if checks else "verify"
    how = "PIL verify()" if mode == "verify" else "full PIL decode"
    lines += ["", f"{n_ok} ok, {n_bad} with problems, {len(missing)} missing; images checked with {how}"]
    return "\n".join(lines)
