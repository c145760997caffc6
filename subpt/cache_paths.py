"""Where subpt keeps its caches (a light module: dataset modules name cache files without importing a model)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Folder of subpt's caches: $SUBPT_CACHE, else ~/.cache/subpt."""
    return Path(os.environ.get("SUBPT_CACHE", Path.home() / ".cache" / "subpt"))
