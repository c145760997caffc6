"""Basis rules of METHOD.md section 3: provenance checks, the rank rule, centring defaults, percent windows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gradflow.errors import GradflowError
from gradflow.subspace import Basis
from gradflow.trajectory import TrajectoryStore
from gradflow.windowbasis import max_window_rank, window_basis
from gradflow.windows import resolve_window
from subpt.basis_plan import basis_rank, run_basis
from subpt.config import TrainConfig
from subpt.errors import SubptError
from subpt.experiments.pipeline import run_pipeline
from subpt.runs import read_metrics
from subpt.train import train

SMALL = dict(dataset="world-color-shape-36", shots=2, epochs=3, n_ctx=4, dataset_options={"test_per_class": 4})


def small_config(**kw) -> TrainConfig:
    return TrainConfig(**{**SMALL, **kw})


def toy_store(path: Path, epochs: int = 6, steps_per_epoch: int = 3, dim: int = 12) -> Path:
    """A store like a recorded run: the epoch-0 init snapshot, one snapshot per epoch, gradients with a mean."""
    rng = np.random.default_rng(0)
    store = TrajectoryStore.create(path, [("ctx", (dim,))], metadata={"model": "toy", "seed": 1})
    store.append("snapshots", rng.standard_normal(dim).astype(np.float32), step=0, epoch=0)
    step = 0
    for epoch in range(1, epochs + 1):
        for _ in range(steps_per_epoch):
            step += 1
            g = 3.0 + rng.standard_normal(dim)  # far from zero mean: centring changes the basis
            store.append("grads", g.astype(np.float32), step=step, epoch=epoch)
        store.append("snapshots", rng.standard_normal(dim).astype(np.float32), step=step, epoch=epoch)
    store.close()
    return path


# 1. A basis carries its seed, dataset and dataset options, and a mismatch is refused before training.


def test_basis_of_another_seed_or_dataset_option_is_refused(tmp_path: Path) -> None:
    train(small_config(), tmp_path / "coop", progress=False)
    basis = run_basis(tmp_path / "coop", "epochs:1-3", 1, tmp_path / "early.pt")
    meta = basis.metadata
    assert (meta["seed"], meta["dataset"]) == (1, "world-color-shape-36")
    assert json.loads(meta["dataset_options"]) == small_config().dataset_options
    assert meta["n_rows"] == 3  # epochs:1-t holds t snapshots, not the epoch-0 init one
    bpath = str(tmp_path / "early.pt")

    with pytest.raises(SubptError, match=r"was built for seed 1, this run has seed 2: .* same seed"):
        train(small_config(seed=2, basis=bpath), tmp_path / "seed2", progress=False)
    assert not (tmp_path / "seed2").exists()
    with pytest.raises(SubptError, match=r"\"test_per_class\":4\}, this run has dataset_options .*\"test_per_class\":5\}"):
        train(small_config(dataset_options={"test_per_class": 5}, basis=bpath), tmp_path / "opts", progress=False)
    assert not (tmp_path / "opts").exists()

    old = Basis.load(bpath)
    old.metadata = {k: v for k, v in old.metadata.items() if k not in ("seed", "dataset_options")}
    old.save(tmp_path / "old.pt")
    with pytest.raises(SubptError, match=r"records no seed, dataset_options .*rebuild the basis"):
        train(small_config(basis=str(tmp_path / "old.pt")), tmp_path / "old", progress=False)

    metrics = train(small_config(epochs=1, basis=bpath), tmp_path / "subpt", progress=False)
    assert len(metrics) == 1


# 2. One rank rule in gradflow: a rank must leave out at least one direction of its window.


def test_rank_keeping_every_direction_of_the_window_is_refused(tmp_path: Path) -> None:
    path = toy_store(tmp_path / "s")
    with pytest.raises(GradflowError, match=r"rank 5 keeps every direction of window epochs:1-6 in 'snapshots'") as e:
        window_basis(path, "epochs:1-6", rank=5, source="snapshots", center=True)
    assert "6 rows, centred, hold 5 directions" in str(e.value) and "largest allowed rank is 4" in str(e.value)
    basis, _ = window_basis(path, "epochs:1-6", rank=4, source="snapshots", center=True)
    assert basis.rank == 4 and basis.metadata["n_rows"] == 6 and basis.metadata["centered"] is True
    with pytest.raises(GradflowError, match=r"6 rows, not centred, hold 6 directions.*largest allowed rank is 5"):
        window_basis(path, "epochs:1-6", rank=6, source="snapshots", center=False)
    assert window_basis(path, "epochs:1-6", rank=5, source="snapshots", center=False)[0].rank == 5
    with pytest.raises(GradflowError, match=r"rank 9 exceeds the 6 rows"):
        run_basis(path, "epochs:1-6", 9, tmp_path / "b.pt")
    with pytest.raises(GradflowError, match=r"no rank is allowed: use a wider window"):
        run_basis(path, "epochs:1-2", 1, tmp_path / "b.pt")


def test_basis_rank_is_the_reference_proportion_below_the_window_limit() -> None:
    assert basis_rank(30) == 10  # the reference base-to-novel setting
    assert [basis_rank(t) for t in (1, 2, 3, 4, 6, 9, 20, 50)] == [1, 1, 1, 1, 2, 3, 7, 17]
    assert all(1 <= basis_rank(t) <= max_window_rank(t, center=True) for t in range(3, 200))
    with pytest.raises(SubptError, match="t_early"):
        basis_rank(0)


def test_pipeline_refuses_a_full_rank_before_training(tmp_path: Path) -> None:
    with pytest.raises(GradflowError, match=r"rank 2 keeps every direction of window epochs:1-3"):
        run_pipeline(small_config(), tmp_path / "ref", t_early=3, rank=2, progress=False)
    assert not (tmp_path / "ref").exists()


# 3. Snapshots are centred by default, gradients are not (unless asked).


def test_grads_basis_is_not_centred_by_default(tmp_path: Path) -> None:
    path = toy_store(tmp_path / "s")
    grads = run_basis(path, "epochs:1-6", 3, tmp_path / "g.pt", source="grads")
    assert grads.metadata["centered"] is False and grads.mean is None
    stored = Basis.load(tmp_path / "g.pt")
    assert stored.metadata["centered"] is False and stored.mean is None
    rows = TrajectoryStore.open(path).rows("grads", epochs=(1, 6)).astype(np.float64)
    top = np.linalg.svd(rows, full_matrices=False)[2][0]  # uncentred: the top direction is near the mean
    assert abs(float(grads.U[0].double().numpy() @ top)) == pytest.approx(1.0, abs=1e-4)

    centred = run_basis(path, "epochs:1-6", 3, tmp_path / "gc.pt", source="grads", center=True)
    assert centred.metadata["centered"] is True and centred.mean is not None
    np.testing.assert_allclose(centred.mean.numpy(), rows.mean(axis=0), rtol=1e-5)
    snaps = run_basis(path, "epochs:1-6", 3, tmp_path / "s.pt")
    assert snaps.metadata["centered"] is True and snaps.metadata["source"] == "snapshots"


# 4. Percent windows count the training epochs 1..N in every stream.


def test_percent_window_is_the_same_epochs_for_snapshots_and_grads(tmp_path: Path) -> None:
    cfg = small_config(epochs=20, batch_size=64, eval_every=20, record_grads=True)
    train(cfg, tmp_path / "run", progress=False)
    store = TrajectoryStore.open(tmp_path / "run" / "trajectory")
    assert store.scalars("snapshots")["epoch"][0] == 0  # the init snapshot is there
    snaps = resolve_window("epochs:0%-30%", store, "snapshots")
    grads = resolve_window("epochs:0%-30%", store, "grads")
    assert (snaps.lo, snaps.hi) == (grads.lo, grads.hi) == (1, 6)
    assert store.rows("snapshots", **snaps.as_kwargs()).shape[0] == 6
    late_s, late_g = (resolve_window("epochs:70%-100%", store, s) for s in ("snapshots", "grads"))
    assert (late_s.lo, late_s.hi) == (late_g.lo, late_g.hi) == (15, 20)
    explicit = resolve_window("epochs:0-5", store, "snapshots")  # an explicit bound may still select epoch 0
    assert store.scalars("snapshots", **explicit.as_kwargs())["epoch"].tolist() == [0, 1, 2, 3, 4, 5]
    assert json.loads(store.metadata["dataset_options"])["test_per_class"] == 4


def test_a_basis_replaced_at_the_same_path_is_not_reused(tmp_path: Path) -> None:
    """The config hash covers the basis file's content: resume refuses, and the pipeline and sweep retrain."""
    from subpt.experiments.pipeline import train_stage
    from subpt.experiments.sweep_plan import SweepSettings, plan_jobs, run_state

    train(small_config(), tmp_path / "coop", progress=False)
    bpath = tmp_path / "early.pt"
    run_basis(tmp_path / "coop", "epochs:1-3", 1, bpath)
    cfg = small_config(basis=str(bpath))
    train(cfg, tmp_path / "subpt", progress=False, stop_after=2)
    run_basis(tmp_path / "coop", "epochs:1-3", 1, bpath, source="snapshots", center=False)  # basis B, same path
    assert small_config(basis=str(bpath)).hash() != json.loads((tmp_path / "subpt" / "config.json").read_text())["_hash"]
    with pytest.raises(SubptError, match="basis file .* has changed"):
        train(small_config(basis=str(bpath)), tmp_path / "subpt", resume=True, progress=False)
    train_stage(small_config(basis=str(bpath)), tmp_path / "subpt", resume=True, progress=False)
    saved = json.loads((tmp_path / "subpt" / "config.json").read_text())
    assert saved["_basis_sha256"] == small_config(basis=str(bpath)).basis_sha256()  # retrained on basis B
    assert [m["epoch"] for m in read_metrics(tmp_path / "subpt")] == [1, 2, 3]

    # A sweep's finished SubPT run whose basis file changed is trained again, not skipped.
    s = SweepSettings(protocol="base2novel", datasets=["world-color-shape-36"], seeds=[1], methods=["coop", "subpt"],
                      shots=[2], out=str(tmp_path / "sw"), epochs=3, n_ctx=4,
                      embedded_options={"test_per_class": 4}, device="cpu")
    from subpt.experiments.sweep import run_sweep

    run_sweep(s, echo=lambda _: None)
    job = next(j for j in plan_jobs(s) if j.method == "subpt")
    assert run_state(s, job)[0] == "finished"
    basis_file = Path(job.run_dir).parent / "basis_coop.pt"
    run_basis(Path(job.run_dir).parent / "coop", "epochs:1-3", 1, basis_file, center=False)
    assert run_state(s, job) == ("restart", "basis file changed")
