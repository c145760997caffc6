"""GradientRecorder on a tiny training loop: rows equal gradients, snapshots equal parameters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gradflow.errors import GradflowError
from gradflow.recorder import GradientRecorder
from gradflow.trajectory import TrajectoryStore


def train(path: Path, steps: int = 12, **kwargs):
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3)
    frozen = torch.nn.Parameter(torch.ones(2))  # never receives a gradient
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 5), torch.randn(16, 3)
    named = [*model.named_parameters(), ("frozen", frozen)]
    grads, params = [], []
    with GradientRecorder(named, path, chunk_rows=5, metadata={"model": "linear"}, **kwargs) as rec:
        for step in range(steps):
            opt.zero_grad()
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            grads.append(
                torch.cat([model.weight.grad.reshape(-1), model.bias.grad, torch.zeros(2)]).numpy().copy()
            )
            params.append(torch.cat([model.weight.reshape(-1), model.bias, frozen]).detach().numpy().copy())
            rec.record(step, epoch=step // 4, loss=loss, lr=0.1)
            opt.step()
    return np.stack(grads), np.stack(params)


def test_rows_equal_grads_and_snapshots_equal_params(tmp_path: Path) -> None:
    grads, params = train(tmp_path / "t", snapshot_every=3)
    store = TrajectoryStore.open(tmp_path / "t")
    assert store.dim == 5 * 3 + 3 + 2 and store.metadata == {"model": "linear"}
    np.testing.assert_array_equal(store.rows("grads"), grads)
    np.testing.assert_array_equal(store.scalars("snapshots")["step"], [0, 3, 6, 9])
    np.testing.assert_array_equal(store.rows("snapshots"), params[[0, 3, 6, 9]])
    sc = store.scalars("grads")
    assert np.all(np.isfinite(sc["loss"])) and np.all(sc["lr"] == 0.1)
    np.testing.assert_array_equal(sc["epoch"], np.arange(12) // 4)
    assert list(store.param_slices()) == ["weight", "bias", "frozen"]


def test_every_and_explicit_snapshot(tmp_path: Path) -> None:
    grads, _ = train(tmp_path / "t", every=4)
    store = TrajectoryStore.open(tmp_path / "t")
    np.testing.assert_array_equal(store.scalars("grads")["step"], [0, 4, 8])
    np.testing.assert_array_equal(store.rows("grads"), grads[[0, 4, 8]])
    assert store.num_rows("snapshots") == 0

    w = torch.nn.Parameter(torch.arange(6.0))
    with GradientRecorder([("w", w)], tmp_path / "s", record_grads=False, snapshot_every=2) as rec:
        rec.record(0, 0)  # scheduled snapshot
        rec.snapshot(0, 0)  # same step again: skipped
        with torch.no_grad():
            w.add_(1)
        rec.snapshot(1, 0)
    s = TrajectoryStore.open(tmp_path / "s")
    assert s.num_rows("grads") == 0
    np.testing.assert_array_equal(s.rows("snapshots"), [np.arange(6.0), np.arange(6.0) + 1])


def test_resume_and_truncate(tmp_path: Path) -> None:
    w = torch.nn.Parameter(torch.zeros(4))
    with GradientRecorder([("w", w)], tmp_path / "t", chunk_rows=3) as rec:
        for s in range(7):
            w.grad = torch.full((4,), float(s))
            rec.record(s, 0)
    with GradientRecorder([("w", w)], tmp_path / "t", chunk_rows=3) as rec:
        rec.truncate(4)  # the checkpoint we resume from is at step 4
        for s in range(5, 8):
            w.grad = torch.full((4,), 10.0 + s)
            rec.record(s, 1)
    rows = TrajectoryStore.open(tmp_path / "t").rows("grads")
    np.testing.assert_array_equal(rows[:, 0], [0, 1, 2, 3, 4, 15, 16, 17])
    with pytest.raises(GradflowError, match="holds parameters"):
        GradientRecorder([("v", w)], tmp_path / "t")


def test_half_precision_grads_and_bf16_store(tmp_path: Path) -> None:
    a = torch.nn.Parameter(torch.zeros(3, dtype=torch.float16))
    b = torch.nn.Parameter(torch.zeros(2))
    a.grad = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float16)
    b.grad = torch.tensor([0.25, 4.0])
    with GradientRecorder([("a", a), ("b", b)], tmp_path / "t", dtype="bfloat16") as rec:
        rec.record(0, 0)
    np.testing.assert_array_equal(
        TrajectoryStore.open(tmp_path / "t").rows("grads"), [[0.5, -1.0, 2.0, 0.25, 4.0]]
    )


def test_only_rank_zero_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.distributed, "is_available", lambda: True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    w = torch.nn.Parameter(torch.zeros(4))
    w.grad = torch.ones(4)
    with GradientRecorder([("w", w)], tmp_path / "rank1", snapshot_every=1) as rec:
        assert not rec.active and rec.store is None
        rec.record(0, 0)
        rec.snapshot(1, 0)
        rec.flush()
    assert not (tmp_path / "rank1").exists()
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 0)
    with GradientRecorder([("w", w)], tmp_path / "rank0") as rec:
        rec.record(0, 0)
    assert TrajectoryStore.open(tmp_path / "rank0").num_rows("grads") == 1


def test_recorder_argument_errors(tmp_path: Path) -> None:
    w = torch.nn.Parameter(torch.zeros(4))
    with pytest.raises(GradflowError, match="at least one"):
        GradientRecorder([], tmp_path / "t")
    with pytest.raises(GradflowError, match="every"):
        GradientRecorder([("w", w)], tmp_path / "t", every=0)
    with pytest.raises(GradflowError, match="twice"):
        GradientRecorder([("w", w), ("w", w)], tmp_path / "t")
