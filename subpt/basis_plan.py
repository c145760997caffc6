"""The basis plan: which rows of a CoOp run become SubPT's basis (window, rank, source, centring), in one place.

The reference recipe (METHOD.md section 3) takes the top-r right singular vectors of the centred ctx snapshots
after epochs 1..t_early; per-step gradients are the alternative source (not centred unless asked). t_early and
r come from the reference code's table by protocol and shots; a run shorter than t_early uses all its epochs,
and a t_early off the table gets the reference proportion r = t_early / 3. The rank rule is gradflow's
(gradflow.windowbasis): a rank that keeps every direction its window holds is refused, and `capped` lowers
a requested rank to the largest one allowed. The CLI's `subpt basis`, the pipeline and the sweep plan their
bases with `BasisPlan.reference`; the study (and the demo, one member of it) picks its windows by share of the
run and takes its rank from `basis_rank`; all of them build the basis with `run_basis`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from gradflow.manifest import STREAMS
from gradflow.subspace import Basis
from gradflow.windowbasis import check_window_rank, max_window_rank, window_basis
from gradflow.windows import Window
from subpt.errors import SubptError
from subpt.runs import CTX_NAME

# (t_early, r) of the reference code, by shots; base-to-novel uses its own pair.
REFERENCE_BY_SHOTS = {1: (10, 5), 2: (20, 10), 4: (30, 10), 8: (40, 10), 16: (50, 10)}
REFERENCE_BASE_TO_NOVEL = (30, 10)


def reference_setting(shots: int, base_to_novel: bool) -> tuple[int, int]:
    """(t_early, r) of the reference recipe for this protocol and shot count."""
    if base_to_novel:
        return REFERENCE_BASE_TO_NOVEL
    if shots in REFERENCE_BY_SHOTS:
        return REFERENCE_BY_SHOTS[shots]
    nearest = min(REFERENCE_BY_SHOTS, key=lambda k: abs(k - shots))
    return REFERENCE_BY_SHOTS[nearest]


def basis_rank(t_early: int) -> int:
    """The reference proportion r = round(t_early * 10 / 30) (base-to-novel: t_early 30, r 10), at least 1.

    It is capped below what the early window can hold: `epochs:1-t` holds t snapshots (the epoch-0
    init snapshot is not in it), which centred span t - 1 directions, so r <= t - 2 (but never below 1;
    a window of fewer than 3 snapshots cannot give a basis under gradflow's rank rule).
    """
    t_early = int(t_early)
    if t_early < 1:
        raise SubptError(f"t_early must be at least 1, got {t_early}")
    ref_t, ref_r = REFERENCE_BASE_TO_NOVEL
    return max(1, min(round(t_early * ref_r / ref_t), t_early - 2))


def default_rank(shots: int, base_to_novel: bool, t_early: int) -> int:
    """The r used when none is given: the reference r at the reference t_early, else `basis_rank(t_early)`."""
    ref_t, ref_r = reference_setting(shots, base_to_novel)
    return ref_r if int(t_early) == ref_t else basis_rank(t_early)


def run_basis(
    run_dir: Path, window: str, rank: int, out: Path, source: str = "snapshots", center: bool | None = None
) -> Basis:
    """Build a basis from a window of a run's trajectory and save it to `out`.

    `center=None` centres snapshots (the reference recipe) but not per-step gradients; pass True or
    False to choose. The basis metadata records `centered`.
    """
    if center is None:
        center = source == "snapshots"
    # ctx alone: a CoCoOp run also records its meta-network, which SubPT does not project
    basis, _ = window_basis(Path(run_dir), window=window, rank=rank, source=source, center=center, param=CTX_NAME)
    basis.save(out)
    return basis


@dataclass(frozen=True)
class BasisPlan:
    """One basis of a run of `epochs` epochs: the epochs lo..hi of its trajectory, the rank, the stream, the centring."""

    lo: int
    hi: int
    rank: int
    source: str = "snapshots"
    center: bool | None = None  # None: centre snapshots (the reference recipe), not gradients

    @classmethod
    def reference(cls, epochs: int, shots: int, base_to_novel: bool, t_early: int | None = None,
                  rank: int | None = None, source: str = "snapshots", late: bool = False) -> BasisPlan:
        """The reference recipe's basis of a run: epochs 1..t (the last t with `late`), t = t_early or the reference
        value, at most `epochs`; rank `rank`, or the reference r at the reference t, else `basis_rank(t)`."""
        if source not in STREAMS:
            raise SubptError(f"--source must be one of {', '.join(STREAMS)}, got {source!r}")
        for flag, value in (("--t-early", t_early), ("--rank", rank)):
            if value is not None and value < 1:
                raise SubptError(f"{flag} must be at least 1, got {value}; leave it out for the reference value")
        ref_t, _ = reference_setting(shots, base_to_novel)
        t = min(ref_t if t_early is None else t_early, epochs)
        lo, hi = (epochs - t + 1, epochs) if late else (1, t)
        return cls(lo, hi, default_rank(shots, base_to_novel, t) if rank is None else rank, source)

    @property
    def window(self) -> str:
        """The gradflow window, e.g. "epochs:1-30"."""
        return f"epochs:{self.lo}-{self.hi}"

    @property
    def t(self) -> int:
        """How many epochs the window spans."""
        return self.hi - self.lo + 1

    @property
    def centred(self) -> bool:
        """Whether the rows are centred before the SVD."""
        return self.source == "snapshots" if self.center is None else self.center

    def capped(self) -> BasisPlan:
        """The plan with its rank lowered to the largest the window allows (one snapshot per epoch), at least 1."""
        return replace(self, rank=max(1, min(self.rank, max_window_rank(self.t, self.centred))))

    def check(self) -> None:
        """Refuse, before any training, a rank that keeps every direction of a window of epoch snapshots."""
        if self.source == "snapshots":
            check_window_rank(self.rank, Window("epochs", self.lo, self.hi, self.window), self.source, self.t,
                              self.centred)

    def build(self, run_dir: Path, out: Path) -> Basis:
        """Build this basis from the trajectory of `run_dir` and save it to `out`."""
        return run_basis(run_dir, self.window, self.rank, out, source=self.source, center=self.center)
