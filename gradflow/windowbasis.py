"""From a recorded trajectory to a basis: spectrum of one window of a stream, top-r vectors, metadata.

The one place where a window of a store becomes a Spectrum and a Basis; the CLI and subpt use it.
It also holds the one rank rule: a requested rank must leave out at least one of the directions the
window can hold (its rows, minus one when centred, at most the dimension). A basis that keeps every
direction of its window projects nothing away that the window could tell apart, which is not a subspace
choice but the whole span of the rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gradflow.errors import GradflowError
from gradflow.spectrum import Spectrum, compute_spectrum, top_r
from gradflow.subspace import Basis
from gradflow.trajectory import STREAMS, TrajectoryStore
from gradflow.windows import Window, resolve_window


def window_directions(n_rows: int, center: bool, dim: int | None = None) -> int:
    """How many directions `n_rows` rows span at most: n_rows (minus one when centred), capped by `dim`."""
    held = max(0, int(n_rows) - (1 if center else 0))
    return held if dim is None else min(held, int(dim))


def max_window_rank(n_rows: int, center: bool, dim: int | None = None) -> int:
    """The largest rank a window of `n_rows` rows allows: one less than the directions it can hold (may be 0)."""
    return max(0, window_directions(n_rows, center, dim) - 1)


def check_window_rank(rank: int, win: Window, source: str, n_rows: int, center: bool, dim: int | None = None) -> None:
    """Refuse a requested rank that keeps every direction the window can hold, with a one-line GradflowError."""
    rank = int(rank)
    held = window_directions(n_rows, center, dim)
    if rank < 1 or rank < held:
        return  # rank < 1 is refused by compute_spectrum with its own message
    largest = held - 1
    what = f"exceeds the {n_rows} rows" if rank > n_rows else "keeps every direction"
    capped = f", at most dim {dim}" if dim is not None and int(dim) < int(n_rows) - (1 if center else 0) else ""
    fix = (f"the largest allowed rank is {largest}: use a smaller rank or a wider window" if largest >= 1
           else "no rank is allowed: use a wider window")
    label = win.text if win.text == str(win) else f"{win.text} ({win})"
    raise GradflowError(
        f"rank {rank} {what} of window {label} in '{source}': its {n_rows} rows, "
        f"{'centred' if center else 'not centred'}, hold {held} direction{'s' if held != 1 else ''}{capped}, "
        f"and a basis must leave at least one out; {fix}"
    )


def window_spectrum(
    store: TrajectoryStore,
    source: str,
    window: str | None,
    *,
    rank: int | None = None,
    energy: float | None = None,
    center: bool = False,
    method: str = "auto",
    param: str | None = None,
) -> tuple[Window, Spectrum, int]:
    """Resolve the window, compute its spectrum (streaming from disk when large) and pick r; with `param`, of that
    recorded parameter's columns only (default: whole rows, every parameter).

    r is `rank`, or the smallest r reaching cumulative `energy` when that is given. A requested `rank`
    that keeps every direction the window can hold (rows, minus one when centred) is refused
    (see :func:`check_window_rank`).
    """
    if source not in STREAMS:
        raise GradflowError(f"--source {source!r} is unknown: use one of {', '.join(STREAMS)}")
    win = resolve_window(window, store, source)
    kwargs = win.as_kwargs()
    if rank is not None and energy is None:
        n_rows = int(store.scalars(source, **kwargs)["step"].size)
        check_window_rank(rank, win, source, n_rows, center, store.param_dim(param))
    store.columns(param)  # an unknown name fails here, before any row is read
    spec = compute_spectrum(
        lambda: store.iter_chunks(source, param=param, **kwargs), center=center, k=rank if energy is None else None,
        method=method,
    )
    r = top_r(spec, rank=rank) if energy is None else top_r(spec, energy=energy)
    return win, spec, r


def basis_metadata(
    store: TrajectoryStore, source: str, win: Window, spec: Spectrum, r: int, param: str | None = None
) -> dict[str, Any]:
    """Basis metadata: the store's manifest metadata (e.g. model, n_ctx, seed) with the provenance on top; the
    parameters named are those the basis spans (`param`, or all)."""
    meta: dict[str, Any] = dict(store.metadata)
    params = [p for p in store.params if param is None or p["name"] == param]
    meta.update(
        {
            "source": source,
            "window": win.text,
            "window_kind": win.kind,
            "window_lo": win.lo,
            "window_hi": win.hi,
            "rank": r,
            "centered": spec.centered,
            "n_rows": spec.n_rows,
            "param_names": [p["name"] for p in params],
            "param_shapes": [list(p["shape"]) for p in params],
            "store": str(store.path.resolve()),
        }
    )
    return meta


def window_basis(
    path: str | Path,
    window: str | None,
    rank: int | None = None,
    source: str = "grads",
    center: bool = False,
    energy: float | None = None,
    method: str = "auto",
    param: str | None = None,
) -> tuple[Basis, Spectrum]:
    """The top-r basis of one window of the store (or run folder) at `path`, with full metadata; with `param`, of
    that recorded parameter alone.

    The rank rule of :func:`window_spectrum` applies: `rank` must be below the directions the window holds.
    """
    store = TrajectoryStore.open(path)
    win, spec, r = window_spectrum(
        store, source, window, rank=rank, energy=energy, center=center, method=method, param=param
    )
    return Basis.from_spectrum(spec, r, basis_metadata(store, source, win, spec, r, param)), spec
