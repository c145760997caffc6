"""Seeded random kills of `subpt train --record`: SIGKILL at random moments, several times in a row on one run folder.

After each kill the trajectory store reads with gradflow's reader, holds every row flushed before the last checkpoint
and at most one epoch's flush (one chunk per stream) beyond it, and equals a prefix of an uninterrupted run's; the
final `--resume` ends bit-identical to the uninterrupted run: metrics, every context checkpoint, both trajectory
streams.

Each run is a child process running the `subpt` app's `train` command. The children are forked from a forkserver that
has imported torch and the app once, so a start costs the model and data set-up, not the imports: the test keeps to a
few seconds per kill on two CPU cores.
"""

from __future__ import annotations

import multiprocessing
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from gradflow.trajectory import STREAMS, TrajectoryStore
from subpt.runs import read_metrics

EPOCHS = 10
ARGS = [
    "--dataset",
    "world-color-shape-36",
    "--shots",
    "2",
    "--n-ctx",
    "4",
    "--epochs",
    str(EPOCHS),
    "--record",
]
KILLS = 5
SEED = 20261130


def run_subpt(args: list[str]) -> None:
    """Child body: `subpt ARGS` as the console script runs it (exits with the command's code), on one CPU thread:
    a forked child's thread pool would spin against the other runs on a two-core machine."""
    torch.set_num_threads(1)
    from subpt._cli.subpt_app import app

    app(args=args, prog_name="subpt")


@pytest.fixture(scope="module")
def forkserver() -> multiprocessing.context.BaseContext:
    """A multiprocessing context whose children fork from a server that has imported torch and the subpt app."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "subpt._cli.subpt_app"])
    warm = ctx.Process(target=noop)  # starts the server: its imports must not count in the timing of a run
    warm.start()
    warm.join()
    return ctx


def noop() -> None:
    """Child body that does nothing (starts the forkserver)."""


def start(ctx: multiprocessing.context.BaseContext, out: Path) -> multiprocessing.Process:
    """Start `subpt train ARGS --out OUT` (with --resume once the folder holds a run) in a child process."""
    resume = ["--resume"] if (out / "config.json").is_file() else []
    proc = ctx.Process(target=run_subpt, args=(["train", *ARGS, "--out", str(out), "--json", *resume],))
    proc.start()
    return proc


def strip(metrics: list[dict]) -> list[dict]:
    """Metrics records without their wall-clock seconds."""
    return [{k: v for k, v in m.items() if k != "seconds"} for m in metrics]


def check_store_after_kill(killed: Path, full: TrajectoryStore) -> int:
    """The killed run's store reads, holds everything flushed up to its checkpoint, at most one epoch's chunk per
    stream beyond it, and only rows equal to the uninterrupted run's; returns the checkpoint's epoch (0: none)."""
    if not killed.exists():
        return 0
    last = killed / "ckpt" / "last.pt"
    ckpt = torch.load(last, weights_only=True) if last.is_file() else {"epoch": 0, "step": 0}
    if not (killed / "trajectory" / "manifest.json").is_file():
        assert ckpt["epoch"] == 0, "a checkpoint exists but the trajectory is gone"
        return 0
    store = TrajectoryStore.open(killed / "trajectory")  # gradflow's reader: the store reads after any kill
    for stream in STREAMS:
        sc = store.scalars(stream)
        if ckpt["epoch"] > 0:  # every row flushed before the checkpoint is there
            assert sc["step"].size and sc["step"].max() >= ckpt["step"], stream
        chunks = store.manifest["streams"][stream]["chunks"]
        beyond = [c for c in chunks if c["last_epoch"] > ckpt["epoch"]]
        assert len(beyond) <= 1 and all(c["last_epoch"] == ckpt["epoch"] + 1 for c in beyond), (
            stream,
            beyond,
        )
        n = sc["step"].size
        np.testing.assert_array_equal(sc["step"], full.scalars(stream)["step"][:n])
        assert np.array_equal(store.rows(stream), full.rows(stream)[:n]), stream
    return int(ckpt["epoch"])


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_random_sigkills_of_a_recording_run_resume_bit_identically(forkserver, tmp_path: Path) -> None:
    rng = np.random.default_rng(SEED)
    full_dir, killed = tmp_path / "full", tmp_path / "killed"
    t0, first = time.monotonic(), None
    ref = start(forkserver, full_dir)
    while ref.exitcode is None:  # time the uninterrupted run: to its first checkpoint, and to its end
        if first is None and (full_dir / "ckpt" / "ctx_001.pt").exists():
            first = time.monotonic() - t0
        time.sleep(0.01)
    wall = time.monotonic() - t0
    assert ref.exitcode == 0 and first is not None
    epoch = (wall - first) / (EPOCHS - 1)
    full = TrajectoryStore.open(full_dir / "trajectory")
    epochs_at_kill = []
    for _ in range(KILLS):
        done = check_store_after_kill(killed, full)
        proc = start(forkserver, killed)
        # Seeded: wait for the child's next checkpoint or not (then the kill may land in start-up), then a random
        # delay of up to one and a half epochs: the kill lands anywhere in the commit sequence of an epoch.
        wait_for = killed / "ckpt" / f"ctx_{done + 1:03d}.pt" if rng.random() < 0.7 else None
        while wait_for is not None and not wait_for.exists() and proc.exitcode is None:
            time.sleep(0.005)
        proc.join(timeout=rng.uniform(0, 1.5 * epoch))
        if proc.exitcode is None:
            proc.kill()  # SIGKILL: nothing is flushed or cleaned up
            proc.join()
        assert proc.exitcode in (0, -signal.SIGKILL), proc.exitcode
        epochs_at_kill.append(check_store_after_kill(killed, full))
    assert any(0 < e < EPOCHS for e in epochs_at_kill), (
        f"no kill landed mid-run: checkpoints {epochs_at_kill}"
    )
    final = start(forkserver, killed)
    final.join()
    assert final.exitcode == 0

    assert strip(read_metrics(killed)) == strip(read_metrics(full_dir))
    for e in range(1, EPOCHS + 1):
        a = torch.load(full_dir / "ckpt" / f"ctx_{e:03d}.pt", weights_only=True)["ctx"]
        b = torch.load(killed / "ckpt" / f"ctx_{e:03d}.pt", weights_only=True)["ctx"]
        assert torch.equal(a, b), e
    a, b = (torch.load(d / "ckpt" / "last.pt", weights_only=True) for d in (full_dir, killed))
    assert torch.equal(a["ctx"], b["ctx"]) and a["step"] == b["step"]
    resumed = TrajectoryStore.open(killed / "trajectory")
    for stream in STREAMS:
        assert np.array_equal(resumed.rows(stream), full.rows(stream)), stream
        for key in ("step", "epoch"):
            np.testing.assert_array_equal(resumed.scalars(stream)[key], full.scalars(stream)[key])
