"""Singular-value spectrum of a window of trajectory rows: exact or randomised streaming SVD.

Definitions (p_i = sigma_i^2 / sum_j sigma_j^2 over the computed singular values):

* explained_variance_ratio_i = sigma_i^2 / E, where E is the total energy, the squared Frobenius
  norm of the (centred) rows. For the exact method E = sum of all sigma_i^2; for the randomised
  method E is accumulated during a pass over the rows, so the ratios of the top k stay exact even
  though only k values are computed.
* cumulative_energy_r = sum_{i<=r} explained_variance_ratio_i.
* effective_rank_entropy = exp(-sum_i p_i log p_i) (Roy & Vetterli's effective rank).
* participation_ratio = (sum_i sigma_i^2)^2 / sum_i sigma_i^4.
For the randomised method the two effective ranks are those of the k computed values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from gradflow.errors import GradflowError

RowSource = np.ndarray | Iterable[np.ndarray] | Callable[[], Iterable[np.ndarray]]
EXACT_LIMIT_BYTES = 1 << 30  # "auto" uses the exact method below n * D * 4 bytes = 1 GiB
DEFAULT_RANDOMIZED_K = 64
_BLOCK = 1024  # rows per block when an in-memory array is streamed


@dataclass
class Spectrum:
    """Singular values, energies, effective ranks and right singular vectors of a set of rows."""

    singular_values: np.ndarray
    explained_variance_ratio: np.ndarray
    cumulative_energy: np.ndarray
    effective_rank_entropy: float
    participation_ratio: float
    components: np.ndarray
    mean: np.ndarray | None
    n_rows: int
    centered: bool
    method: str
    total_energy: float
    dim: int

    @property
    def k(self) -> int:
        """Number of components (rows of ``components``)."""
        return int(self.components.shape[0])


def _effective_ranks(s: np.ndarray) -> tuple[float, float]:
    """(entropy effective rank, participation ratio) of singular values ``s``."""
    e = np.asarray(s, dtype=np.float64) ** 2
    total = e.sum()
    if total <= 0:
        return float("nan"), float("nan")
    p = e / total
    nz = p[p > 0]
    entropy = float(np.exp(-(nz * np.log(nz)).sum()))
    participation = float(total**2 / (e**2).sum())
    return entropy, participation


def _sign_fix(v: np.ndarray) -> np.ndarray:
    """Flip each row so that its largest-magnitude entry is positive (deterministic signs)."""
    if v.size == 0:
        return v
    idx = np.argmax(np.abs(v), axis=1)
    signs = np.sign(v[np.arange(v.shape[0]), idx])
    signs[signs == 0] = 1.0
    return v * signs[:, None]


def _check_finite(block: np.ndarray) -> None:
    """Raise if a block of rows holds NaN or infinite values."""
    if not np.isfinite(block).all():
        raise GradflowError(
            "the rows contain NaN or infinite values (e.g. an AMP overflow step was recorded): "
            "choose a window without them or record after unscaling and skipping non-finite steps"
        )


def _check_rank(k: int | None, n: int, dim: int) -> None:
    """Raise if ``k`` is not between 1 and min(n, dim)."""
    if k is None:
        return
    if k < 1:
        raise GradflowError(f"rank must be >= 1, got {k}")
    if k > n:
        raise GradflowError(
            f"rank {k} exceeds the {n} rows in the window: use a rank <= {n} or a wider window"
        )
    if k > dim:
        raise GradflowError(f"rank {k} exceeds the row dimension {dim}: use a rank <= {dim}")


def _orthonormal_complete(v: np.ndarray, good: int, seed: int) -> np.ndarray:
    """Re-orthonormalise rows of ``v``; rows from ``good`` on are replaced by an orthonormal completion."""
    k, dim = v.shape
    w = v.copy()
    if good < k:
        rng = np.random.default_rng(seed)
        w[good:] = rng.standard_normal((k - good, dim))
    q, r = np.linalg.qr(w.T)
    d = np.sign(np.diag(r))
    d[d == 0] = 1.0
    return (q * d).T


def _assemble(
    s: np.ndarray, comps: np.ndarray, total: float, mean: np.ndarray | None, n: int, center: bool, method: str, dim: int
) -> Spectrum:
    """A Spectrum from singular values, components and the window's total energy (ratios use the total)."""
    if total <= 0:
        raise GradflowError(f"the {n} rows have zero energy{' after centring' if center else ''}: nothing to analyse")
    evr = s**2 / total
    ent, pr = _effective_ranks(s)
    return Spectrum(
        singular_values=s,
        explained_variance_ratio=evr,
        cumulative_energy=np.cumsum(evr),
        effective_rank_entropy=ent,
        participation_ratio=pr,
        components=_sign_fix(comps).astype(np.float32),
        mean=None if mean is None else mean.astype(np.float32),
        n_rows=n,
        centered=center,
        method=method,
        total_energy=total,
        dim=dim,
    )


def _exact(a: np.ndarray, center: bool, k: int | None, seed: int) -> Spectrum:
    """Exact thin SVD via the float64 Gram matrix of the smaller side."""
    n, dim = a.shape
    mean = a.mean(axis=0, dtype=np.float64) if center else None
    m = min(n, dim)
    kk = m if k is None else k
    if dim <= n:
        gram = np.zeros((dim, dim))
        for i in range(0, n, _BLOCK):
            b = a[i : i + _BLOCK].astype(np.float64)
            if mean is not None:
                b -= mean
            gram += b.T @ b
        # gram is symmetric, so gram.T is a Fortran-ordered view LAPACK can overwrite without a copy
        w, vecs = scipy.linalg.eigh(gram.T, driver="evd", overwrite_a=True)
        w, vecs = w[::-1], vecs[:, ::-1]
        s = np.sqrt(np.clip(w, 0.0, None))
        comps = np.ascontiguousarray(vecs[:, :kk].T)
    else:
        b = a.astype(np.float64)
        if mean is not None:
            b -= mean
        gram = b @ b.T
        w, u = scipy.linalg.eigh(gram.T, driver="evd", overwrite_a=True)
        w, u = w[::-1], u[:, ::-1]
        s = np.sqrt(np.clip(w, 0.0, None))
        raw = u[:, :kk].T @ b
        tol = s[0] * max(n, dim) * np.finfo(np.float64).eps * 1e3 if s.size else 0.0
        good = int((s[:kk] > tol).sum())
        raw[:good] /= s[:good, None]
        comps = _orthonormal_complete(raw, good, seed)
    s = s[:m]
    return _assemble(s, comps, float((s**2).sum()), mean, n, center, "exact", dim)


def _stats_pass(blocks: Iterator[np.ndarray]) -> tuple[int, int, np.ndarray, float]:
    """One pass: (row count, dim, row sum in float64, uncentred energy)."""
    n, dim, total, energy = 0, -1, None, 0.0
    for blk in blocks:
        blk = np.asarray(blk)
        if blk.ndim != 2:
            raise GradflowError(f"row blocks must be 2-D (rows, dim), got shape {blk.shape}")
        if blk.shape[0] == 0:
            continue
        if dim < 0:
            dim = blk.shape[1]
            total = np.zeros(dim)
        elif blk.shape[1] != dim:
            raise GradflowError(f"row blocks disagree on dim: {dim} then {blk.shape[1]}")
        _check_finite(blk)
        b = blk.astype(np.float64)
        total += b.sum(axis=0)
        energy += float(np.einsum("ij,ij->", b, b))
        n += blk.shape[0]
    if n == 0:
        raise GradflowError("the window has no rows: nothing to analyse (check the window and the stream)")
    return n, dim, total, energy


def _randomized(
    source: Callable[[], Iterable[np.ndarray]],
    stats: tuple[int, int, np.ndarray, float],
    center: bool,
    k: int,
    oversample: int,
    n_iter: int,
    seed: int,
) -> Spectrum:
    """Randomised subspace iteration on A^T A, one pass over the rows per iteration.

    Memory is O(D * (k + oversample)) besides one block of rows.
    """
    n, dim, total, energy = stats
    mean = total / n if center else None
    l_ = min(k + oversample, n, dim)
    rng = np.random.default_rng(seed)
    z = np.linalg.qr(rng.standard_normal((dim, l_)))[0]
    centred_energy = 0.0
    m = None
    for it in range(n_iter + 1):
        m = np.zeros((dim, l_))
        for blk in source():
            blk = np.asarray(blk)
            if blk.shape[0] == 0:
                continue
            b = blk.astype(np.float64)
            if mean is not None:
                b -= mean
                if it == 0:
                    centred_energy += float(np.einsum("ij,ij->", b, b))
            m += b.T @ (b @ z)
        if it < n_iter:
            z = np.linalg.qr(m)[0]
    assert m is not None
    t = z.T @ m
    t = (t + t.T) / 2
    w, vecs = np.linalg.eigh(t)
    order = np.argsort(w)[::-1][:k]
    s = np.sqrt(np.clip(w[order], 0.0, None))
    comps = (z @ vecs[:, order]).T
    total_energy = centred_energy if center else energy
    return _assemble(s, comps, float(total_energy), mean, n, center, "randomized", dim)


def _array_source(a: np.ndarray) -> Callable[[], Iterator[np.ndarray]]:
    """A re-iterable block source over an in-memory array."""

    def gen() -> Iterator[np.ndarray]:
        for i in range(0, a.shape[0], _BLOCK):
            yield a[i : i + _BLOCK]

    return gen


def compute_spectrum(
    rows: RowSource,
    *,
    center: bool = False,
    k: int | None = None,
    method: str = "auto",
    oversample: int = 10,
    n_iter: int = 4,
    seed: int = 0,
) -> Spectrum:
    """Singular-value spectrum and top right singular vectors of stacked rows.

    ``rows`` is an (n, D) array, a list of (m, D) blocks, or a callable returning a fresh iterator
    of blocks (e.g. ``lambda: store.iter_chunks("grads", epochs=(1, 30))``), which lets the
    randomised method stream several passes without ever holding all rows. ``k`` is the number of
    components kept (exact: all min(n, D) by default, and all singular values are always returned;
    randomised: 64 by default, capped at min(n, D)). ``method="auto"`` chooses exact when the rows
    take less than 1 GiB as float32, randomised otherwise. With ``center`` the mean row is removed.
    """
    if method not in ("auto", "exact", "randomized"):
        raise GradflowError(f"method {method!r} is unknown: use auto, exact or randomized")
    if k is not None:
        k = int(k)
        if k < 1:
            raise GradflowError(f"rank must be >= 1, got {k}")
    if isinstance(rows, np.ndarray) or (hasattr(rows, "shape") and hasattr(rows, "dtype")):
        a = np.asarray(rows)
        if a.ndim != 2:
            raise GradflowError(f"rows must be a 2-D array (n, D), got shape {a.shape}")
        if a.shape[0] == 0:
            raise GradflowError(
                "the window has no rows: nothing to analyse (check the window and the stream)"
            )
        source: Callable[[], Iterable[np.ndarray]] = _array_source(a)
        in_memory: np.ndarray | None = a
    elif callable(rows):
        source, in_memory = rows, None
    elif isinstance(rows, Iterable):
        if iter(rows) is rows:  # a one-shot iterator: keep its blocks so it can be read again
            rows = list(rows)
        blocks = list(rows)
        source, in_memory = (lambda: iter(blocks)), None
    else:
        raise GradflowError(
            f"rows must be an array, an iterable of arrays or a callable, got {type(rows).__name__}"
        )

    if in_memory is not None:
        n, dim = in_memory.shape
        stats = None
    else:
        stats = _stats_pass(iter(source()))
        n, dim = stats[0], stats[1]
    _check_rank(k, n, dim)
    if center and n < 2:
        raise GradflowError("centring needs at least 2 rows: widen the window or drop --center")
    chosen = method
    if method == "auto":
        chosen = "exact" if n * dim * 4 < EXACT_LIMIT_BYTES else "randomized"
    if chosen == "exact":
        if in_memory is None:
            blocks = [np.asarray(b, dtype=np.float32) for b in source() if len(b)]
            in_memory = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
        else:
            in_memory = (
                np.asarray(in_memory, dtype=np.float32) if in_memory.dtype != np.float64 else in_memory
            )
        _check_finite(in_memory)
        return _exact(in_memory, center, k, seed)
    if stats is None:
        stats = _stats_pass(iter(source()))
    kk = min(DEFAULT_RANDOMIZED_K, n, dim) if k is None else k
    return _randomized(source, stats, center, kk, int(oversample), int(n_iter), seed)


def top_r(spectrum: Spectrum, rank: int | None = None, energy: float | None = None) -> int:
    """Number of components to keep: ``rank`` itself, or the smallest r whose cumulative energy >= ``energy``."""
    if (rank is None) == (energy is None):
        raise GradflowError("give exactly one of rank and energy")
    available = spectrum.k
    if rank is not None:
        rank = int(rank)
        if rank < 1:
            raise GradflowError(f"rank must be >= 1, got {rank}")
        if rank > available:
            raise GradflowError(
                f"rank {rank} exceeds the {available} computed components ({spectrum.n_rows} rows)"
            )
        return rank
    assert energy is not None
    if not 0 < energy <= 1:
        raise GradflowError(f"energy must be in (0, 1], got {energy}")
    cum = spectrum.cumulative_energy[:available]
    hit = np.nonzero(cum >= energy - 1e-9)[0]
    if hit.size == 0:
        reached = float(cum[-1]) if cum.size else 0.0
        raise GradflowError(
            f"the top {available} computed components reach only {reached:.3f} of the energy, "
            f"short of {energy}: compute more components (k) or lower the energy threshold"
        )
    return int(hit[0]) + 1
