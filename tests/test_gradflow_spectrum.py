"""compute_spectrum against numpy / scikit-learn; randomised streaming path against exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
from sklearn.decomposition import PCA

from gradflow.errors import GradflowError
from gradflow.spectrum import compute_spectrum, top_r
from gradflow.trajectory import TrajectoryStore


def gapped(
    n: int, dim: int, r: int = 6, seed: int = 0, noise: float = 0.05, offset: float = 0.0
) -> np.ndarray:
    """Rows with r strong directions (a clear spectral gap) plus small isotropic noise."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((dim, r)))[0].T
    scales = np.geomspace(20, 4, r)
    a = (rng.standard_normal((n, r)) * scales) @ basis + noise * rng.standard_normal((n, dim)) + offset
    return a.astype(np.float32)


@pytest.mark.parametrize("shape", [(40, 300), (300, 40)])
def test_exact_matches_numpy_svd(shape: tuple[int, int]) -> None:
    a = gapped(*shape, r=min(shape) // 4)
    u, s, vt = np.linalg.svd(a.astype(np.float64), full_matrices=False)
    spec = compute_spectrum(a, method="exact")
    assert spec.method == "exact" and spec.n_rows == shape[0] and spec.dim == shape[1]
    np.testing.assert_allclose(spec.singular_values, s, rtol=1e-6, atol=1e-6 * s[0])
    c = spec.components.astype(np.float64)
    assert c.shape == (min(shape), shape[1])
    np.testing.assert_allclose(c @ c.T, np.eye(c.shape[0]), atol=1e-5)
    k = 5
    np.testing.assert_allclose(
        np.abs(np.sum(c[:k] * vt[:k], axis=1)), 1.0, atol=1e-5
    )  # same vectors up to sign
    evr = s**2 / np.sum(s**2)
    np.testing.assert_allclose(spec.explained_variance_ratio, evr, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(spec.cumulative_energy, np.cumsum(evr), rtol=1e-6)
    assert spec.total_energy == pytest.approx(np.sum(a.astype(np.float64) ** 2), rel=1e-6)


def test_effective_ranks_match_direct_formulas() -> None:
    a = gapped(50, 80)
    s = np.linalg.svd(a.astype(np.float64), compute_uv=False)
    p = s**2 / np.sum(s**2)
    spec = compute_spectrum(a)
    assert spec.effective_rank_entropy == pytest.approx(np.exp(-np.sum(p * np.log(p))), rel=1e-6)
    assert spec.participation_ratio == pytest.approx(np.sum(s**2) ** 2 / np.sum(s**4), rel=1e-6)
    flat = compute_spectrum(np.eye(7, dtype=np.float32))  # 7 equal singular values
    assert flat.effective_rank_entropy == pytest.approx(7.0) and flat.participation_ratio == pytest.approx(
        7.0
    )


def test_centering_matches_sklearn_pca() -> None:
    a = gapped(60, 120, offset=3.0)
    pca = PCA().fit(a.astype(np.float64))
    spec = compute_spectrum(a, center=True, k=10)
    np.testing.assert_allclose(
        spec.explained_variance_ratio[:10], pca.explained_variance_ratio_[:10], rtol=1e-5
    )
    np.testing.assert_allclose(np.abs(np.sum(spec.components * pca.components_[:10], axis=1)), 1.0, atol=1e-5)
    np.testing.assert_allclose(spec.mean, pca.mean_, rtol=1e-5, atol=1e-5)
    assert spec.centered and spec.components.shape == (10, 120)
    assert spec.singular_values.shape == (60,)  # all values, only k components
    assert spec.singular_values[-1] < 1e-3 * spec.singular_values[0]  # centred rank is n - 1
    c = spec.components.astype(np.float64)
    np.testing.assert_allclose(c @ c.T, np.eye(10), atol=1e-5)


@pytest.mark.parametrize("center", [False, True])
def test_randomized_streaming_agrees_with_exact(center: bool) -> None:
    a = gapped(500, 400, r=6, offset=2.0 if center else 0.0, seed=3)
    exact = compute_spectrum(a, center=center, k=6, method="exact")
    passes = []

    def blocks():
        passes.append(1)
        return (a[i : i + 64] for i in range(0, len(a), 64))

    rand = compute_spectrum(blocks, center=center, k=6, method="randomized", n_iter=3)
    assert rand.method == "randomized" and len(passes) == 1 + 3 + 1
    np.testing.assert_allclose(rand.singular_values, exact.singular_values[:6], rtol=1e-3)
    np.testing.assert_allclose(rand.explained_variance_ratio, exact.explained_variance_ratio[:6], rtol=2e-3)
    angles = np.degrees(
        scipy.linalg.subspace_angles(rand.components.T.astype(float), exact.components.T.astype(float))
    )
    assert angles.max() < 1.0
    assert rand.total_energy == pytest.approx(exact.total_energy, rel=1e-6)
    np.testing.assert_allclose(np.abs(np.sum(rand.components * exact.components, axis=1)), 1.0, atol=1e-4)


def test_streaming_from_store_matches_in_memory(tmp_path: Path) -> None:
    a = gapped(90, 48)
    store = TrajectoryStore.create(tmp_path / "s", [("p", (6, 8))], chunk_rows=16)
    for i, row in enumerate(a):
        store.append("grads", row, step=i, epoch=i // 10)
    store.close()
    store = TrajectoryStore.open(tmp_path / "s")
    ref = compute_spectrum(a[20:60], k=4)
    from_store = compute_spectrum(lambda: store.iter_chunks("grads", epochs=(2, 5)), k=4)
    np.testing.assert_allclose(from_store.singular_values, ref.singular_values, rtol=1e-6)
    rand = compute_spectrum(lambda: store.iter_chunks("grads", epochs=(2, 5)), k=4, method="randomized")
    np.testing.assert_allclose(rand.singular_values, ref.singular_values[:4], rtol=1e-3)
    one_shot = compute_spectrum(iter([a[:30], a[30:]]), k=3)  # an iterator is read once and kept
    np.testing.assert_allclose(one_shot.singular_values, compute_spectrum(a).singular_values, rtol=1e-6)


def test_top_r_by_rank_and_energy() -> None:
    spec = compute_spectrum(np.diag([3.0, 2.0, 1.0, 1.0]).astype(np.float32))  # energies 9,4,1,1 of 15
    assert top_r(spec, rank=2) == 2
    assert top_r(spec, energy=0.6) == 1
    assert top_r(spec, energy=13 / 15) == 2
    assert top_r(spec, energy=1.0) == 4
    with pytest.raises(GradflowError, match="exactly one"):
        top_r(spec)
    with pytest.raises(GradflowError, match="rank 5 exceeds"):
        top_r(spec, rank=5)
    rand = compute_spectrum(gapped(40, 30), k=2, method="randomized")
    with pytest.raises(GradflowError, match="reach only"):
        top_r(rand, energy=0.9999)


def test_spectrum_errors_name_the_numbers() -> None:
    with pytest.raises(GradflowError, match="no rows"):
        compute_spectrum(np.zeros((0, 5), np.float32))
    with pytest.raises(GradflowError, match="no rows"):
        compute_spectrum(lambda: iter([]))
    with pytest.raises(GradflowError, match="rank 8 exceeds the 5 rows"):
        compute_spectrum(np.ones((5, 20), np.float32), k=8)
    with pytest.raises(GradflowError, match="rank 8 exceeds the row dimension 4"):
        compute_spectrum(np.ones((20, 4), np.float32), k=8, method="randomized")
    bad = np.ones((4, 4), np.float32)
    bad[1, 2] = np.nan
    with pytest.raises(GradflowError, match="NaN"):
        compute_spectrum(bad)
    with pytest.raises(GradflowError, match="zero energy"):
        compute_spectrum(np.zeros((3, 4), np.float32))
    with pytest.raises(GradflowError, match="method"):
        compute_spectrum(np.ones((3, 4), np.float32), method="magic")
