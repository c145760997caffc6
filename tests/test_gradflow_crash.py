"""A recording process killed with SIGKILL leaves a readable store that a new recorder resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from gradflow.recorder import GradientRecorder
from gradflow.trajectory import TrajectoryStore

DIM = 64
REPO = Path(__file__).resolve().parents[1]

WRITER = textwrap.dedent(
    """
    import sys, time
    import torch
    from gradflow.recorder import GradientRecorder

    dim = int(sys.argv[2])
    w = torch.nn.Parameter(torch.zeros(dim))
    rec = GradientRecorder([("w", w)], sys.argv[1], chunk_rows=4)
    base = torch.arange(dim, dtype=torch.float32) / 8
    step = 0
    while True:  # runs until killed
        w.grad = step + base
        rec.record(step, epoch=step // 10, loss=float(step))
        step += 1
        time.sleep(0.002)
    """
)


def expected_row(step: int) -> np.ndarray:
    return (step + np.arange(DIM, dtype=np.float32) / 8).astype(np.float32)


def listed_chunks(path: Path) -> int:
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return 0
    return len(manifest["streams"]["grads"]["chunks"])


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_leaves_readable_store_that_resumes(tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    store_path = tmp_path / "trajectory"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, str(script), str(store_path), str(DIM)], env=env)
    try:
        deadline = time.monotonic() + 60
        while listed_chunks(store_path) < 3:
            assert proc.poll() is None, "the writer process died on its own"
            assert time.monotonic() < deadline, "the writer did not produce chunks in time"
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    store = TrajectoryStore.open(store_path)
    n = store.num_rows("grads")
    assert n >= 12 and n % 4 == 0  # only whole chunks are listed
    steps = store.scalars("grads")["step"]
    np.testing.assert_array_equal(steps, np.arange(n))
    np.testing.assert_array_equal(store.rows("grads"), np.stack([expected_row(s) for s in range(n)]))
    np.testing.assert_array_equal(store.scalars("grads")["loss"], np.arange(n, dtype=np.float64))

    w = torch.nn.Parameter(torch.zeros(DIM))
    with GradientRecorder([("w", w)], store_path, chunk_rows=4) as rec:
        assert rec.store is not None and rec.store.last_step("grads") == n - 1
        for step in range(n, n + 6):
            w.grad = torch.from_numpy(expected_row(step))
            rec.record(step, epoch=step // 10)
    resumed = TrajectoryStore.open(store_path)
    assert resumed.num_rows("grads") == n + 6
    np.testing.assert_array_equal(resumed.rows("grads"), np.stack([expected_row(s) for s in range(n + 6)]))
    leftovers = [p.name for p in (store_path / "grads").iterdir() if ".tmp-" in p.name]
    assert leftovers == []
