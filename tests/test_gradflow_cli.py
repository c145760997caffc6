"""The `gradflow` CLI through typer's CliRunner: outputs, files, and one-line errors with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from subpt._cli.common import register_user_error, run_guarded
from subpt._cli.gradflow_app import app
from typer.testing import CliRunner

from gradflow.subspace import Basis
from gradflow.trajectory import TrajectoryStore

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder with a trajectory of 10 epochs x 8 steps whose gradient subspace turns halfway."""
    root = tmp_path_factory.mktemp("run")
    rng = np.random.default_rng(0)
    q = np.linalg.qr(rng.standard_normal((48, 6)))[0].T
    store = TrajectoryStore.create(
        root / "trajectory",
        [("ctx", (4, 12))],
        chunk_rows=16,
        metadata={"model": "toy", "n_ctx": 4, "seed": 1},
    )
    for step in range(80):
        epoch = 1 + step // 8
        basis = q[:3] if epoch <= 5 else q[2:5]
        row = rng.standard_normal(3) * [5, 2, 1] @ basis + 0.01 * rng.standard_normal(48)
        store.append("grads", row.astype(np.float32), step=step, epoch=epoch, loss=1.0 / (step + 1), lr=0.002)
        if step % 8 == 7:
            store.append("snapshots", rng.standard_normal(48).astype(np.float32), step=step, epoch=epoch)
    store.close()
    return root


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_user_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


def test_spectrum_writes_basis_and_png(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "early.pt"
    result = invoke("spectrum", run_dir, "--window", "epochs:1-3", "--rank", "3", "-o", out)
    assert result.exit_code == 0, result.output
    assert "cumulative energy at r" in result.stdout and "effective rank" in result.stdout
    basis = Basis.load(out)
    assert basis.rank == 3 and basis.dim == 48
    meta = basis.metadata
    assert (
        meta["source"] == "grads"
        and meta["window"] == "epochs:1-3"
        and (meta["window_lo"], meta["window_hi"]) == (1, 3)
    )
    assert meta["model"] == "toy" and meta["n_ctx"] == 4 and meta["param_shapes"] == [[4, 12]]
    assert meta["n_rows"] == 24 and meta["centered"] is False
    png = tmp_path / "early_spectrum.png"
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"


def test_spectrum_json_energy_center_snapshots(run_dir: Path, tmp_path: Path) -> None:
    result = invoke(
        "spectrum", run_dir / "trajectory", "--window", "epochs:0%-50%", "--energy", "0.9", "--json"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["rows"] == 40 and data["resolved_window"] == "epochs:1-5"
    assert data["cumulative_energy_at_r"] >= 0.9 and data["rank"] <= 3
    result = invoke(
        "spectrum",
        run_dir,
        "--source",
        "snapshots",
        "--center",
        "--rank",
        "2",
        "--json",
        "--plot",
        tmp_path / "snap.png",
        "--method",
        "randomized",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["rows"] == 10 and data["centered"] and data["method"] == "randomized"
    assert (tmp_path / "snap.png").is_file()


def test_compare_two_bases_and_a_run(run_dir: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    assert invoke("spectrum", run_dir, "-w", "epochs:1-5", "-r", "3", "-o", a).exit_code == 0
    assert invoke("spectrum", run_dir, "-w", "epochs:6-10", "-r", "3", "-o", b).exit_code == 0
    result = invoke("compare", a, b, "--json", "--plot", tmp_path / "angles.png")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    angles = np.array(data["principal_angles_deg"])
    assert angles.shape == (3,) and angles[0] < 5 and angles[-1] > 80  # one shared direction
    assert data["overlap"] == pytest.approx(np.sum(np.cos(np.radians(angles)) ** 2) / 3, abs=1e-4)
    ce = data["captured_energy_of_b_rows_by_a"]
    rows_b = TrajectoryStore.open(run_dir).rows("grads", epochs=(6, 10)).astype(np.float64)
    u = Basis.load(a).U.double().numpy()
    direct = np.sum((rows_b @ u.T) ** 2, axis=1) / np.sum(rows_b**2, axis=1)
    assert ce["rows"] == 40 and ce["mean"] == pytest.approx(direct.mean(), rel=1e-5)
    assert ce["quartiles"]["median"] == pytest.approx(np.median(direct), rel=1e-5)
    assert (tmp_path / "angles.png").is_file()

    result = invoke(
        "compare",
        run_dir,
        "--window-a",
        "epochs:0%-50%",
        "--window-b",
        "epochs:50%-100%",
        "-r",
        "3",
        "--json",
    )
    assert result.exit_code == 0, result.output
    run_data = json.loads(result.stdout)
    np.testing.assert_allclose(run_data["principal_angles_deg"], angles, atol=1e-3)
    assert run_data["captured_energy_of_b_rows_by_a"]["mean"] == pytest.approx(ce["mean"], rel=1e-5)
    result = invoke("compare", a, b)
    assert result.exit_code == 0 and "Grassmann distance" in result.stdout

    other = Basis.load(b)  # a basis whose metadata names its rows: they are found again
    other.metadata = {
        "source": "grads",
        "store": str(run_dir / "trajectory"),
        "window_kind": "epochs",
        "window_lo": 6,
        "window_hi": 10,
    }
    other.save(tmp_path / "other.pt")
    alt = json.loads(invoke("compare", a, tmp_path / "other.pt", "--json").stdout)
    assert alt["captured_energy_of_b_rows_by_a"]["mean"] == pytest.approx(ce["mean"], rel=1e-6)
    other.metadata = {**other.metadata, "store": str(tmp_path / "gone")}
    other.save(tmp_path / "orphan.pt")
    assert (
        json.loads(invoke("compare", a, tmp_path / "orphan.pt", "--json").stdout)[
            "captured_energy_of_b_rows_by_a"
        ]
        is None
    )


def test_bad_inputs_give_one_line_and_exit_2(run_dir: Path, tmp_path: Path) -> None:
    assert_user_error(invoke("spectrum", tmp_path / "nope"), "does not exist")
    assert_user_error(invoke("spectrum", run_dir, "-w", "epochs:120-130"), "selects no rows", "epochs 1-10")
    assert_user_error(invoke("spectrum", run_dir, "-w", "epochs:1", "-r", "20"), "rank 20 exceeds the 8 rows")
    assert_user_error(invoke("spectrum", run_dir, "-w", "days:1"), "not understood")
    assert_user_error(invoke("spectrum", run_dir, "--source", "weights"), "--source")
    assert_user_error(invoke("compare", run_dir), "--window-a")

    small = Basis(torch.eye(2, 10), torch.ones(2)).save(tmp_path / "small.pt")
    big = Basis(torch.eye(2, 48), torch.ones(2)).save(tmp_path / "big.pt")
    assert_user_error(invoke("compare", big, small), "basis A has dim 48, basis B has dim 10")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(big.read_bytes()[:100])
    assert_user_error(invoke("compare", big, corrupt), "corrupt.pt", "corrupt")

    broken = tmp_path / "broken"
    TrajectoryStore.open(run_dir).manifest  # noqa: B018 - the source opens cleanly
    import shutil

    shutil.copytree(run_dir, broken)
    chunk = broken / "trajectory" / "grads" / "chunk_000002.npy"
    chunk.write_bytes(chunk.read_bytes()[:-100])
    assert_user_error(invoke("spectrum", broken), "grads/chunk_000002.npy is truncated")


def test_run_guarded_registers_other_error_types() -> None:
    import typer

    class OtherError(Exception):
        pass

    register_user_error(OtherError)
    mini = typer.Typer()

    @mini.command()
    @run_guarded
    def boom(flag: bool = False) -> None:
        raise OtherError("first line\nsecond line")

    result = runner.invoke(mini, [])
    assert result.exit_code == 2 and result.stderr.strip() == "error: first line second line"
