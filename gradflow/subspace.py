"""Subspace bases and their comparison: principal angles, overlap, captured energy, drift.

Definitions, for bases with orthonormal rows U_a (r_a, D) and U_b (r_b, D):

* principal angles: theta_i = arccos(sigma_i(U_a U_b^T)), returned in ASCENDING order (scipy's
  ``subspace_angles`` returns the same values in descending order), min(r_a, r_b) of them;
* overlap = ||U_a U_b^T||_F^2 / min(r_a, r_b) = mean of cos^2 theta_i, in [0, 1];
* Grassmann distance = ||theta||_2 (radians);
* captured energy of a row g = ||U g||^2 / ||g||^2 (rows are not centred; NaN for a zero row);
* drift: split the rows into consecutive non-overlapping windows of w rows, take each window's
  top-r basis and tabulate the overlap of every pair of windows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg
import torch

from gradflow.atomic import atomic_torch_save
from gradflow.errors import GradflowError
from gradflow.spectrum import Spectrum, compute_spectrum
from gradflow.trajectory import TrajectoryStore

BASIS_FORMAT = "gradflow-basis"
BASIS_VERSION = 1
ORTHO_TOL = 1e-4
_KEYS = {"format", "version", "U", "singular_values", "mean", "metadata"}


def _short(value: Any) -> str:
    """A one-line, bounded repr of a value read from a file, for an error message."""
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def _primitive(value: Any, where: str) -> Any:
    """Convert ``value`` to JSON-like primitives (tuples become lists); raise on anything else."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_primitive(v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): _primitive(v, where) for k, v in value.items()}
    raise GradflowError(
        f"basis metadata {where} has a {type(value).__name__}; only JSON-like values are allowed"
    )


@dataclass
class Basis:
    """An orthonormal basis U (r, D) of a subspace, with its singular values, mean and metadata."""

    U: torch.Tensor
    singular_values: torch.Tensor
    mean: torch.Tensor | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    path: str | None = field(default=None, compare=False)

    @property
    def rank(self) -> int:
        """Number of basis vectors r."""
        return int(self.U.shape[0])

    @property
    def dim(self) -> int:
        """Dimension D of the ambient space."""
        return int(self.U.shape[1])

    @property
    def name(self) -> str:
        """The file path if loaded or saved, else "basis"."""
        return self.path or "basis"

    @classmethod
    def from_spectrum(cls, spectrum: Spectrum, rank: int, metadata: dict[str, Any] | None = None) -> Basis:
        """The top-``rank`` right singular vectors of ``spectrum`` as a Basis."""
        rank = int(rank)
        if rank < 1 or rank > spectrum.k:
            raise GradflowError(
                f"rank {rank} is outside 1..{spectrum.k} (computed components of the spectrum)"
            )
        meta = {
            "rank": rank,
            "dim": int(spectrum.dim),
            "centered": bool(spectrum.centered),
            "n_rows": int(spectrum.n_rows),
            "method": spectrum.method,
            "energy": float(spectrum.cumulative_energy[rank - 1]),
        }
        meta.update(_primitive(metadata or {}, "metadata"))
        return cls(
            U=torch.from_numpy(np.ascontiguousarray(spectrum.components[:rank], dtype=np.float32)),
            singular_values=torch.from_numpy(np.asarray(spectrum.singular_values[:rank], dtype=np.float32)),
            mean=None
            if spectrum.mean is None
            else torch.from_numpy(np.asarray(spectrum.mean, dtype=np.float32)),
            metadata=meta,
        )

    def to_dict(self) -> dict[str, Any]:
        """The plain dict of tensors and primitives that :meth:`save` writes."""
        return {
            "format": BASIS_FORMAT,
            "version": BASIS_VERSION,
            "U": self.U.detach().to("cpu", torch.float32).contiguous(),
            "singular_values": self.singular_values.detach().to("cpu", torch.float32).contiguous(),
            "mean": None if self.mean is None else self.mean.detach().to("cpu", torch.float32).contiguous(),
            "metadata": _primitive(self.metadata, "metadata"),
        }

    def save(self, path: str | Path) -> Path:
        """Write the basis to ``path`` atomically (tmp file + rename) with torch.save; returns the path."""
        p = Path(path)
        atomic_torch_save(self.to_dict(), p, fsync=True, mkdir=True)
        self.path = str(p)
        return p

    @classmethod
    def load(cls, path: str | Path) -> Basis:
        """Load and validate a basis file written by :meth:`save` (weights_only, on CPU)."""
        p = Path(path)
        if not p.is_file():
            raise GradflowError(
                f"basis file {p} does not exist: build one with `gradflow spectrum RUN -o {p.name}`"
            )
        try:
            obj = torch.load(p, weights_only=True, map_location="cpu")
        except Exception as exc:  # torch raises many types for corrupt files
            msg = str(exc).splitlines()[0][:120] if str(exc) else exc.__class__.__name__
            raise GradflowError(
                f"basis file {p} is corrupt or not a torch file ({msg}): rebuild it"
            ) from None
        if not isinstance(obj, dict) or not isinstance(obj.get("format"), str) or obj["format"] != BASIS_FORMAT \
                or not _KEYS <= set(obj):
            keys = _short(sorted(map(str, obj))) if isinstance(obj, dict) else type(obj).__name__
            raise GradflowError(
                f"{p} is not a gradflow basis file (found {keys}): build one with `gradflow spectrum`"
            )
        if type(obj["version"]) is not int or obj["version"] != BASIS_VERSION:  # a tensor here has no truth value
            raise GradflowError(
                f"basis file {p} has version {_short(obj['version'])}, this gradflow reads {BASIS_VERSION}"
            )
        u, sv, mean = obj["U"], obj["singular_values"], obj["mean"]
        if not isinstance(u, torch.Tensor) or u.ndim != 2 or u.shape[0] < 1:
            raise GradflowError(f"basis file {p}: U must be a non-empty 2-D tensor (rank, dim)")
        if not isinstance(sv, torch.Tensor) or sv.shape != (u.shape[0],):
            raise GradflowError(f"basis file {p}: singular_values must have shape ({u.shape[0]},)")
        if mean is not None and (not isinstance(mean, torch.Tensor) or mean.shape != (u.shape[1],)):
            raise GradflowError(f"basis file {p}: mean must be None or have shape ({u.shape[1]},)")
        if not isinstance(obj["metadata"], dict):
            raise GradflowError(f"basis file {p}: metadata must be a dict")
        u = u.float()
        err = (u.double() @ u.double().T - torch.eye(u.shape[0], dtype=torch.float64)).abs().max().item()
        if not math.isfinite(err) or err > ORTHO_TOL:
            raise GradflowError(
                f"basis file {p}: the rows of U are not orthonormal (max |UU^T - I| = {err:.2e} > {ORTHO_TOL}): rebuild it"
            )
        return cls(
            U=u,
            singular_values=sv.float(),
            mean=None if mean is None else mean.float(),
            metadata=obj["metadata"],
            path=str(p),
        )

    def check_compatible(
        self, dim: int, expect: dict[str, Any] | None = None, *, require_keys: bool = False
    ) -> None:
        """Raise a GradflowError listing every mismatch between this basis and the model it is applied to.

        ``dim`` is the flattened size of the parameters the basis will act on; ``expect`` maps metadata
        fields (model, n_ctx, width, dataset, seed, ...) to the values of that model. A field that the
        basis does not record is skipped unless ``require_keys``.
        """
        problems = []
        if int(dim) != self.dim:
            problems.append(f"dim={self.dim} but the parameters have dim={int(dim)}")
        for key, want in (expect or {}).items():
            if key not in self.metadata:
                if require_keys:
                    problems.append(f"no {key} recorded (expected {key}={want!r})")
                continue
            have = self.metadata[key]
            if _primitive(have, key) != _primitive(want, key):
                problems.append(f"{key}={_short(have)} but the model has {key}={want!r}")
        if problems:
            raise GradflowError(
                f"basis {self.name} was built for " + "; ".join(problems) + ": use a matching basis"
            )


def _as_rows(x: Basis | np.ndarray | torch.Tensor, label: str) -> np.ndarray:
    """Orthonormal float64 rows spanning the subspace given by a Basis or an (r, D) array."""
    if isinstance(x, Basis):
        return x.U.detach().cpu().double().numpy()
    a = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[0] == 0:
        raise GradflowError(f"{label} must be a Basis or a non-empty (r, D) array, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise GradflowError(f"{label} contains NaN or infinite values")
    gram = a @ a.T
    if np.abs(gram - np.eye(a.shape[0])).max() <= 1e-6:
        return a
    q = scipy.linalg.orth(a.T)
    if q.shape[1] < a.shape[0]:
        raise GradflowError(f"{label} has linearly dependent rows (rank {q.shape[1]} < {a.shape[0]})")
    return q.T


def _pair(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal rows of a and b, checking that their dimensions agree."""
    ua, ub = _as_rows(a, "basis A"), _as_rows(b, "basis B")
    if ua.shape[1] != ub.shape[1]:
        raise GradflowError(
            f"basis A has dim {ua.shape[1]}, basis B has dim {ub.shape[1]}: they live in different spaces"
        )
    return ua, ub


def principal_angles(
    a: Basis | np.ndarray | torch.Tensor, b: Basis | np.ndarray | torch.Tensor, degrees: bool = True
) -> np.ndarray:
    """Principal angles between the row spaces of a and b, ascending (min(r_a, r_b) values)."""
    ua, ub = _pair(a, b)
    if ua.shape[0] < ub.shape[0]:
        ua, ub = ub, ua  # ua has the larger rank
    cos = np.clip(scipy.linalg.svdvals(ua @ ub.T), 0.0, 1.0)  # descending -> angles ascending
    resid = ub - (ub @ ua.T) @ ua  # components of ub outside span(ua)
    sin = np.clip(np.sort(scipy.linalg.svdvals(resid))[: ub.shape[0]], 0.0, 1.0)  # ascending
    m = ub.shape[0]
    cos = np.concatenate([cos, np.zeros(m - cos.size)]) if cos.size < m else cos[:m]
    angles = np.where(cos**2 >= 0.5, np.arcsin(sin), np.arccos(cos))
    return np.degrees(angles) if degrees else angles


def overlap(a: Basis | np.ndarray | torch.Tensor, b: Basis | np.ndarray | torch.Tensor) -> float:
    """Projection overlap ||U_a U_b^T||_F^2 / min(r_a, r_b), in [0, 1]."""
    ua, ub = _pair(a, b)
    return float(np.sum((ua @ ub.T) ** 2) / min(ua.shape[0], ub.shape[0]))


def grassmann_distance(a: Basis | np.ndarray | torch.Tensor, b: Basis | np.ndarray | torch.Tensor) -> float:
    """Grassmann distance: the 2-norm of the principal angles in radians."""
    return float(np.linalg.norm(principal_angles(a, b, degrees=False)))


def captured_energy(
    basis: Basis | np.ndarray | torch.Tensor, rows: np.ndarray | torch.Tensor | Iterable[np.ndarray]
) -> np.ndarray:
    """Per-row share of energy inside the subspace: ||U g||^2 / ||g||^2 (NaN for zero rows)."""
    u = _as_rows(basis, "basis")
    if isinstance(rows, torch.Tensor):
        blocks: Iterable[Any] = [rows.detach().cpu().double().numpy()]
    elif isinstance(rows, np.ndarray):
        blocks = [rows]
    else:
        blocks = rows
    out = []
    for blk in blocks:
        g = np.asarray(blk, dtype=np.float64)
        if g.ndim == 1:
            g = g[None, :]
        if g.ndim != 2 or g.shape[1] != u.shape[1]:
            raise GradflowError(f"rows have shape {g.shape}, the basis has dim {u.shape[1]}")
        num = np.sum((g @ u.T) ** 2, axis=1)
        den = np.einsum("ij,ij->i", g, g)
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
        out.append(frac)
    return np.concatenate(out) if out else np.empty(0)


def drift(
    source: np.ndarray | TrajectoryStore,
    window: int,
    rank: int,
    *,
    stream: str = "grads",
    steps: tuple[int, int] | None = None,
    epochs: tuple[int, int] | None = None,
    center: bool = False,
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Overlap of the top-``rank`` bases of consecutive non-overlapping windows of ``window`` rows.

    Returns (M, ranges): M[i, j] = overlap(basis_i, basis_j) over all pairs of windows, and the
    (first, last) step of each window (row indices when ``source`` is an array). Trailing rows that do
    not fill a window are left out.
    """
    window, rank = int(window), int(rank)
    if window < 1:
        raise GradflowError(f"window must be >= 1 rows, got {window}")
    if rank < 1 or rank > window:
        raise GradflowError(f"rank {rank} must be between 1 and the {window} rows per window")
    if isinstance(source, TrajectoryStore):
        step_ids = source.scalars(stream, steps=steps, epochs=epochs)["step"]
        blocks: Iterable[np.ndarray] = source.iter_chunks(stream, steps=steps, epochs=epochs)
    else:
        a = np.asarray(source)
        if a.ndim != 2:
            raise GradflowError(f"rows must be a 2-D array (n, D), got shape {a.shape}")
        step_ids = np.arange(a.shape[0])
        blocks = [a]
    n_win = len(step_ids) // window
    if n_win < 1:
        raise GradflowError(
            f"drift needs at least {window} rows for one window, the selection has {len(step_ids)}"
        )
    bases: list[np.ndarray] = []
    ranges: list[tuple[int, int]] = []
    pending: list[np.ndarray] = []
    have = 0
    for blk in blocks:
        pending.append(np.asarray(blk))
        have += len(blk)
        while have >= window and len(bases) < n_win:
            cat = np.concatenate(pending) if len(pending) > 1 else pending[0]
            win, rest = cat[:window], cat[window:]
            spec = compute_spectrum(win, center=center, k=rank)
            i = len(bases)
            bases.append(spec.components[:rank].astype(np.float64))
            ranges.append((int(step_ids[i * window]), int(step_ids[i * window + window - 1])))
            pending, have = ([rest] if len(rest) else []), len(rest)
        if len(bases) == n_win:
            break
    m = np.ones((n_win, n_win))
    for i in range(n_win):
        for j in range(i + 1, n_win):
            m[i, j] = m[j, i] = float(np.sum((bases[i] @ bases[j].T) ** 2) / rank)
    return m, ranges
