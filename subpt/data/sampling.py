"""Few-shot sampling per seed: K items of each class, reproducible and independent of item order."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

from subpt.data.base import Item
from subpt.errors import SubptError


def few_shot(items: Sequence[Item], shots: int, seed: int, split_name: str = "train") -> list[Item]:
    """Draw `shots` items per class with a seeded RNG; a class with fewer items is a clear error.

    `shots <= 0` returns all items. The draw depends only on (items, shots, seed).
    """
    if shots <= 0:
        return list(items)
    by_label: dict[int, list[Item]] = defaultdict(list)
    for it in items:
        by_label[it.label].append(it)
    rng = random.Random(seed)
    out: list[Item] = []
    for label in sorted(by_label):
        pool = by_label[label]
        if len(pool) < shots:
            name = pool[0].classname or f"label {label}"
            raise SubptError(
                f"class {name!r} has only {len(pool)} {split_name} images but {shots} shots were asked for; "
                f"use --shots {len(pool)} or fewer"
            )
        out.extend(rng.sample(pool, shots))
    return out


def validation_shots(shots: int) -> int:
    """CoOp's validation size: min(K, 4) shots per class."""
    return min(shots, 4) if shots > 0 else 0
