"""From a recorded trajectory to a basis: spectrum of one window of a stream, top-r vectors, metadata."""

from __future__ import annotations

from pathlib import Path

from gradflow.errors import GradflowError
from gradflow.spectrum import Spectrum, compute_spectrum, top_r
from gradflow.subspace import Basis
from gradflow.trajectory import TrajectoryStore, resolve
from gradflow.windows import Window, resolve_window

SOURCES = ("grads", "snapshots")


def window_spectrum(
    path: str | Path,
    window: str | None,
    source: str = "grads",
    center: bool = False,
    method: str = "auto",
    k: int | None = None,
) -> tuple[Spectrum, Window, TrajectoryStore]:
    """Spectrum of the rows of `source` inside `window` of the store (or run folder) at `path`."""
    if source not in SOURCES:
        raise GradflowError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    store = TrajectoryStore.open(resolve(path))
    win = resolve_window(window, store, source)
    n_rows = store.scalars(source, **win.as_kwargs())["step"].size
    if method == "exact" or (method == "auto" and n_rows * store.dim * 4 < 2**30):
        spec = compute_spectrum(store.rows(source, **win.as_kwargs()), center=center, k=k, method="exact")
    else:
        spec = compute_spectrum(
            lambda: store.iter_chunks(source, **win.as_kwargs()), center=center, k=k, method=method
        )
    return spec, win, store


def window_basis(
    path: str | Path,
    window: str | None,
    rank: int | None = None,
    source: str = "grads",
    center: bool = False,
    energy: float | None = None,
    method: str = "auto",
) -> tuple[Basis, Spectrum]:
    """The top-r basis (fixed `rank` or the smallest reaching `energy`) of one window, with full metadata.

    The metadata records the source, the window as given and as resolved, rank, centring, the parameter
    names and shapes, and everything the recording run put in the store's manifest metadata.
    """
    spec, win, store = window_spectrum(path, window, source, center, method)
    r = top_r(spec, rank=rank, energy=energy)
    meta = dict(store.metadata)
    meta.update(
        {
            "source": source,
            "window": window or "all",
            "window_resolved": str(win),
            "trajectory": str(store.path),
            "params": [[p["name"], list(p["shape"])] for p in store.params],
        }
    )
    return Basis.from_spectrum(spec, r, meta), spec
