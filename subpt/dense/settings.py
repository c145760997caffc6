"""Settings of the dense evaluation (proposals, crops, background rule), apart from the code that uses them, so
the command layer can show their defaults without importing scikit-image, torchmetrics or torch."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from subpt.errors import SubptError

CONTEXT = 1.25  # side of a crop / longer side of its box (docs/dense.md: 1.0-2.0 measured)
THRESHOLD = 0.3  # background rule: highest class probability below this is background


@dataclass(frozen=True)
class ProposalParams:
    """Parameters of `subpt.dense.proposals.propose` (its module docstring says what each one does)."""

    scale: float = 100.0
    sigma: float = 0.8
    min_size: int = 20
    min_area: int = 100  # below the smallest whole object of the world (a radius-7 disc at scale 1: 154 px)
    max_box_fraction: float = 0.8
    max_proposals: int = 200  # keep the first this many (segments first, then merges in merge order)
    max_border_share: float = 0.5  # 1 disables the border-colour filter
    # about 3.3 noise standard deviations of the world's default pixel noise (12)
    border_distance: float = 40.0

    def validate(self) -> None:
        """Raise a one-line SubptError for impossible settings."""
        checks = [
            (self.scale > 0, f"--proposal-scale must be positive, got {self.scale}"),
            (self.sigma >= 0, f"--proposal-sigma must be non-negative, got {self.sigma}"),
            (self.min_size >= 1, f"--proposal-min-size must be at least 1, got {self.min_size}"),
            (self.min_area >= 1, f"--proposal-min-area must be at least 1, got {self.min_area}"),
            (
                0 < self.max_box_fraction <= 1,
                f"--max-box-fraction must lie in (0, 1], got {self.max_box_fraction}",
            ),
            (self.max_proposals >= 1, f"--max-proposals must be at least 1, got {self.max_proposals}"),
            (
                0 <= self.max_border_share <= 1,
                f"--max-border-share must lie in [0, 1], got {self.max_border_share}",
            ),
            (
                self.border_distance >= 0,
                f"--border-distance must be non-negative, got {self.border_distance}",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise SubptError(msg)

    def key(self) -> dict:
        """The parameters as a plain dict (for cache keys and result files)."""
        return asdict(self)


@dataclass(frozen=True)
class CropSettings:
    """How a proposal becomes an image for the tower: the context factor, and the fill of masked pixels."""

    context: float = CONTEXT
    # masked-out pixels: "border" (median of the image border: the scene background) or "mean" (the tower's mean)
    fill: str = "border"

    def validate(self) -> None:
        """Raise a one-line SubptError for impossible settings."""
        if not (math.isfinite(self.context) and self.context >= 1.0):
            raise SubptError(f"--context must be a number of at least 1, got {self.context}")
        if self.fill not in ("mean", "border"):
            raise SubptError(f"--fill must be 'mean' or 'border', got {self.fill!r}")
