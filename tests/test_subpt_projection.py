"""SubPT: updates stay in span(U) under momentum, weight decay and autocast; bases are checked first."""

from __future__ import annotations

import json

import pytest
import torch

from gradflow.subspace import Basis
from gradflow.trajectory import TrajectoryStore
from subpt.config import TrainConfig
from subpt.errors import SubptError
from subpt.projection import GradientProjector
from subpt.train import train

SMALL = dict(dataset="world-color-shape-36", shots=4, epochs=3, n_ctx=4, dataset_options={"test_per_class": 4})
WIDTH, N_CTX = 128, 4
DIM = WIDTH * N_CTX
# Where a basis came from: the runs below (seed 1 of SMALL) must match it.
RUN_META = {"seed": 1, "dataset": "world-color-shape-36",
            "dataset_options": json.dumps(TrainConfig(**SMALL).dataset_options, sort_keys=True, separators=(",", ":"))}


def make_basis(path, rank: int, rng_seed: int = 0, **meta_overrides) -> Basis:
    gen = torch.Generator().manual_seed(rng_seed)
    q, _ = torch.linalg.qr(torch.randn(DIM, rank, generator=gen, dtype=torch.float64))
    meta = {"model": "subpt-tiny", "n_ctx": N_CTX, "width": WIDTH, "csc": False, "n_cls": 0, **RUN_META, **meta_overrides}
    basis = Basis(U=q.t().float().contiguous(), singular_values=torch.ones(rank), mean=None, metadata=meta)
    basis.save(path)
    return basis


def ctx_path(run):
    store = TrajectoryStore.open(run / "trajectory")
    rows = store.rows("snapshots")
    return torch.from_numpy(rows[0]).double(), torch.from_numpy(rows[-1]).double()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_update_lies_in_span(tmp_path, precision):
    basis = make_basis(tmp_path / "b.pt", rank=6)
    cfg = TrainConfig(**{**SMALL, "shots": 8, "epochs": 4, "lr": 0.5}, basis=str(tmp_path / "b.pt"), precision=precision)
    train(cfg, tmp_path / "run", progress=False)  # 20 steps of SGD with momentum 0.9 and weight decay 5e-4
    first, last = ctx_path(tmp_path / "run")
    d = last - first
    u = basis.U.double()
    residual = d - u.t() @ (u @ d)
    assert d.norm() > 1e-2, "the context hardly moved"
    assert residual.norm() / d.norm() < 1e-6


def test_projector_is_an_orthogonal_projection():
    gen = torch.Generator().manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(64, 5, generator=gen))
    p = GradientProjector(q.t())
    g = torch.randn(8, 8, generator=gen)
    pg = p.project(g)
    torch.testing.assert_close(p.project(pg), pg, atol=1e-6, rtol=0)
    torch.testing.assert_close(((g - pg).reshape(-1) @ pg.reshape(-1)), torch.tensor(0.0), atol=1e-5, rtol=0)
    param = torch.nn.Parameter(torch.zeros(8, 8, dtype=torch.bfloat16))
    param.grad = g.to(torch.bfloat16)
    p.project_(param)  # projected in fp32, written back in the gradient's dtype
    assert param.grad.dtype == torch.bfloat16
    torch.testing.assert_close(param.grad.float(), p.project(g.to(torch.bfloat16).float()), atol=1e-2, rtol=1e-2)


def test_full_rank_basis_trains_like_coop(tmp_path):
    make_basis(tmp_path / "full.pt", rank=DIM)
    train(TrainConfig(**SMALL), tmp_path / "coop", progress=False)
    train(TrainConfig(**SMALL, basis=str(tmp_path / "full.pt")), tmp_path / "subpt", progress=False)
    _, a = ctx_path(tmp_path / "coop")
    _, b = ctx_path(tmp_path / "subpt")
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    "overrides, needle",
    [
        ({"n_ctx": 16}, "n_ctx"),
        ({"model": "ViT-B-16"}, "model"),
        ({"csc": True}, "csc"),
        ({"width": 512}, "width"),
        ({"seed": 2}, "built for seed 2, this run has seed 1"),
        ({"dataset": "world-color-shape"}, "dataset"),
    ],
)
def test_basis_metadata_mismatch_is_clear(tmp_path, overrides, needle):
    make_basis(tmp_path / "b.pt", rank=4, **overrides)
    with pytest.raises(SubptError, match=needle):
        train(TrainConfig(**SMALL, basis=str(tmp_path / "b.pt")), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_basis_of_another_dimension_is_clear(tmp_path):
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(2 * DIM, 3, generator=gen))
    meta = {"model": "subpt-tiny", "n_ctx": N_CTX, "width": WIDTH, "csc": False, "n_cls": 0}
    Basis(U=q.t().contiguous(), singular_values=torch.ones(3), mean=None, metadata=meta).save(tmp_path / "b.pt")
    with pytest.raises(SubptError, match=str(2 * DIM)):
        train(TrainConfig(**SMALL, basis=str(tmp_path / "b.pt")), tmp_path / "run", progress=False)
