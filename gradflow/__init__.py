"""gradflow: record and analyse the gradient flow of any torch parameters.

Plots live in :mod:`gradflow.plots` (imported on demand: it pulls in seaborn).
"""

from __future__ import annotations

from gradflow.errors import GradflowError
from gradflow.recorder import GradientRecorder
from gradflow.spectrum import Spectrum, compute_spectrum, top_r
from gradflow.subspace import (
    Basis,
    captured_energy,
    drift,
    grassmann_distance,
    overlap,
    principal_angles,
)
from gradflow.trajectory import TrajectoryStore, resolve
from gradflow.windows import Window, parse_window, resolve_window

__all__ = [
    "Basis",
    "GradflowError",
    "GradientRecorder",
    "Spectrum",
    "TrajectoryStore",
    "Window",
    "captured_energy",
    "compute_spectrum",
    "drift",
    "grassmann_distance",
    "overlap",
    "parse_window",
    "principal_angles",
    "resolve",
    "resolve_window",
    "top_r",
]
