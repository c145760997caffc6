"""The CoOp trainer: run folder contents, CoOp's schedule, resume bit-identical to an uninterrupted run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from kill_resume import train_full_and_killed

from gradflow.trajectory import TrajectoryStore
from subpt.config import TrainConfig
from subpt.errors import SubptError
from subpt.runs import read_metrics
from subpt.train import lr_at, train

SMALL = dict(dataset="world-color-shape-36", shots=2, epochs=3, n_ctx=4, dataset_options={"test_per_class": 4})


def small_config(**kw) -> TrainConfig:
    return TrainConfig(**{**SMALL, **kw})


def test_run_folder_has_everything(tmp_path):
    metrics = train(small_config(record_grads=True), tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    assert read_metrics(run) == metrics
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["_hash"] == small_config(record_grads=True).hash()
    for m in metrics:
        assert {"loss", "lr", "train_acc", "base_acc", "novel_acc", "hm", "seconds"} <= set(m)
        assert math.isclose(m["hm"], 2 * m["base_acc"] * m["novel_acc"] / (m["base_acc"] + m["novel_acc"]))
    assert sorted(p.name for p in (run / "ckpt").iterdir()) == ["ctx_001.pt", "ctx_002.pt", "ctx_003.pt", "last.pt"]
    zs = json.loads((run / "zeroshot.json").read_text())
    assert 0 <= zs["base_acc"] <= 100 and 0 <= zs["novel_acc"] <= 100
    store = TrajectoryStore.open(run / "trajectory")
    steps_per_epoch = math.ceil(18 * 2 / 32)
    assert store.num_rows("grads") == 3 * steps_per_epoch
    assert store.num_rows("snapshots") == 4  # init + after each epoch
    last = torch.load(run / "ckpt" / "ctx_003.pt", weights_only=True)["ctx"]
    assert torch.equal(torch.from_numpy(store.rows("snapshots", epochs=(3, 3))[0]).view_as(last), last)
    assert store.metadata["n_ctx"] == 4 and store.metadata["model"] == "subpt-tiny"


def test_coop_schedule():
    cfg = TrainConfig(epochs=10, lr=0.002, warmup_epochs=1, warmup_lr=1e-5)
    assert lr_at(cfg, 0) == 1e-5
    assert lr_at(cfg, 1) == pytest.approx(0.002)
    assert lr_at(cfg, 6) == pytest.approx(0.001)
    assert all(lr_at(cfg, e) > lr_at(cfg, e + 1) for e in range(1, 9))


def test_weight_decay_on_the_gradient_equals_sgd_weight_decay(tmp_path):
    """Adding wd*ctx to the gradient with an optimiser wd of 0 is SGD's own weight decay, step for step."""
    torch.manual_seed(0)
    w = torch.randn(5, 3)
    a, b = torch.nn.Parameter(w.clone()), torch.nn.Parameter(w.clone())
    oa = torch.optim.SGD([a], lr=0.1, momentum=0.9, weight_decay=5e-4)
    ob = torch.optim.SGD([b], lr=0.1, momentum=0.9, weight_decay=0.0)
    for _ in range(5):
        for p, o in ((a, oa), (b, ob)):
            o.zero_grad()
            (p.sin().sum()).backward()
            if o is ob:
                p.grad.add_(p.detach(), alpha=5e-4)
            o.step()
    torch.testing.assert_close(a, b, atol=1e-7, rtol=0)


def test_resume_after_stop_is_bit_identical(tmp_path):
    full = train(small_config(epochs=4, record_grads=True), tmp_path / "full", progress=False)
    train(small_config(epochs=4, record_grads=True), tmp_path / "part", progress=False, stop_after=2)
    resumed = train(small_config(epochs=4, record_grads=True), tmp_path / "part", resume=True, progress=False)
    strip = lambda ms: [{k: v for k, v in m.items() if k != "seconds"} for m in ms]  # noqa: E731
    assert strip(resumed) == strip(full)
    for e in range(1, 5):
        a = torch.load(tmp_path / "full" / "ckpt" / f"ctx_{e:03d}.pt", weights_only=True)["ctx"]
        b = torch.load(tmp_path / "part" / "ckpt" / f"ctx_{e:03d}.pt", weights_only=True)["ctx"]
        assert torch.equal(a, b)
    sa, sb = TrajectoryStore.open(tmp_path / "full" / "trajectory"), TrajectoryStore.open(tmp_path / "part" / "trajectory")
    for stream in ("grads", "snapshots"):
        assert (sa.rows(stream) == sb.rows(stream)).all()
        assert (sa.scalars(stream)["step"] == sb.scalars(stream)["step"]).all()


def test_resume_after_sigkill_is_bit_identical(tmp_path):
    """A real process killed mid-run with SIGKILL resumes and ends exactly like an uninterrupted run."""
    args = ["--dataset", "world-color-shape-36", "--shots", "8", "--n-ctx", "4", "--epochs", "12", "--record"]
    train_full_and_killed(tmp_path, args, epochs=12)
    a = torch.load(tmp_path / "full" / "ckpt" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "killed" / "ckpt" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 12 and torch.equal(a["ctx"], b["ctx"])
    ma, mb = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "killed")
    assert [m["base_acc"] for m in ma] == [m["base_acc"] for m in mb]
    sa, sb = TrajectoryStore.open(tmp_path / "full" / "trajectory"), TrajectoryStore.open(tmp_path / "killed" / "trajectory")
    assert (sa.rows("grads") == sb.rows("grads")).all()


def test_existing_run_is_not_touched_without_resume(tmp_path):
    train(small_config(epochs=1), tmp_path / "run", progress=False)
    before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    with pytest.raises(SubptError, match="already holds a run"):
        train(small_config(epochs=1), tmp_path / "run", progress=False)
    with pytest.raises(SubptError, match="settings differ"):
        train(small_config(epochs=2), tmp_path / "run", resume=True, progress=False)
    after = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    assert before == after


def test_bf16_autocast_trains_on_cpu(tmp_path):
    metrics = train(small_config(epochs=1, precision="bf16"), tmp_path / "bf16", progress=False)
    assert math.isfinite(metrics[-1]["loss"])


def test_chunked_classes_give_the_same_training(tmp_path):
    """The two-pass chunked backward is the same gradient as encoding all classes at once."""
    a = train(small_config(epochs=2, nfl=True), tmp_path / "all", progress=False)
    b = train(small_config(epochs=2, nfl=True, text_chunk=5), tmp_path / "chunked", progress=False)
    ca = torch.load(tmp_path / "all" / "ckpt" / "last.pt", weights_only=True)["ctx"]
    cb = torch.load(tmp_path / "chunked" / "ckpt" / "last.pt", weights_only=True)["ctx"]
    torch.testing.assert_close(cb, ca, atol=1e-6, rtol=1e-5)
    assert abs(a[-1]["loss"] - b[-1]["loss"]) < 1e-5


def test_kill_between_checkpoint_and_metrics_line_loses_no_line(tmp_path):
    """The window after ckpt/last.pt is written and before the epoch's metrics line is appended."""
    full = train(small_config(epochs=4), tmp_path / "full", progress=False)
    train(small_config(epochs=4), tmp_path / "killed", progress=False, stop_after=2)
    metrics = tmp_path / "killed" / "metrics.jsonl"
    metrics.write_text(metrics.read_text().splitlines()[0] + "\n")  # epoch 2's line never reached the disk
    resumed = train(small_config(epochs=4), tmp_path / "killed", resume=True, progress=False)
    strip = lambda ms: [{k: v for k, v in m.items() if k != "seconds"} for m in ms]  # noqa: E731
    assert strip(read_metrics(tmp_path / "killed")) == strip(resumed) == strip(full)


CRASH_ARGS = ["--dataset", "world-color-shape-36", "--shots", "2", "--n-ctx", "4", "--epochs", "3", "--record"]


def crash_cmd() -> list[str]:
    return [sys.executable, "-m", "subpt._cli.subpt_app", "train", *CRASH_ARGS]


def crash_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "SUBPT_CRASH_AT"}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("crash") / "full"
    subprocess.run([*crash_cmd(), "--out", str(out)], check=True, env=crash_env(), capture_output=True)
    return out


@pytest.mark.parametrize("point", ["epoch-flushed@1", "epoch-flushed@2", "checkpoint-saved@2"])
def test_a_kill_at_each_window_of_the_epoch_commit_resumes_bit_identically(tmp_path, uninterrupted, point):
    """SUBPT_CRASH_AT ends the process at a named point as SIGKILL would: after an epoch's trajectory flush and
    before its checkpoint (epoch 1: no checkpoint yet at all), or after the checkpoint and before the metrics line.
    `--resume` then finishes the run exactly as an uninterrupted one."""
    killed = subprocess.run([*crash_cmd(), "--out", str(tmp_path / "killed")],
                            env={**crash_env(), "SUBPT_CRASH_AT": point}, capture_output=True, text=True)
    assert killed.returncode == 137, killed.stderr
    for _ in range(2):  # a resume must leave the folder fit for the next one too
        resumed = subprocess.run([*crash_cmd(), "--out", str(tmp_path / "killed"), "--resume"], env=crash_env(),
                                 capture_output=True, text=True)
        assert resumed.returncode == 0, resumed.stderr
        strip = lambda ms: [{k: v for k, v in m.items() if k != "seconds"} for m in ms]  # noqa: E731
        assert strip(read_metrics(tmp_path / "killed")) == strip(read_metrics(uninterrupted))
        a = torch.load(uninterrupted / "ckpt" / "last.pt", weights_only=True)
        b = torch.load(tmp_path / "killed" / "ckpt" / "last.pt", weights_only=True)
        assert torch.equal(a["ctx"], b["ctx"])
        sa = TrajectoryStore.open(uninterrupted / "trajectory")
        sb = TrajectoryStore.open(tmp_path / "killed" / "trajectory")
        for stream in ("grads", "snapshots"):
            assert (sa.rows(stream) == sb.rows(stream)).all()
            assert (sa.scalars(stream)["step"] == sb.scalars(stream)["step"]).all()
