"""Window strings such as ``epochs:1-30``, ``steps:0-999``, ``epochs:70%-100%`` or ``epochs:5``.

Bounds are inclusive. Percent bounds refer to the distinct epochs (or steps) present in the
stream, in order: with N of them, ``p%-q%`` selects positions floor(p*N/100) .. ceil(q*N/100)-1,
so ``epochs:0%-30%`` of epochs 1..100 is 1-30 and ``epochs:70%-100%`` is 71-100.
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

    ``None`` selects the whole stream (as steps:first-last).
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
    if spec.percent:
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
