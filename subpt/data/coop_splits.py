"""Reading CoOp-format files: split_zhou_<Name>.json, classnames.txt, image folders, and image files.

A split file is JSON {"train": [[relpath, label, classname], ...], "val": [...], "test": [...]} with
paths relative to the dataset's image folder and 0-based labels (CoOp's OxfordPets.read_split format).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from subpt.data.base import Item
from subpt.errors import SubptError

SPLITS: tuple[str, ...] = ("train", "val", "test")
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)


def load_image_file(item: Item) -> Image.Image:
    """Open the file `item.source` with PIL and convert it to RGB; a missing or broken file is a SubptError."""
    path = str(item.source)
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise SubptError(
            f"image file {path} does not exist; run `subpt data check --root DIR` to list what is missing"
        ) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise SubptError(
            f"image file {path} could not be decoded ({e}); re-extract it from the dataset archive"
        ) from None


def is_image_name(name: str) -> bool:
    """Whether a file name looks like an image (by extension, case-insensitive) and is not hidden."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def list_subdirs(folder: Path, ignore: Iterable[str] = ()) -> list[str]:
    """Sorted names of the non-hidden sub-folders of `folder` (CoOp's listdir_nohidden, folders only)."""
    skip = set(ignore)
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith(".") and e.name not in skip)


def list_images(folder: Path) -> list[str]:
    """Sorted file names of the images directly inside `folder`."""
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if is_image_name(e.name) and e.is_file())


def file_fingerprint(*paths: Path, extra: str = "") -> str:
    """A short hash of the bytes of `paths` (and `extra`): identifies the split a few-shot draw came from."""
    h = hashlib.sha256(extra.encode())
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def read_json_file(path: Path, what: str, fix: str) -> object:
    """Parse a JSON file; a missing, unreadable or invalid file is a one-line SubptError naming it and `fix`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SubptError(f"{what} {path} is missing; {fix}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SubptError(f"{what} {path} cannot be read ({e}); {fix}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise SubptError(f"{what} {path} is not valid JSON ({e}); {fix}") from None


def parse_split_entries(data: object, path: Path, fix: str) -> dict[str, list[tuple[str, int, str]]]:
    """Check the structure of a loaded split file and return its (relpath, label, classname) triples."""
    if not isinstance(data, dict):
        raise SubptError(
            f"split file {path} must hold a JSON object with keys train, val, test, "
            f"but holds a {type(data).__name__}; {fix}"
        )
    missing = [s for s in SPLITS if s not in data]
    if missing:
        raise SubptError(f"split file {path} has no {', '.join(repr(s) for s in missing)} list; {fix}")
    out: dict[str, list[tuple[str, int, str]]] = {}
    for split in SPLITS:
        entries = data[split]
        if not isinstance(entries, list):
            raise SubptError(
                f"split file {path}: {split!r} must be a list of [relpath, label, classname], "
                f"got a {type(entries).__name__}; {fix}"
            )
        rows: list[tuple[str, int, str]] = []
        for i, e in enumerate(entries):
            ok = (
                isinstance(e, list | tuple)
                and len(e) == 3
                and isinstance(e[0], str)
                and e[0] != ""
                and isinstance(e[1], int)
                and not isinstance(e[1], bool)
                and e[1] >= 0
                and isinstance(e[2], str)
            )
            if not ok:
                shown = json.dumps(e)[:80]
                raise SubptError(
                    f"split file {path}: {split!r} entry {i} is {shown}, not [relpath, label >= 0, classname]; "
                    f"{fix}"
                )
            rows.append((e[0], e[1], e[2]))
        out[split] = rows
    return out


def classnames_from_labels(pairs: Iterable[tuple[int, str]], source: Path) -> list[str]:
    """Class names indexed by label from (label, classname) pairs; labels must be 0..n-1, one name each."""
    names: dict[int, str] = {}
    for label, name in pairs:
        old = names.setdefault(label, name)
        if old != name:
            raise SubptError(
                f"{source}: label {label} is called both {old!r} and {name!r}; re-download the file"
            )
    if not names:
        raise SubptError(f"{source} lists no images; re-download the file")
    n = max(names) + 1
    gaps = [i for i in range(n) if i not in names]
    if gaps:
        raise SubptError(
            f"{source}: labels must run 0..{n - 1} but {len(gaps)} are unused (first: {gaps[0]}); re-download it"
        )
    return [names[i] for i in range(n)]


def read_classnames_txt(path: Path, fix: str) -> dict[str, str]:
    """Read ImageNet's classnames.txt: lines '<wnid> <class name>' -> {wnid: name}, in file order."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise SubptError(f"class-name file {path} is missing; {fix}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SubptError(f"class-name file {path} cannot be read ({e}); {fix}") from None
    out: dict[str, str] = {}
    for i, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        folder, _, name = line.partition(" ")
        if not name.strip():
            raise SubptError(f"{path} line {i} is {line!r}, not '<folder> <class name>'; {fix}")
        if folder in out:
            raise SubptError(f"{path} line {i}: folder {folder!r} is listed twice; {fix}")
        out[folder] = name.strip()
    if not out:
        raise SubptError(f"class-name file {path} is empty; {fix}")
    return out


@dataclass
class RawDataset:
    """A CoOp dataset as read from disk, before few-shot sampling.

    Items carry absolute file paths (str) as `source` and cleaned class names. `train` may be filled
    lazily (ImageNet's 1.28 M training files are listed only when a few-shot draw is not cached).
    """

    name: str
    dataset_dir: Path
    image_root: Path
    classnames: list[str]
    fingerprint: str
    val: list[Item]
    test: list[Item]
    sources: list[Path] = field(default_factory=list)  # the files that define the split
    notes: list[str] = field(default_factory=list)
    train_loader: Callable[[], list[Item]] | None = None
    _train: list[Item] | None = None

    @property
    def train(self) -> list[Item]:
        """All training items (listed on first access when the reader deferred it)."""
        if self._train is None:
            self._train = self.train_loader() if self.train_loader is not None else []
        return self._train

    def split(self, name: str) -> list[Item]:
        """The items of split `name` (train, val or test)."""
        return {"train": self.train, "val": self.val, "test": self.test}[name]


def items_from_triples(
    rows: Sequence[tuple[str, int, str]], image_root: Path, clean: Callable[[str], str]
) -> list[Item]:
    """Items for (relpath, label, classname) rows: absolute path, label, cleaned class name."""
    root = str(image_root)
    return [
        Item(source=os.path.join(root, rel), label=label, classname=clean(name)) for rel, label, name in rows
    ]
