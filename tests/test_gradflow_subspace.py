"""Basis save/load/validation and subspace metrics against scipy and direct formulas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from gradflow.errors import GradflowError
from gradflow.spectrum import compute_spectrum
from gradflow.subspace import (
    Basis,
    captured_energy,
    drift,
    grassmann_distance,
    overlap,
    principal_angles,
)
from gradflow.trajectory import TrajectoryStore


def orth_rows(r: int, dim: int, seed: int) -> np.ndarray:
    return np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, r)))[0].T


@pytest.mark.parametrize("ra,rb", [(4, 4), (6, 3), (2, 5)])
def test_principal_angles_match_scipy(ra: int, rb: int) -> None:
    a, b = orth_rows(ra, 30, 1), orth_rows(rb, 30, 2)
    b[0] = 0.999 * a[0] + 0.02 * b[0]  # one small angle, exercising the sine branch
    ours = principal_angles(a, b)
    ref = np.degrees(scipy.linalg.subspace_angles(a.T, b.T))  # scipy: descending
    assert ours.shape == (min(ra, rb),)
    np.testing.assert_allclose(ours, np.sort(ref), atol=1e-8)
    assert np.all(np.diff(ours) >= 0)
    np.testing.assert_allclose(principal_angles(a, b, degrees=False), np.radians(ours), atol=1e-10)


def test_principal_angles_of_non_orthonormal_rows() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 12)), rng.standard_normal((3, 12))
    np.testing.assert_allclose(
        principal_angles(a, b), np.sort(np.degrees(scipy.linalg.subspace_angles(a.T, b.T))), atol=1e-8
    )
    assert principal_angles(a, a).max() < 1e-5
    with pytest.raises(GradflowError, match="linearly dependent"):
        principal_angles(np.stack([a[0], 2 * a[0]]), b)


def test_overlap_and_grassmann_match_direct_formulas() -> None:
    a, b = orth_rows(5, 40, 3), orth_rows(3, 40, 4)
    assert overlap(a, b) == pytest.approx(np.linalg.norm(a @ b.T, "fro") ** 2 / 3)
    theta = scipy.linalg.subspace_angles(a.T, b.T)
    assert grassmann_distance(a, b) == pytest.approx(np.linalg.norm(theta))
    assert overlap(a, a) == pytest.approx(1.0)
    assert overlap(a[:2], a[2:4]) == pytest.approx(0.0, abs=1e-12)
    assert overlap(torch.from_numpy(a), Basis(torch.from_numpy(a).float(), torch.ones(5))) == pytest.approx(
        1.0, abs=1e-6
    )


def test_dimension_mismatch_is_named() -> None:
    with pytest.raises(GradflowError, match="basis A has dim 40, basis B has dim 20"):
        overlap(orth_rows(2, 40, 0), orth_rows(2, 20, 0))


def test_captured_energy_matches_direct_formula() -> None:
    u = orth_rows(4, 25, 5)
    g = np.random.default_rng(6).standard_normal((10, 25))
    g[3] = 0.0
    ce = captured_energy(u, g)
    mask = np.arange(10) != 3
    direct = np.sum((g[mask] @ u.T) ** 2, axis=1) / np.sum(g[mask] ** 2, axis=1)
    assert np.isnan(ce[3])
    np.testing.assert_allclose(ce[mask], direct)
    np.testing.assert_allclose(captured_energy(u, [g[:4], g[4:]])[mask], ce[mask])  # chunked input
    assert captured_energy(u, u[1]) == pytest.approx([1.0])
    with pytest.raises(GradflowError, match="dim 25"):
        captured_energy(u, np.ones((2, 7)))


def test_basis_round_trip_and_metadata(tmp_path: Path) -> None:
    a = np.random.default_rng(0).standard_normal((30, 16)).astype(np.float32)
    spec = compute_spectrum(a, center=True)
    basis = Basis.from_spectrum(spec, 3, {"model": "toy", "n_ctx": 4, "shapes": [(2, 8)]})
    assert basis.rank == 3 and basis.dim == 16
    path = basis.save(tmp_path / "b" / "early.pt")
    loaded = Basis.load(path)
    assert torch.equal(loaded.U, basis.U) and torch.equal(loaded.mean, basis.mean)
    assert loaded.metadata["n_ctx"] == 4 and loaded.metadata["centered"] is True
    assert loaded.metadata["rank"] == 3 and loaded.metadata["shapes"] == [[2, 8]]
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"format", "version", "U", "singular_values", "mean", "metadata"}
    loaded.check_compatible(16, {"model": "toy", "n_ctx": 4, "dataset": "x"})  # unrecorded field skipped
    with pytest.raises(GradflowError, match=r"was built for n_ctx=4 but the model has n_ctx=16.*dataset"):
        loaded.check_compatible(16, {"n_ctx": 16, "dataset": "x"}, require_keys=True)
    with pytest.raises(GradflowError, match="dim=16 but the parameters have dim=8"):
        loaded.check_compatible(8, {})


def test_bad_basis_files(tmp_path: Path) -> None:
    with pytest.raises(GradflowError, match="does not exist"):
        Basis.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00not a torch file")
    with pytest.raises(GradflowError, match="corrupt"):
        Basis.load(tmp_path / "junk.pt")
    torch.save({"weights": torch.ones(2)}, tmp_path / "other.pt")
    with pytest.raises(GradflowError, match="not a gradflow basis"):
        Basis.load(tmp_path / "other.pt")
    b = Basis(torch.ones(2, 5), torch.ones(2))
    b.save(tmp_path / "skew.pt")
    with pytest.raises(GradflowError, match="not orthonormal"):
        Basis.load(tmp_path / "skew.pt")
    good = Basis(torch.eye(3, 6), torch.ones(3)).save(tmp_path / "good.pt")
    data = good.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(GradflowError, match="cut.pt is corrupt"):
        Basis.load(tmp_path / "cut.pt")


def test_drift_on_array_and_store(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    u1, u2 = orth_rows(2, 20, 1), orth_rows(2, 20, 2)
    rows = np.concatenate([rng.standard_normal((30, 2)) @ u1, rng.standard_normal((30, 2)) @ u2]).astype(
        np.float32
    )
    m, ranges = drift(rows, window=15, rank=2)
    assert m.shape == (4, 4) and ranges == [(0, 14), (15, 29), (30, 44), (45, 59)]
    np.testing.assert_allclose(np.diag(m), 1.0)
    assert m[0, 1] == pytest.approx(1.0, abs=1e-5) and m[2, 3] == pytest.approx(1.0, abs=1e-5)
    assert m[0, 2] == pytest.approx(overlap(u1, u2), abs=1e-5)
    store = TrajectoryStore.create(tmp_path / "s", [("p", (20,))], chunk_rows=7)
    for i, r in enumerate(rows):
        store.append("grads", r, step=10 + i, epoch=i // 5)
    store.close()
    m2, ranges2 = drift(TrajectoryStore.open(tmp_path / "s"), window=15, rank=2)
    np.testing.assert_allclose(m2, m, atol=1e-5)
    assert ranges2 == [(10, 24), (25, 39), (40, 54), (55, 69)]
    m3, ranges3 = drift(
        TrajectoryStore.open(tmp_path / "s"), window=8, rank=2, epochs=(0, 3)
    )  # 20 rows -> 2 windows
    assert m3.shape == (2, 2) and ranges3 == [(10, 17), (18, 25)]
    with pytest.raises(GradflowError, match="at least 100 rows"):
        drift(rows, window=100, rank=2)
    with pytest.raises(GradflowError, match="rank 20"):
        drift(rows, window=15, rank=20)
