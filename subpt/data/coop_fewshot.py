"""Few-shot draws per (dataset, shots, seed), cached as small JSON files in `<dataset>/split_fewshot/`.

CoOp saves each draw as `split_fewshot/shot_{K}-seed_{S}.pkl`; we write the same name with `.json`:
{"dataset", "shots", "seed", "fingerprint", "train": [[relpath, label, classname], ...], "val": [...]},
paths relative to the image folder as in the split files. The fingerprint hashes the files the split
came from, so a changed split file is never paired with a stale draw. A root that cannot be written
(read-only mount, permissions) simply runs without a cache.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from gradflow.atomic import atomic_write_text
from subpt.data.base import Item
from subpt.data.sampling import few_shot, validation_shots

log = logging.getLogger(__name__)
CACHE_DIR = "split_fewshot"


def cache_path(dataset_dir: Path, shots: int, seed: int) -> Path:
    """Where the draw of `shots` shots with `seed` is cached (CoOp's name, JSON instead of pickle)."""
    return dataset_dir / CACHE_DIR / f"shot_{shots}-seed_{seed}.json"


def _rel(source: str, image_root: str) -> str:
    return Path(os.path.relpath(source, image_root)).as_posix()


def _encode(items: Sequence[Item], image_root: str) -> list[list[object]]:
    return [[_rel(str(it.source), image_root), it.label, it.classname] for it in items]


def _decode(rows: object, image_root: Path, classnames: Sequence[str], per_class: int) -> list[Item] | None:
    """Items from cached rows, or None when the rows do not fit the dataset (then the cache is redrawn)."""
    if not isinstance(rows, list):
        return None
    items: list[Item] = []
    for r in rows:
        if not (isinstance(r, list) and len(r) == 3 and isinstance(r[0], str) and isinstance(r[1], int)):
            return None
        rel, label, name = r
        if not 0 <= label < len(classnames) or name != classnames[label]:
            return None
        items.append(Item(source=os.path.join(str(image_root), rel), label=label, classname=name))
    counts = Counter(it.label for it in items)
    if per_class > 0 and any(c != per_class for c in counts.values()):
        return None
    return items


def read_cache(
    path: Path,
    *,
    dataset: str,
    shots: int,
    seed: int,
    fingerprint: str,
    image_root: Path,
    classnames: Sequence[str],
) -> tuple[list[Item], list[Item]] | None:
    """The cached (train, val) draw, or None when there is none or it does not match the dataset."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    meta = (data.get("dataset"), data.get("shots"), data.get("seed"), data.get("fingerprint"))
    if meta != (dataset, shots, seed, fingerprint):
        return None
    train = _decode(data.get("train"), image_root, classnames, shots)
    val = _decode(data.get("val"), image_root, classnames, validation_shots(shots))
    if train is None or val is None:
        return None
    return train, val


def write_cache(
    path: Path,
    *,
    dataset: str,
    shots: int,
    seed: int,
    fingerprint: str,
    image_root: Path,
    train: Sequence[Item],
    val: Sequence[Item],
) -> bool:
    """Write the draw atomically (temporary file + rename); False, silently, when the folder is not writable."""
    root = str(image_root)
    data = {
        "dataset": dataset,
        "shots": shots,
        "seed": seed,
        "fingerprint": fingerprint,
        "train": _encode(train, root),
        "val": _encode(val, root),
    }
    try:
        atomic_write_text(path, json.dumps(data), mkdir=True)
        return True
    except OSError as e:
        log.debug("few-shot cache %s not written: %s", path, e)
        return False


def fewshot_draw(
    *,
    dataset: str,
    dataset_dir: Path,
    image_root: Path,
    fingerprint: str,
    classnames: Sequence[str],
    train: Callable[[], Sequence[Item]],
    val: Callable[[], Sequence[Item]],
    shots: int,
    seed: int,
    cache: bool = True,
) -> tuple[list[Item], list[Item]]:
    """Train and val few-shot draws: few_shot(train, shots, seed) and few_shot(val, min(shots, 4), seed).

    With `cache`, a matching `split_fewshot/shot_{shots}-seed_{seed}.json` is reused and a fresh draw
    is saved there (skipped silently when the folder is not writable). `train`/`val` are callables so
    that a cached draw never needs the full listing (ImageNet).
    """
    if shots <= 0:
        return list(train()), list(val())
    path = cache_path(dataset_dir, shots, seed)
    key = {"dataset": dataset, "shots": shots, "seed": seed, "fingerprint": fingerprint}
    if cache:
        hit = read_cache(path, image_root=image_root, classnames=classnames, **key)
        if hit is not None:
            log.debug("few-shot draw read from %s", path)
            return hit
    tr = few_shot(train(), shots, seed, "train")
    va = few_shot(val(), validation_shots(shots), seed, "val")
    if cache:
        write_cache(path, image_root=image_root, train=tr, val=va, **key)
    return tr, va
