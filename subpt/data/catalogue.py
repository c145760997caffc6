"""The dataset catalogue: every built-in dataset registered, and the lookups by name.

Importing this module imports the built-in dataset modules (the embedded world's tasks, CoOp's datasets,
ImageFolder and CSV), whose @register_dataset decorators fill `subpt.data.registry`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import subpt.dense.region_task  # noqa: F401  (registers world-regions, region crops of the world's scenes)
import subpt.embedded.tasks  # noqa: F401  (registers the embedded world's tasks)
from subpt.data.base import TaskData
from subpt.data.registry import FACTORIES, OPTIONS, ROOTED
from subpt.errors import SubptError

try:
    import subpt.data.coop  # noqa: F401  (registers CoOp's datasets, imagefolder and csv)
except ModuleNotFoundError as e:  # the real-dataset readers are optional at import time
    if e.name != "subpt.data.coop":
        raise


def resolve_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Every option of dataset `name`: the given ones over its defaults, so a task is named in full.

    Unknown options are a clear error; a dataset that checks its own options (or an unknown one) keeps them
    as given.
    """
    if name not in OPTIONS:
        return dict(options)
    known = OPTIONS[name]
    unknown = sorted(set(options) - set(known))
    if unknown:
        listed = ", ".join(known) if known else "none"
        raise SubptError(f"dataset {name!r} has no option(s) {', '.join(unknown)}; its options: {listed}")
    return {**known, **options}


def dataset_names() -> list[str]:
    """All registered dataset names, sorted."""
    return sorted(FACTORIES)


def needs_root(name: str) -> bool:
    """Whether dataset `name` reads files under a data root."""
    return ROOTED.get(name, True)


def build_task(name: str, *, root: str | Path | None = None, shots: int = 16, seed: int = 1, **options: Any) -> TaskData:
    """Build the task `name` with `shots` training images per class drawn with `seed`."""
    if name not in FACTORIES:
        raise SubptError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(FACTORIES))}")
    if ROOTED[name] and root is None:
        raise SubptError(f"dataset {name!r} reads files: pass --root DIR (see docs/datasets.md)")
    options = resolve_options(name, options)
    return FACTORIES[name](root=Path(root) if root is not None else None, shots=shots, seed=seed, **options)
