"""One run on two processes (torchrun, gloo, CPU) ends where the one-process run ends."""

from __future__ import annotations

import json

import torch
from ddp_runs import one_and_two_processes

ARGS = ["train", "--dataset", "world-color-shape-36", "--shots", "4", "--epochs", "2", "--n-ctx", "4", "--record", "--json"]


def test_two_gloo_processes_match_one(tmp_path):
    one_and_two_processes(tmp_path, ARGS)
    a = torch.load(tmp_path / "one" / "ckpt" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "two" / "ckpt" / "last.pt", weights_only=True)
    assert a["step"] == b["step"]
    torch.testing.assert_close(b["ctx"], a["ctx"], atol=1e-6, rtol=1e-5)
    one = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    two = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert len(one) == len(two) == 2  # rank 0 alone wrote the run folder
    for x, y in zip(one, two):
        assert abs(x["loss"] - y["loss"]) < 1e-5 and abs(x["base_acc"] - y["base_acc"]) < 0.5
