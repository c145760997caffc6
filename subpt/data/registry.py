"""Dataset registry: a name maps to a factory that builds a TaskData (timm-style decorator)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from subpt.data.base import TaskData
from subpt.errors import SubptError

DatasetFactory = Callable[..., TaskData]
_REGISTRY: dict[str, DatasetFactory] = {}
_NEEDS_ROOT: dict[str, bool] = {}
_OPTIONS: dict[str, dict[str, Any]] = {}
NOT_OPTIONS = ("root", "shots", "seed", "name", "n_colors", "n_shapes")


def register_dataset(
    name: str, *, needs_root: bool = True, options_of: Callable[..., Any] | None = None
) -> Callable[[DatasetFactory], DatasetFactory]:
    """Register `factory(root, shots, seed, **options) -> TaskData` under `name`.

    `options_of` is a function whose keyword defaults are the dataset's options: they are then checked and
    filled in by `resolve_options`. Without it, the factory checks its options itself.
    """

    def deco(factory: DatasetFactory) -> DatasetFactory:
        _REGISTRY[name] = factory
        _NEEDS_ROOT[name] = needs_root
        if options_of is not None:
            params = inspect.signature(options_of).parameters.values()
            _OPTIONS[name] = {p.name: p.default for p in params
                              if p.name not in NOT_OPTIONS and p.default is not inspect.Parameter.empty}
        return factory

    return deco


def resolve_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Every option of dataset `name`: the given ones over its defaults, so a task is named in full.

    Unknown options are a clear error; a dataset that checks its own options (or an unknown one) keeps them
    as given.
    """
    _load_builtin()
    if name not in _OPTIONS:
        return dict(options)
    known = _OPTIONS[name]
    unknown = sorted(set(options) - set(known))
    if unknown:
        listed = ", ".join(known) if known else "none"
        raise SubptError(f"dataset {name!r} has no option(s) {', '.join(unknown)}; its options: {listed}")
    return {**known, **options}


def _load_builtin() -> None:
    # Importing the modules runs their @register_dataset decorators.
    import subpt.embedded.tasks  # noqa: F401

    try:
        import subpt.data.coop  # noqa: F401
    except ModuleNotFoundError as e:  # the real-dataset readers are optional at import time
        if e.name != "subpt.data.coop":
            raise


def dataset_names() -> list[str]:
    """All registered dataset names, sorted."""
    _load_builtin()
    return sorted(_REGISTRY)


def needs_root(name: str) -> bool:
    """Whether dataset `name` reads files under a data root."""
    _load_builtin()
    return _NEEDS_ROOT.get(name, True)


def build_task(name: str, *, root: str | Path | None = None, shots: int = 16, seed: int = 1, **options: Any) -> TaskData:
    """Build the task `name` with `shots` training images per class drawn with `seed`."""
    _load_builtin()
    if name not in _REGISTRY:
        raise SubptError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(_REGISTRY))}")
    if _NEEDS_ROOT[name] and root is None:
        raise SubptError(f"dataset {name!r} reads files: pass --root DIR (see docs/datasets.md)")
    options = resolve_options(name, options)
    return _REGISTRY[name](root=Path(root) if root is not None else None, shots=shots, seed=seed, **options)
