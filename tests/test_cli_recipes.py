"""One-command recipes: `gradflow record`, `subpt basis` (the reference basis), `subpt pipeline`."""

from __future__ import annotations

import json

import torch
from subpt._cli.gradflow_app import app as gradflow_app
from subpt._cli.subpt_app import app as subpt_app
from typer.testing import CliRunner

from gradflow.subspace import Basis
from gradflow.trajectory import TrajectoryStore

runner = CliRunner()
FAST = ["--dataset", "world-color-shape-36", "--shots", "2", "--n-ctx", "4"]


def test_record_then_reference_basis(tmp_path):
    run = tmp_path / "coop"
    result = runner.invoke(gradflow_app, ["record", *FAST, "--epochs", "12", "--every", "2", "--out", str(run), "--json"])
    assert result.exit_code == 0, result.output
    store = TrajectoryStore.open(run)
    steps = store.scalars("grads")["step"]
    assert len(steps) > 0 and (steps % 2 == 0).all()
    assert store.num_rows("snapshots") == 13
    result = runner.invoke(subpt_app, ["basis", str(run), "-o", str(tmp_path / "early.pt"), "--t-early", "11",
                                       "--rank", "9", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    basis = Basis.load(tmp_path / "early.pt")
    assert info["window"] == "epochs:1-11" and basis.rank == 9 and basis.dim == 4 * 128
    assert basis.metadata["source"] == "snapshots" and basis.metadata["centered"] is True
    assert basis.metadata["n_ctx"] == 4 and basis.metadata["model"] == "subpt-tiny"
    torch.testing.assert_close(basis.U @ basis.U.t(), torch.eye(9), atol=1e-5, rtol=0)
    late = runner.invoke(subpt_app, ["basis", str(run), "-o", str(tmp_path / "late.pt"), "--t-early", "11", "--late",
                                     "--rank", "9", "--json"])
    assert json.loads(late.stdout)["window"] == "epochs:2-12"


def test_pipeline_runs_both_stages(tmp_path):
    out = tmp_path / "ref"
    result = runner.invoke(subpt_app, ["pipeline", *FAST, "--epochs", "4", "--t-early", "3", "--rank", "1",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    basis = Basis.load(out / "early.pt")
    cfg = json.loads((out / "subpt" / "config.json").read_text())
    assert cfg["basis"] == str(out / "early.pt") and basis.rank == 1
    assert len((out / "subpt" / "metrics.jsonl").read_text().splitlines()) == 4
    bad = runner.invoke(subpt_app, ["pipeline", *FAST, "--epochs", "4", "--t-early", "9", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--t-early 9" in bad.stderr


def test_pipeline_checks_every_setting_before_training_and_can_overwrite(tmp_path):
    out = tmp_path / "ref"
    for args, needle in ((["--source", "gradz"], "--source must be one of"), (["--rank", "0"], "--rank must be at least 1"),
                         (["--resume", "--overwrite"], "choose one")):
        bad = runner.invoke(subpt_app, ["pipeline", *FAST, "--epochs", "4", "--t-early", "3", *args, "--out", str(out)])
        assert bad.exit_code == 2 and needle in bad.stderr, bad.output
        assert not out.exists()
    args = ["pipeline", *FAST, "--epochs", "4", "--t-early", "3", "--rank", "1", "--out", str(out)]
    assert runner.invoke(subpt_app, args).exit_code == 0
    again = runner.invoke(subpt_app, args)
    assert again.exit_code == 2 and "--overwrite" in again.stderr  # the option it names exists
    assert runner.invoke(subpt_app, [*args, "--overwrite"]).exit_code == 0


def test_pipeline_killed_at_a_commit_window_resumes_bit_identically(tmp_path):
    """SUBPT_CRASH_AT=epoch-flushed@6 ends the pipeline in stage 2's second epoch (stage 1 has 4), between the
    trajectory flush and the checkpoint; `--resume` finishes both stages as an uninterrupted pipeline does."""
    import os
    import subprocess
    import sys

    from subpt.runs import read_metrics

    cmd = [sys.executable, "-m", "subpt._cli.subpt_app", "pipeline", *FAST, "--epochs", "4", "--t-early", "3",
           "--rank", "1"]
    env = {k: v for k, v in os.environ.items() if k != "SUBPT_CRASH_AT"}
    subprocess.run([*cmd, "--out", str(tmp_path / "full")], check=True, env=env, capture_output=True)
    killed = subprocess.run([*cmd, "--out", str(tmp_path / "killed")], env={**env, "SUBPT_CRASH_AT": "epoch-flushed@6"},
                            capture_output=True, text=True)
    assert killed.returncode == 137, killed.stderr
    assert len(read_metrics(tmp_path / "killed" / "subpt")) == 1
    resumed = subprocess.run([*cmd, "--out", str(tmp_path / "killed"), "--resume"], env=env, capture_output=True,
                             text=True)
    assert resumed.returncode == 0, resumed.stderr
    strip = lambda ms: [{k: v for k, v in m.items() if k != "seconds"} for m in ms]  # noqa: E731
    for stage in ("coop", "subpt"):
        assert strip(read_metrics(tmp_path / "killed" / stage)) == strip(read_metrics(tmp_path / "full" / stage))
        a = torch.load(tmp_path / "full" / stage / "ckpt" / "last.pt", weights_only=True)["ctx"]
        b = torch.load(tmp_path / "killed" / stage / "ckpt" / "last.pt", weights_only=True)["ctx"]
        assert torch.equal(a, b)
