"""Window strings such as ``epochs:1-30``, ``steps:0-999``, ``epochs:70%-100%`` or ``epochs:5``.

Bounds are inclusive. Percent bounds of an ``epochs:`` window refer to the training epochs 1..N,
where N is the last epoch in the stream, and mean the same epochs in every stream of a run:
``p%-q%`` selects epochs floor(p*N/100)+1 .. ceil(q*N/100), so ``epochs:0%-30%`` of a 20-epoch run
is 1-6 for snapshots and gradients alike and ``epochs:70%-100%`` of 100 epochs is 71-100. The
epoch-0 init snapshot is never part of a percent window (an explicit ``epochs:0-5`` still selects
it). Percent bounds of a ``steps:`` window refer to the distinct steps present in the stream, in
order: with N of them, ``p%-q%`` selects positions floor(p*N/100) .. ceil(q*N/100)-1.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from gradflow.errors import GradflowError
from gradflow.trajectory import TrajectoryStore

_RE = re.compile(r"^\s*(epochs?|steps?)\s*:\s*(\d+(?:\.\d+)?%?)\s*(?:-\s*(\d+(?:\.\d+)?%?)\s*)?$")
_HELP = "use e.g. epochs:1-30, steps:0-999, epochs:0%-30% or epochs:5"


@dataclass(frozen=True)
class WindowSpec:
    """A parsed, not yet resolved window: kind ("epochs" or "steps"), bounds, percent or absolute."""

    kind: str
    lo: float
    hi: float
    percent: bool
    text: str


@dataclass(frozen=True)
class Window:
    """A resolved window with inclusive integer bounds on steps or epochs."""

    kind: str
    lo: int
    hi: int
    text: str

    def as_kwargs(self) -> dict[str, tuple[int, int]]:
        """Keyword arguments for TrajectoryStore.rows / iter_chunks / scalars."""
        return {self.kind: (self.lo, self.hi)}

    def __str__(self) -> str:
        """The resolved window as a string, e.g. ``epochs:1-30``."""
        return f"{self.kind}:{self.lo}-{self.hi}"


def parse_window(text: str) -> WindowSpec:
    """Parse a window string; raise GradflowError with the accepted syntax when it is malformed."""
    m = _RE.match(text or "")
    if not m:
        raise GradflowError(f"window {text!r} is not understood: {_HELP}")
    kind = "epochs" if m.group(1).startswith("epoch") else "steps"
    a, b = m.group(2), m.group(3) or m.group(2)
    if a.endswith("%") != b.endswith("%"):
        raise GradflowError(f"window {text!r} mixes percent and absolute bounds: {_HELP}")
    percent = a.endswith("%")
    lo, hi = float(a.rstrip("%")), float(b.rstrip("%"))
    if not percent and (lo != int(lo) or hi != int(hi)):
        raise GradflowError(f"window {text!r} has fractional bounds: {_HELP}")
    if percent and m.group(3) is None:
        raise GradflowError(f"window {text!r} needs two percent bounds, e.g. {kind}:70%-100%")
    if percent and hi > 100:
        raise GradflowError(f"window {text!r} goes beyond 100%")
    if lo > hi:
        raise GradflowError(f"window {text!r} has its lower bound above its upper bound")
    return WindowSpec(kind, lo, hi, percent, text.strip())


def resolve_window(window: str | WindowSpec | None, store: TrajectoryStore, stream: str) -> Window:
    """Resolve a window against the rows present in ``stream``; raise if it selects no rows.

    ``None`` selects the whole stream (as steps:first-last). Percent bounds of an ``epochs:`` window
    count the training epochs 1..N (N = the stream's last epoch; the epoch-0 init snapshot is never
    included), so a run's snapshots and gradients resolve ``epochs:0%-30%`` to the same epochs.
    Percent bounds of a ``steps:`` window count the distinct steps present in the stream.
    """
    sc = store.scalars(stream)
    if sc["step"].size == 0:
        raise GradflowError(
            f"the '{stream}' stream of {store.path} has no rows: record it first or choose the other source"
        )
    if window is None:
        return Window("steps", int(sc["step"][0]), int(sc["step"][-1]), "all")
    spec = parse_window(window) if isinstance(window, str) else window
    key = "epoch" if spec.kind == "epochs" else "step"
    values = np.unique(sc[key])
    if spec.percent and spec.kind == "epochs":
        n_epochs = int(values[-1])
        lo = int(math.floor(spec.lo * n_epochs / 100.0 + 1e-9)) + 1
        hi = int(math.ceil(spec.hi * n_epochs / 100.0 - 1e-9))
        if n_epochs < 1:
            raise GradflowError(
                f"window {spec.text} selects no rows: '{stream}' has no training epochs (epoch >= 1) for a "
                "percent window to count; use an absolute window such as epochs:0-0 or a steps: window"
            )
        if hi < lo or not ((values >= lo) & (values <= hi)).any():
            raise GradflowError(
                f"window {spec.text} selects no rows: the run has training epochs 1-{n_epochs} in '{stream}'"
            )
    elif spec.percent:
        n = values.size
        i = int(math.floor(spec.lo * n / 100.0 + 1e-9))
        j = int(math.ceil(spec.hi * n / 100.0 - 1e-9)) - 1
        if j < i or i >= n:
            raise GradflowError(
                f"window {spec.text} selects no rows: the run has {n} distinct {spec.kind} "
                f"({values[0]}-{values[-1]}) in '{stream}'"
            )
        lo, hi = int(values[i]), int(values[min(j, n - 1)])
    else:
        lo, hi = int(spec.lo), int(spec.hi)
        if not ((values >= lo) & (values <= hi)).any():
            raise GradflowError(
                f"window {spec.text} selects no rows: the run has {spec.kind} {values[0]}-{values[-1]} in '{stream}'"
            )
    return Window(spec.kind, lo, hi, spec.text)
