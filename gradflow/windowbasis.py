"""From a recorded trajectory to a basis: spectrum of one window of a stream, top-r vectors, metadata.

The one place where a window of a store becomes a Spectrum and a Basis; the CLI and subpt use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gradflow.errors import GradflowError
from gradflow.spectrum import Spectrum, compute_spectrum, top_r
from gradflow.subspace import Basis
from gradflow.trajectory import STREAMS, TrajectoryStore
from gradflow.windows import Window, resolve_window


def window_spectrum(
    store: TrajectoryStore,
    source: str,
    window: str | None,
    *,
    rank: int | None = None,
    energy: float | None = None,
    center: bool = False,
    method: str = "auto",
) -> tuple[Window, Spectrum, int]:
    """Resolve the window, compute its spectrum (streaming from disk when large) and pick r.

    r is `rank`, or the smallest r reaching cumulative `energy` when that is given.
    """
    if source not in STREAMS:
        raise GradflowError(f"--source {source!r} is unknown: use one of {', '.join(STREAMS)}")
    win = resolve_window(window, store, source)
    kwargs = win.as_kwargs()
    spec = compute_spectrum(
        lambda: store.iter_chunks(source, **kwargs), center=center, k=rank if energy is None else None, method=method
    )
    r = top_r(spec, rank=rank) if energy is None else top_r(spec, energy=energy)
    return win, spec, r


def basis_metadata(store: TrajectoryStore, source: str, win: Window, spec: Spectrum, r: int) -> dict[str, Any]:
    """Basis metadata: the store's manifest metadata (e.g. model, n_ctx, seed) with the provenance on top."""
    meta: dict[str, Any] = dict(store.metadata)
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
            "param_names": [p["name"] for p in store.params],
            "param_shapes": [list(p["shape"]) for p in store.params],
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
) -> tuple[Basis, Spectrum]:
    """The top-r basis of one window of the store (or run folder) at `path`, with full metadata."""
    store = TrajectoryStore.open(path)
    win, spec, r = window_spectrum(store, source, window, rank=rank, energy=energy, center=center, method=method)
    return Basis.from_spectrum(spec, r, basis_metadata(store, source, win, spec, r)), spec
