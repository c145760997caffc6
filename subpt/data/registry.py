"""Dataset registry: a name maps to a factory that builds a TaskData (timm-style decorator).

Dataset modules register themselves here and import nothing else of the catalogue; `subpt.data.catalogue`
imports the built-in dataset modules and answers every lookup, so the imports run one way only.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from subpt.data.base import TaskData

DatasetFactory = Callable[..., TaskData]
FACTORIES: dict[str, DatasetFactory] = {}
ROOTED: dict[str, bool] = {}
OPTIONS: dict[str, dict[str, Any]] = {}
NOT_OPTIONS = ("root", "shots", "seed", "name", "n_colors", "n_shapes")


def register_dataset(
    name: str, *, needs_root: bool = True, options_of: Callable[..., Any] | None = None
) -> Callable[[DatasetFactory], DatasetFactory]:
    """Register `factory(root, shots, seed, **options) -> TaskData` under `name`.

    `options_of` is a function whose keyword defaults are the dataset's options: they are then checked and
    filled in by `resolve_options`. Without it, the factory checks its options itself.
    """

    def deco(factory: DatasetFactory) -> DatasetFactory:
        FACTORIES[name] = factory
        ROOTED[name] = needs_root
        if options_of is not None:
            params = inspect.signature(options_of).parameters.values()
            OPTIONS[name] = {p.name: p.default for p in params
                              if p.name not in NOT_OPTIONS and p.default is not inspect.Parameter.empty}
        return factory

    return deco
