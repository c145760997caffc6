"""The settings of `subpt report`: gradflow's trajectory options and those of the sections that load the model.

Light to import, so the command layer takes its defaults from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from gradflow.analysis import TrajectoryOptions
from subpt.errors import SubptError

METRICS = ("cosine", "euclidean")  # nearest vocabulary tokens of a context vector by


@dataclass
class ReportOptions(TrajectoryOptions):
    """Settings of a report (the keyword arguments of `write_report`): the trajectory analysis, and the sections
    that load the model."""

    error: ClassVar[type[Exception]] = SubptError

    decode_epochs: list[int] | None = None  # default: first, peak-base and last epoch
    topk: int = 5  # nearest tokens shown per context vector
    metric: str = "cosine"  # or "euclidean"
    model: bool = True  # compute the model-dependent sections (decoded context, classes, cue)
    device: str = "cpu"
    max_classes: int = 24  # classes shown per group in the gains/losses figure

    def checks(self) -> list[tuple[bool, str]]:
        """The trajectory options' checks, then the model sections'."""
        return [
            *super().checks(),
            (self.topk >= 1, f"--topk must be at least 1, got {self.topk}"),
            (self.metric in METRICS, f"--metric must be one of {', '.join(METRICS)}, got {self.metric!r}"),
            (self.max_classes >= 2, f"--max-classes must be at least 2, got {self.max_classes}"),
            (
                not self.decode_epochs or min(self.decode_epochs) >= 0,
                "--epochs must be non-negative (0 = initialisation)",
            ),
        ]
