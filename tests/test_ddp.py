"""One run on two processes (torchrun, gloo, CPU) ends where the one-process run ends."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import torch

ARGS = ["train", "--dataset", "world-color-shape-36", "--shots", "4", "--epochs", "2", "--n-ctx", "4", "--record", "--json"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_match_one(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "subpt._cli.subpt_app", *ARGS, "--out", str(tmp_path / "one")],
                   check=True, env=env, capture_output=True)
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
              "--master_port", str(free_port()), "-m", "subpt._cli.subpt_app"]
    done = subprocess.run([*launch, *ARGS, "--out", str(tmp_path / "two")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    a = torch.load(tmp_path / "one" / "ckpt" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "two" / "ckpt" / "last.pt", weights_only=True)
    assert a["step"] == b["step"]
    torch.testing.assert_close(b["ctx"], a["ctx"], atol=1e-6, rtol=1e-5)
    one = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    two = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert len(one) == len(two) == 2  # rank 0 alone wrote the run folder
    for x, y in zip(one, two):
        assert abs(x["loss"] - y["loss"]) < 1e-5 and abs(x["base_acc"] - y["base_acc"]) < 0.5
