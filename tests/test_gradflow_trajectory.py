"""TrajectoryStore: round trips, windows, truncate, resume, validation of broken stores."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from gradflow.errors import GradflowError
from gradflow.trajectory import TrajectoryStore, resolve

PARAMS = [("a", (3, 4)), ("b", (5,))]
DIM = 17


def row_of(step: int) -> np.ndarray:
    """A deterministic row, exactly representable in float32."""
    return (step + np.arange(DIM) / 8.0).astype(np.float32)


def fill(
    path: Path, n: int, *, chunk_rows: int = 4, dtype: str = "float32", per_epoch: int = 3
) -> TrajectoryStore:
    store = TrajectoryStore.create(path, PARAMS, dtype=dtype, chunk_rows=chunk_rows, metadata={"seed": 1})
    for step in range(n):
        store.append("grads", row_of(step), step=step, epoch=step // per_epoch, loss=0.5 * step, lr=0.01)
    store.close()
    return TrajectoryStore.open(path)


def test_round_trip_float32_and_layout(tmp_path: Path) -> None:
    store = fill(tmp_path / "s", 10)
    assert store.num_rows("grads") == 10 and store.num_rows("snapshots") == 0
    np.testing.assert_array_equal(store.rows("grads"), np.stack([row_of(s) for s in range(10)]))
    sc = store.scalars("grads")
    np.testing.assert_array_equal(sc["step"], np.arange(10))
    np.testing.assert_array_equal(sc["epoch"], np.arange(10) // 3)
    np.testing.assert_allclose(sc["loss"], 0.5 * np.arange(10))
    assert store.param_slices() == {"a": slice(0, 12), "b": slice(12, 17)}
    assert store.metadata == {"seed": 1}
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["format"] == "gradflow-trajectory" and manifest["version"] == 1 and manifest["dim"] == DIM
    chunks = manifest["streams"]["grads"]["chunks"]
    assert [c["rows"] for c in chunks] == [4, 4, 2]
    assert chunks[1]["first_step"] == 4 and chunks[1]["last_step"] == 7
    assert chunks[1]["first_epoch"] == 1 and chunks[1]["last_epoch"] == 2
    assert (tmp_path / "s" / chunks[0]["file"]).is_file()


@pytest.mark.parametrize("dtype,tol", [("float16", 1e-3), ("bfloat16", 8e-3)])
def test_round_trip_low_precision(tmp_path: Path, dtype: str, tol: float) -> None:
    rng = np.random.default_rng(0)
    data = rng.standard_normal((9, DIM)).astype(np.float32)
    store = TrajectoryStore.create(tmp_path / dtype, PARAMS, dtype=dtype, chunk_rows=4)
    for i, r in enumerate(data):
        store.append("grads", torch.from_numpy(r) if i % 2 else r, step=i, epoch=0)
    store.close()
    got = TrajectoryStore.open(tmp_path / dtype).rows("grads")
    assert got.dtype == np.float32 and got.shape == data.shape
    np.testing.assert_allclose(got, data, rtol=tol, atol=tol)
    expect = torch.from_numpy(data).to(getattr(torch, dtype)).float().numpy()
    np.testing.assert_array_equal(got, expect)  # exactly torch's rounding


def test_window_reads_only_overlapping_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = fill(tmp_path / "s", 20, chunk_rows=4)
    opened: list[str] = []
    original = TrajectoryStore._load

    def spy(self: TrajectoryStore, rel: str, stream: str) -> np.ndarray:
        opened.append(rel)
        return original(self, rel, stream)

    monkeypatch.setattr(TrajectoryStore, "_load", spy)
    rows = store.rows("grads", steps=(5, 9))
    np.testing.assert_array_equal(rows, np.stack([row_of(s) for s in range(5, 10)]))
    assert {Path(r).name.split(".")[0] for r in opened} == {"chunk_000001", "chunk_000002"}
    opened.clear()
    rows = store.rows("grads", epochs=(2, 3))  # steps 6..11
    np.testing.assert_array_equal(rows, np.stack([row_of(s) for s in range(6, 12)]))
    assert {Path(r).name.split(".")[0] for r in opened} == {"chunk_000001", "chunk_000002"}
    blocks = list(store.iter_chunks("grads", steps=(3, 12), epochs=(0, 3)))
    assert [len(b) for b in blocks] == [1, 4, 4]
    assert store.rows("grads", steps=(100, 200)).shape == (0, DIM)
    sc = store.scalars("grads", epochs=(2, 2))
    np.testing.assert_array_equal(sc["step"], [6, 7, 8])


def test_truncate_drops_rows_and_rewrites_straddling_chunk(tmp_path: Path) -> None:
    fill(tmp_path / "s", 10, chunk_rows=4)
    store = TrajectoryStore.open(tmp_path / "s", mode="a")
    store.truncate("grads", 5)
    assert store.num_rows("grads") == 6
    np.testing.assert_array_equal(store.scalars("grads")["step"], np.arange(6))
    files = sorted(p.name for p in (tmp_path / "s" / "grads").iterdir())
    listed = {Path(c["file"]).name for c in store.manifest["streams"]["grads"]["chunks"]}
    assert len(files) == 2 * len(listed)  # old straddling and dropped chunks were deleted
    store.append("grads", row_of(6), step=6, epoch=2)
    store.close()
    reopened = TrajectoryStore.open(tmp_path / "s")
    np.testing.assert_array_equal(reopened.rows("grads"), np.stack([row_of(s) for s in range(7)]))


def test_truncate_applies_to_buffered_rows(tmp_path: Path) -> None:
    store = TrajectoryStore.create(tmp_path / "s", PARAMS, chunk_rows=100)
    for s in range(5):
        store.append("grads", row_of(s), step=s, epoch=0)
    store.truncate("grads", 2)
    assert store.last_step("grads") == 2
    store.append("grads", row_of(3), step=3, epoch=0)
    store.close()
    np.testing.assert_array_equal(TrajectoryStore.open(tmp_path / "s").scalars("grads")["step"], [0, 1, 2, 3])


def test_resume_appends_and_rejects_old_steps(tmp_path: Path) -> None:
    fill(tmp_path / "s", 6, chunk_rows=4)
    store = TrajectoryStore.create(tmp_path / "s", PARAMS, chunk_rows=4, exist_ok=True)
    assert store.last_step("grads") == 5
    with pytest.raises(GradflowError, match="step 5 is not after the last stored step 5"):
        store.append("grads", row_of(5), step=5, epoch=1)
    for s in range(6, 9):
        store.append("grads", row_of(s), step=s, epoch=2)
    store.close()
    np.testing.assert_array_equal(TrajectoryStore.open(tmp_path / "s").scalars("grads")["step"], np.arange(9))


def test_create_refuses_existing_and_mismatched_params(tmp_path: Path) -> None:
    fill(tmp_path / "s", 2)
    with pytest.raises(GradflowError, match="already exists"):
        TrajectoryStore.create(tmp_path / "s", PARAMS)
    with pytest.raises(GradflowError, match="holds parameters"):
        TrajectoryStore.create(tmp_path / "s", [("a", (3, 4))], exist_ok=True)
    with pytest.raises(GradflowError, match="stores float32"):
        TrajectoryStore.create(tmp_path / "s", PARAMS, dtype="float16", exist_ok=True)


def test_bad_inputs_raise_gradflow_errors(tmp_path: Path) -> None:
    with pytest.raises(GradflowError, match="dtype"):
        TrajectoryStore.create(tmp_path / "x", PARAMS, dtype="int8")
    with pytest.raises(GradflowError, match="use chunk_rows <= 256"):
        TrajectoryStore.create(tmp_path / "x", [("big", (1 << 20,))], chunk_rows=1024)  # 4 GiB buffer
    store = TrajectoryStore.create(tmp_path / "y", PARAMS)
    with pytest.raises(GradflowError, match="unknown stream"):
        store.append("weights", row_of(0), step=0, epoch=0)
    with pytest.raises(GradflowError, match="expects dim 17"):
        store.append("grads", np.zeros(3), step=0, epoch=0)
    store.append("grads", row_of(0), step=0, epoch=3)
    with pytest.raises(GradflowError, match="epochs must not decrease"):
        store.append("grads", row_of(1), step=1, epoch=2)
    store.close()
    with pytest.raises(GradflowError, match="read-only"):
        TrajectoryStore.open(tmp_path / "y").append("grads", row_of(2), step=2, epoch=3)


def test_resolve_run_folder(tmp_path: Path) -> None:
    fill(tmp_path / "run" / "trajectory", 3)
    assert resolve(tmp_path / "run") == tmp_path / "run" / "trajectory"
    assert TrajectoryStore.open(tmp_path / "run").num_rows("grads") == 3
    with pytest.raises(GradflowError, match="does not exist"):
        resolve(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GradflowError, match="is not a trajectory store"):
        TrajectoryStore.open(tmp_path / "empty")


@pytest.mark.parametrize(
    "manifest,match",
    [
        ("{not json", "cannot be parsed"),
        (json.dumps({"format": "something-else"}), "has format 'something-else'"),
        (json.dumps({"format": "gradflow-trajectory", "version": 99}), "version 99"),
        (json.dumps({"format": "gradflow-trajectory", "version": 1, "dim": 3}), "malformed"),
    ],
)
def test_foreign_or_corrupt_manifest(tmp_path: Path, manifest: str, match: str) -> None:
    (tmp_path / "manifest.json").write_text(manifest)
    with pytest.raises(GradflowError, match=match):
        TrajectoryStore.open(tmp_path)


def test_truncated_and_missing_chunk_files(tmp_path: Path) -> None:
    fill(tmp_path / "traj", 12, chunk_rows=4)
    chunk = tmp_path / "traj" / "grads" / "chunk_000001.npy"
    data = chunk.read_bytes()
    chunk.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        GradflowError, match=r"traj/grads/chunk_000001.npy is truncated \(expected 4 rows x 17\)"
    ):
        TrajectoryStore.open(tmp_path / "traj")
    chunk.write_bytes(b"garbage")
    with pytest.raises(GradflowError, match="not a readable .npy"):
        TrajectoryStore.open(tmp_path / "traj")
    np.save(chunk, np.zeros((3, DIM), np.float32))
    with pytest.raises(GradflowError, match="has shape"):
        TrajectoryStore.open(tmp_path / "traj")
    chunk.unlink()
    with pytest.raises(GradflowError, match="chunk_000001.npy is missing"):
        TrajectoryStore.open(tmp_path / "traj")


def test_stray_temp_and_unlisted_files_are_ignored_then_cleaned(tmp_path: Path) -> None:
    fill(tmp_path / "s", 4, chunk_rows=4)
    (tmp_path / "s" / "grads" / "chunk_000001.npy.tmp-123").write_bytes(b"partial")
    np.save(
        tmp_path / "s" / "grads" / "chunk_000001.npy", np.zeros((4, DIM), np.float32)
    )  # renamed, unlisted
    (tmp_path / "s" / "manifest.json.tmp-99").write_text("{")
    assert TrajectoryStore.open(tmp_path / "s").num_rows("grads") == 4
    store = TrajectoryStore.open(tmp_path / "s", mode="a")
    assert sorted(p.name for p in (tmp_path / "s" / "grads").iterdir()) == [
        "chunk_000000.npy",
        "chunk_000000.scalars.npy",
    ]
    assert not (tmp_path / "s" / "manifest.json.tmp-99").exists()
    store.append("grads", row_of(4), step=4, epoch=1)
    store.close()
    assert TrajectoryStore.open(tmp_path / "s").num_rows("grads") == 5


def test_nan_scalars_and_update_metadata(tmp_path: Path) -> None:
    store = TrajectoryStore.create(tmp_path / "s", PARAMS, chunk_rows=2)
    store.append("snapshots", row_of(0), step=0, epoch=0)
    store.update_metadata({"model": "toy", "n_ctx": 4})
    store.close()
    s = TrajectoryStore.open(tmp_path / "s")
    assert math.isnan(s.scalars("snapshots")["loss"][0]) and math.isnan(s.scalars("snapshots")["lr"][0])
    assert s.metadata == {"model": "toy", "n_ctx": 4}


@pytest.mark.parametrize(
    "bad",
    ["/etc/passwd", "../victim.npy", "grads/../../victim.npy", "grads/sub/chunk.npy", "snapshots/chunk_000000.npy"],
)
def test_manifest_chunk_paths_must_stay_inside_the_store(tmp_path: Path, bad: str) -> None:
    """A manifest from elsewhere cannot make the store read, or a resume delete, a file outside it."""
    fill(tmp_path / "traj", 8, chunk_rows=4)
    victim = tmp_path / "victim.npy"
    np.save(victim, np.zeros((4, DIM), np.float32))
    before = victim.read_bytes()
    mpath = tmp_path / "traj" / "manifest.json"
    manifest = json.loads(mpath.read_text())
    manifest["streams"]["grads"]["chunks"][0]["file"] = bad
    mpath.write_text(json.dumps(manifest))
    for open_store in (lambda: TrajectoryStore.open(tmp_path / "traj"),
                       lambda: TrajectoryStore.open(tmp_path / "traj", mode="a")):
        with pytest.raises(GradflowError, match="malformed.*chunk path"):
            open_store()
    assert victim.read_bytes() == before


def test_symlinked_chunk_or_stream_folder_out_of_the_store_is_refused(tmp_path: Path) -> None:
    fill(tmp_path / "traj", 8, chunk_rows=4)
    outside = tmp_path / "outside"
    outside.mkdir()
    chunk = tmp_path / "traj" / "grads" / "chunk_000000.npy"
    target = outside / "chunk_000000.npy"
    chunk.rename(target)
    chunk.symlink_to(target)
    with pytest.raises(GradflowError, match="leads outside the store"):
        TrajectoryStore.open(tmp_path / "traj")
    chunk.unlink()
    target.rename(chunk)
    stray = outside / "chunk_000099.npy"
    stray.write_bytes(b"not yours")
    snapshots = tmp_path / "traj" / "snapshots"
    if snapshots.exists():
        for f in snapshots.iterdir():
            f.unlink()
        snapshots.rmdir()
    snapshots.symlink_to(outside, target_is_directory=True)
    with pytest.raises(GradflowError, match="symlink"):
        TrajectoryStore.open(tmp_path / "traj", mode="a")
    assert stray.read_bytes() == b"not yours"
