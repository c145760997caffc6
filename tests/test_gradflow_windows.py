"""Window strings: parsing, percent resolution, empty windows; and the figure writers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gradflow.errors import GradflowError
from gradflow.spectrum import compute_spectrum
from gradflow.trajectory import TrajectoryStore
from gradflow.windows import parse_window, resolve_window


@pytest.fixture()
def store(tmp_path: Path) -> TrajectoryStore:
    """Epochs 1..100, two steps each; snapshots only for epochs 0..100."""
    s = TrajectoryStore.create(tmp_path / "s", [("p", (3,))], chunk_rows=64)
    for step in range(200):
        s.append("grads", np.full(3, step, np.float32), step=step, epoch=1 + step // 2)
    for epoch in range(101):
        s.append("snapshots", np.full(3, epoch, np.float32), step=2 * epoch, epoch=epoch)
    s.close()
    return TrajectoryStore.open(tmp_path / "s")


def test_parse_window_forms() -> None:
    w = parse_window("epochs:1-30")
    assert (w.kind, w.lo, w.hi, w.percent) == ("epochs", 1, 30, False)
    assert parse_window("steps:0-999").kind == "steps"
    assert parse_window("epoch:5").lo == parse_window("epoch:5").hi == 5
    assert parse_window(" epochs: 70% - 100% ").percent
    for bad in [
        "",
        "epochs",
        "epochs:a-b",
        "weeks:1-2",
        "epochs:5-1",
        "epochs:10%-5",
        "epochs:0%-130%",
        "epochs:30%",
    ]:
        with pytest.raises(GradflowError, match="window"):
            parse_window(bad)


def test_resolve_percent_and_absolute(store: TrajectoryStore) -> None:
    w = resolve_window("epochs:0%-30%", store, "grads")
    assert (w.kind, w.lo, w.hi) == ("epochs", 1, 30)
    assert (
        resolve_window("epochs:70%-100%", store, "grads").lo,
        resolve_window("epochs:70%-100%", store, "grads").hi,
    ) == (71, 100)
    assert str(resolve_window("epochs:5", store, "grads")) == "epochs:5-5"
    assert resolve_window("steps:0%-10%", store, "grads").as_kwargs() == {"steps": (0, 19)}
    assert str(resolve_window(None, store, "grads")) == "steps:0-199"
    rows = store.rows("grads", **resolve_window("epochs:0%-30%", store, "grads").as_kwargs())
    assert rows.shape == (60, 3)


def test_percent_epochs_count_training_epochs_in_every_stream(store: TrajectoryStore) -> None:
    """Snapshots (with the epoch-0 init one) and gradients resolve a percent window to the same epochs."""
    for window, expected in [("epochs:0%-30%", (1, 30)), ("epochs:70%-100%", (71, 100)), ("epochs:0%-100%", (1, 100))]:
        for stream in ("snapshots", "grads"):
            w = resolve_window(window, store, stream)
            assert (w.lo, w.hi) == expected, (window, stream)
    assert store.rows("snapshots", **resolve_window("epochs:0%-30%", store, "snapshots").as_kwargs()).shape == (30, 3)
    assert resolve_window("epochs:0-5", store, "snapshots").lo == 0  # an explicit bound still selects epoch 0


def test_empty_window_names_the_available_range(store: TrajectoryStore, tmp_path: Path) -> None:
    with pytest.raises(
        GradflowError, match=r"window epochs:120-130 selects no rows: the run has epochs 0-100 in 'snapshots'"
    ):
        resolve_window("epochs:120-130", store, "snapshots")
    with pytest.raises(GradflowError, match="selects no rows"):
        resolve_window("epochs:50%-50%", store, "grads")
    empty = TrajectoryStore.create(tmp_path / "e", [("p", (3,))])
    empty.close()
    with pytest.raises(GradflowError, match="'snapshots' stream .* has no rows"):
        resolve_window("epochs:1-2", TrajectoryStore.open(tmp_path / "e"), "snapshots")


def test_plots_write_pngs(tmp_path: Path) -> None:
    from gradflow.plots import plot_captured_energy, plot_drift, plot_principal_angles, plot_spectrum

    spec = compute_spectrum(np.random.default_rng(0).standard_normal((20, 30)).astype(np.float32))
    paths = [
        plot_spectrum(spec, tmp_path / "a" / "spectrum.png", title="t"),
        plot_principal_angles([1.0, 30.0, 80.0], tmp_path / "angles.png"),
        plot_captured_energy(
            np.arange(10), np.linspace(0, 1, 10), tmp_path / "ce.png", epochs=np.arange(10) // 3
        ),
        plot_drift(np.eye(3), ["0-9", "10-19", "20-29"], tmp_path / "drift.png"),
    ]
    for p in paths:
        assert p.is_file() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(GradflowError, match="labels"):
        plot_drift(np.eye(3), ["a"], tmp_path / "bad.png")
