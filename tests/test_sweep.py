"""`subpt sweep` and `subpt table` on the embedded world: tables equal the runs' metrics, finished runs are
skipped, interrupted ones resume, missing ones are listed, bad input is one line."""

from __future__ import annotations

import csv
import json
import shutil
import statistics
from pathlib import Path

import pytest
import typer
from subpt._cli.sweep_cmd import sweep, table
from typer.testing import CliRunner

import subpt.train
from subpt.experiments.sweep import run_sweep
from subpt.experiments.sweep_plan import SweepSettings, group_jobs, job_config, plan_jobs, worker_share
from subpt.runs import read_metrics

app = typer.Typer()
app.command("sweep")(sweep)
app.command("table")(table)
runner = CliRunner()

# Tiny and fast, with enough pixel noise that seeds and methods give different numbers.
OPTIONS = {"test_per_class": 6, "noise": 40.0}
METHODS = ["zeroshot", "coop", "subpt"]
DATASET = "world-color-shape-36"


def settings(out, **kw) -> SweepSettings:
    base = dict(
        protocol="base2novel",
        datasets=[DATASET],
        seeds=[1, 2],
        methods=METHODS,
        shots=[2],
        out=str(out),
        epochs=4,
        n_ctx=4,
        embedded_options=OPTIONS,
        device="cpu",
    )
    return SweepSettings(**{**base, **kw})


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    lines: list[str] = []
    result = run_sweep(settings(out), echo=lines.append)
    return out, lines, result


def run_numbers(run) -> dict:
    if run.name == "zeroshot":
        return json.loads((run / "zeroshot.json").read_text())
    return read_metrics(run)[-1]


def test_sweep_writes_the_layout(swept):
    out, lines, result = swept
    assert result["done"] == 6 and result["skipped"] == 0
    job_lines = [ln for ln in lines if ln.startswith("[")]
    assert len(job_lines) == 6 and all(": done" in ln for ln in job_lines)
    seed_dir = out / "base2novel" / DATASET / "shots2" / "seed1"
    assert sorted(p.name for p in seed_dir.iterdir()) == ["basis_coop.pt", "coop", "subpt", "zeroshot"]
    assert json.loads((seed_dir / "zeroshot" / "config.json").read_text())["method"] == "zeroshot"
    assert len(read_metrics(seed_dir / "subpt")) == 4
    subpt_cfg = json.loads((seed_dir / "subpt" / "config.json").read_text())
    assert subpt_cfg["basis"].endswith("seed1/basis_coop.pt")
    manifest = json.loads((out / "base2novel" / "sweep.json").read_text())
    assert len(manifest["jobs"]) == 6


def test_table_equals_the_runs_metrics(swept, tmp_path):
    out, _, _ = swept
    md, csv_path = tmp_path / "table.md", tmp_path / "table.csv"
    res = runner.invoke(
        app, ["table", str(out / "base2novel"), "-o", str(md), "--csv", str(csv_path), "--json"]
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)["protocols"][0]
    assert report["protocol"] == "base2novel" and report["missing"] == []
    tables = {t["title"]: t for t in report["tables"]}
    per_dataset = tables[f"{DATASET} (2 shots)"]
    average = tables["Average over 1 dataset (2 shots)"]
    assert per_dataset["columns"] == ["Base", "Novel", "HM"]
    assert [r["method"] for r in per_dataset["rows"]] == METHODS
    seeds_differ = False
    for row, avg_row in zip(per_dataset["rows"], average["rows"]):
        runs = [out / "base2novel" / DATASET / "shots2" / f"seed{s}" / row["method"] for s in (1, 2)]
        nums = [run_numbers(r) for r in runs]
        for cell, key in zip(row["cells"], ("base_acc", "novel_acc", "hm")):
            vals = [n[key] for n in nums]
            assert cell["mean"] == pytest.approx(statistics.fmean(vals), abs=1e-9)
            assert cell["std"] == pytest.approx(statistics.stdev(vals), abs=1e-9)
            assert cell["n"] == 2 and cell["status"] == "ok"
            seeds_differ |= vals[0] != vals[1]
        b, n = (statistics.fmean(x[k] for x in nums) for k in ("base_acc", "novel_acc"))
        assert avg_row["cells"][0]["mean"] == pytest.approx(b)
        assert avg_row["cells"][2]["mean"] == pytest.approx(2 * b * n / (b + n))  # HM of the averages
        assert avg_row["cells"][2]["std"] is None
    assert seeds_differ, "the test settings should give seeds different numbers"
    text = md.read_text()
    assert "| Method | Base | Novel | HM |" in text and "| CoOp |" in text and "2BN/(B+N)" in text
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 2 * 3 * 3  # two tables x three methods x three columns
    coop_base = next(
        r for r in rows if r["dataset"] == DATASET and r["method"] == "CoOp" and r["column"] == "Base"
    )
    assert float(coop_base["mean"]) == pytest.approx(per_dataset["rows"][1]["cells"][0]["mean"], abs=1e-4)
    printed = runner.invoke(app, ["table", str(out)])  # the sweep root holding protocol folders
    assert (
        printed.exit_code == 0
        and "SubPT" in printed.stdout
        and "Every expected run is finished" in printed.stdout
    )


def test_second_sweep_skips_finished_runs(swept, monkeypatch):
    out, _, _ = swept
    mtimes = {
        p: p.stat().st_mtime_ns
        for p in (out / "base2novel").rglob("*")
        if p.is_file() and p.name != "sweep.json"
    }
    calls = []
    monkeypatch.setattr(subpt.train, "train", lambda *a, **k: calls.append(a))
    lines: list[str] = []
    result = run_sweep(settings(out), echo=lines.append)
    assert calls == [] and result["skipped"] == 6 and result["done"] == 0
    assert sum("skipped (finished)" in ln for ln in lines) == 6
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes


def test_interrupted_run_resumes_and_broken_one_restarts(swept, tmp_path, monkeypatch):
    out, _, _ = swept
    s = settings(tmp_path, seeds=[1], methods=["coop"])
    (job,) = plan_jobs(s)
    real_train = subpt.train.train
    real_train(job_config(s, job), job.run_dir, progress=False, stop_after=1)  # killed after epoch 1
    calls = []

    def spy(cfg, run_dir, **kw):
        calls.append(kw)
        return real_train(cfg, run_dir, **kw)

    monkeypatch.setattr(subpt.train, "train", spy)
    lines: list[str] = []
    assert run_sweep(s, echo=lines.append)["resumed"] == 1
    assert calls == [{"resume": True, "progress": False}]
    assert "resumed, from epoch 1/4" in lines[0]
    resumed = read_metrics(tmp_path / "base2novel" / DATASET / "shots2" / "seed1" / "coop")
    reference = read_metrics(out / "base2novel" / DATASET / "shots2" / "seed1" / "coop")
    assert [m["base_acc"] for m in resumed] == [m["base_acc"] for m in reference]  # as if never interrupted
    # No checkpoint to resume from: restarted from scratch.
    run = tmp_path / "base2novel" / DATASET / "shots2" / "seed1" / "coop"
    (run / "ckpt" / "last.pt").unlink()
    (run / "metrics.jsonl").write_text((run / "metrics.jsonl").read_text().splitlines()[0] + "\n")
    calls.clear()
    assert run_sweep(s, echo=lambda _: None)["done"] == 1
    assert calls == [{"overwrite": True, "progress": False}]
    assert len(read_metrics(run)) == 4


def test_changed_basis_setting_rebuilds_the_basis_and_retrains_subpt(swept, tmp_path):
    out, _, _ = swept
    shutil.copytree(out / "base2novel", tmp_path / "base2novel")
    lines: list[str] = []
    result = run_sweep(settings(tmp_path, t_early=3), echo=lines.append)
    assert result["done"] == 2 and result["skipped"] == 4
    redone = [ln for ln in lines if ": done" in ln]
    assert all("/subpt: done, basis setting changed" in ln and "basis epochs 1-3, r 1" in ln for ln in redone)
    from gradflow.subspace import Basis

    meta = Basis.load(tmp_path / "base2novel" / DATASET / "shots2" / "seed1" / "basis_coop.pt").metadata
    assert (meta["window"], meta["rank"]) == ("epochs:1-3", 1)


def test_missing_and_unfinished_runs_are_listed(swept, tmp_path):
    out, _, _ = swept
    root = tmp_path / "copy"
    shutil.copytree(out / "base2novel", root)
    shutil.rmtree(root / DATASET / "shots2" / "seed2" / "subpt")
    metrics = root / DATASET / "shots2" / "seed1" / "coop" / "metrics.jsonl"
    metrics.write_text("".join(ln + "\n" for ln in metrics.read_text().splitlines()[:2]))
    res = runner.invoke(app, ["table", str(root), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)["protocols"][0]
    reasons = {(m["seed"], m["method"]): m["reason"] for m in report["missing"]}
    assert reasons == {(2, "subpt"): "not run", (1, "coop"): "unfinished: 2/4 epochs"}
    rows = {r["method"]: r["cells"] for r in report["tables"][1]["rows"]}
    assert rows["subpt"][0]["status"] == "partial" and rows["subpt"][0]["text"].endswith("(1/2)")
    assert rows["coop"][0]["n"] == 1
    # A sweep folder where a whole dataset's runs are gone still shows them as missing (from sweep.json).
    shutil.rmtree(root / DATASET)
    report = json.loads(runner.invoke(app, ["table", str(root), "--json"]).stdout)["protocols"][0]
    assert len(report["missing"]) == 6
    assert all(c["text"] == "missing (0/2)" for r in report["tables"][1]["rows"] for c in r["cells"])
    assert all(c["status"] == "missing" for r in report["tables"][0]["rows"] for c in r["cells"])


def test_dry_run_lists_jobs_and_runs_nothing(tmp_path):
    args = [
        "sweep",
        "--datasets",
        DATASET,
        "--seeds",
        "1,2",
        "--methods",
        "subpt",
        "--shots",
        "2",
        "--epochs",
        "3",
        "--n-ctx",
        "4",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "o"),
        "--dry-run",
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert "added coop" in lines[0]
    jobs = [ln for ln in lines if ln.startswith("[")]
    assert len(jobs) == 4 and "seed1/coop: run" in jobs[0] and "basis of coop: epochs 1-3, r 1" in jobs[1]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--protocol", "nope"], "unknown protocol"),
        (["--methods", "coop,magic"], "unknown method 'magic'"),
        (["--seeds", "1,x"], "--seeds"),
        (["--datasets", "caltech101"], "--root"),
        (["--epochs", "2", "--methods", "subpt"], "at least 3 epochs"),
        (["--targets", "dtd"], "--targets only applies"),
        (["--cue", "mark", "--datasets", "caltech101", "--root", "/tmp"], "embedded world only"),
        (["--rank", "0"], "--rank must be at least 1"),
        (["--t-early", "0"], "--t-early must be at least 1"),
    ],
)
def test_bad_sweep_input_is_one_line(tmp_path, args, needle):
    base = ["sweep", "--datasets", DATASET, "--shots", "2", "--device", "cpu", "--out", str(tmp_path / "o")]
    res = runner.invoke(app, [*base, *args])
    assert res.exit_code == 2, res.output
    err = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], res.stderr
    assert not (tmp_path / "o").exists()


def test_other_settings_in_the_same_folder_are_refused(swept):
    out, _, _ = swept
    args = [
        "sweep",
        "--datasets",
        DATASET,
        "--seeds",
        "1",
        "--methods",
        "coop",
        "--shots",
        "2",
        "--epochs",
        "5",
        "--n-ctx",
        "4",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "other settings" in res.stderr and "epochs 4 -> 5" in res.stderr
    res = runner.invoke(app, ["table", str(out / "nothing-here")])
    assert res.exit_code == 2 and "no such folder" in res.stderr


def test_groups_stay_together_on_one_worker(tmp_path):
    s = settings(
        tmp_path, datasets=[DATASET, "world-color-shape"], seeds=[1, 2, 3], methods=["coop", "subpt", "nfl"]
    )
    jobs = plan_jobs(s)
    shares = [worker_share(jobs, w, 3) for w in range(3)]
    assert sorted(j.index for share in shares for j in share) == list(range(len(jobs)))
    for share in shares:
        groups = {j.group for j in share}
        for g in groups:  # all of a group's jobs, in dependency order
            assert [j.method for j in share if j.group == g] == ["coop", "subpt", "nfl"]
    assert [len(g) for g in group_jobs(jobs)] == [3] * 6


def test_two_workers_share_the_sweep(swept, monkeypatch):
    """The multi-GPU path: one `python -m subpt.experiments.sweep PLAN i N` process per worker (run in-process here, to keep
    the test fast), each with its own CUDA_VISIBLE_DEVICES on a GPU sweep, counts gathered from every worker."""
    import subpt.experiments.sweep as sweep_mod

    out, _, _ = swept
    launched = []

    class InProcess:
        def __init__(self, cmd, env):
            assert cmd[1:3] == ["-m", "subpt.experiments.sweep"] and env["SUBPT_SWEEP_WORKER"] == cmd[4]
            launched.append(cmd[3:])
            self.returncode = sweep_mod.worker_main(cmd[3:])

        def wait(self):
            return self.returncode

        def poll(self):
            return self.returncode

    monkeypatch.setattr(sweep_mod.subprocess, "Popen", InProcess)
    lines: list[str] = []
    result = run_sweep(settings(out), gpus=2, echo=lines.append)
    assert [c[1:] for c in launched] == [["0", "2"], ["1", "2"]]
    assert result["workers"] == 2 and result["skipped"] == 6
    assert not list((out / "base2novel").glob(".sweep-*"))


def test_two_concurrent_sweeps_on_one_folder_run_every_job_once(swept, tmp_path):
    """Two `subpt sweep` processes started together on one folder claim jobs through the run folders' locks: every
    job runs once (no duplicated metrics lines), and the table equals the single sweep's."""
    import os
    import re
    import subprocess
    import sys

    out = tmp_path / "shared"
    cmd = [sys.executable, "-m", "subpt._cli.subpt_app", "sweep", "--protocol", "base2novel", "--datasets", DATASET,
           "--seeds", "1,2", "--methods", ",".join(METHODS), "--shots", "2", "--epochs", "4", "--n-ctx", "4",
           "--noise", "40", "--test-per-class", "6", "--device", "cpu", "--out", str(out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [r[1] for r in results]
    counts = [re.search(r"(\d+) jobs in \d+ s: (\d+) done, (\d+) resumed, (\d+) skipped", r[0]) for r in results]
    n_jobs = int(counts[0].group(1))
    assert sum(int(c.group(2)) + int(c.group(3)) for c in counts) == n_jobs  # each job trained by one process
    for metrics in (out / "base2novel").rglob("metrics.jsonl"):
        assert len(metrics.read_text().splitlines()) == 4, metrics
    tables = []
    for folder in (swept[0], out):
        res = runner.invoke(app, ["table", str(folder / "base2novel"), "--json"])
        assert res.exit_code == 0, res.output
        tables.append(json.loads(res.stdout)["protocols"][0]["tables"])
    assert tables[0] == tables[1]


def test_a_sweep_killed_at_a_commit_window_finishes_on_rerun_with_the_same_table(swept, tmp_path):
    """SUBPT_CRASH_AT=checkpoint-saved@6 ends the sweep after a checkpoint and before its metrics line (in the
    second trained run); the same command again finishes the sweep, and its table equals the uninterrupted one."""
    import os
    import subprocess
    import sys

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "subpt._cli.subpt_app", "sweep", "--protocol", "base2novel", "--datasets", DATASET,
           "--seeds", "1,2", "--methods", ",".join(METHODS), "--shots", "2", "--epochs", "4", "--n-ctx", "4",
           "--noise", "40", "--test-per-class", "6", "--device", "cpu", "--out", str(out)]
    env = {k: v for k, v in os.environ.items() if k != "SUBPT_CRASH_AT"}
    killed = subprocess.run(cmd, env={**env, "SUBPT_CRASH_AT": "checkpoint-saved@6"}, capture_output=True, text=True)
    assert killed.returncode == 137, killed.stderr
    again = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    for metrics in (out / "base2novel").rglob("metrics.jsonl"):
        assert len(metrics.read_text().splitlines()) == 4, metrics
    tables = []
    for folder in (swept[0], out):
        res = runner.invoke(app, ["table", str(folder / "base2novel"), "--json"])
        tables.append(json.loads(res.stdout)["protocols"][0]["tables"])
    assert tables[0] == tables[1]


def test_a_subpt_run_trained_from_the_current_basis_is_kept_after_its_stage1_was_retrained(swept):
    """Two sweeps on one folder: one retrains CoOp, the other trains SubPT from the basis of that very CoOp run while
    the first waits. When the first then claims the SubPT job, the run's basis digest equals the basis it rebuilds,
    so the job is skipped, not trained a second time (caught as 7 trainings for 6 jobs in CI)."""
    from subpt.experiments.sweep import run_job

    s = settings(swept[0])  # in place: a basis names the store it came from, so a copy's basis differs
    job = next(j for j in plan_jobs(s) if j.method == "subpt")
    stage1 = str(Path(job.run_dir).parent / "coop")
    lines: list[str] = []
    assert run_job(s, job, {stage1}, 1, lines.append) == "skipped", lines
    assert len(read_metrics(Path(job.run_dir))) == 4


def _eval(path: Path) -> dict:
    from subpt._cli.subpt_app import app as subpt_app

    res = runner.invoke(subpt_app, ["eval", str(path), "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _same_numbers(ev: dict, run: Path) -> None:
    recorded = run_numbers(run)
    assert (ev["base_acc"], ev["novel_acc"], ev["hm"]) == (
        recorded["base_acc"],
        recorded["novel_acc"],
        recorded["hm"],
    )


@pytest.mark.parametrize("method", METHODS)
def test_eval_of_each_run_folder_of_a_sweep_reproduces_it(swept, method):
    out, _, _ = swept
    run = out / "base2novel" / DATASET / "shots2" / "seed1" / method
    ev = _eval(run)
    assert ev["method"] == {"zeroshot": "Zero-shot CLIP", "coop": "CoOp", "subpt": "SubPT"}[method]
    _same_numbers(ev, run)


def test_eval_of_the_nfl_run_folders_reproduces_them(tmp_path):
    run_sweep(settings(tmp_path, seeds=[1], methods=["subpt_nfl"]), echo=lambda _: None)
    seed = tmp_path / "base2novel" / DATASET / "shots2" / "seed1"
    for method, label in (("nfl", "CoOp+NFL"), ("subpt_nfl", "SubPT+NFL")):
        ev = _eval(seed / method)
        assert ev["method"] == label
        _same_numbers(ev, seed / method)


def test_eval_of_a_sweep_folder_evaluates_every_run_below_it(swept):
    out, _, _ = swept
    folder = out / "base2novel" / DATASET / "shots2"
    result = _eval(folder)["runs"]
    expected = sorted(p.parent for p in folder.rglob("config.json"))
    assert [Path(r["run"]) for r in result] == expected and len(expected) == 6
    for ev in result:
        _same_numbers(ev, Path(ev["run"]))
    from subpt._cli.subpt_app import app as subpt_app

    res = runner.invoke(subpt_app, ["eval", str(folder / "seed1" / "zeroshot"), "--epoch", "1"])
    assert res.exit_code == 2 and "zero-shot folder" in res.stderr


# ---------------------------------------------------------------------------------------------- --launcher slurm
def test_cluster_launcher_runs_one_job_per_run_and_resumes_a_killed_one(swept, tmp_path, monkeypatch):
    """Real submitit, its jobs as local processes: a job killed after a checkpoint fails the launch with one line;
    the same launch again resumes that run from its checkpoint and runs the rest, with the numbers of the local
    sweep; a third submits nothing."""
    from dataclasses import replace

    import torch

    from subpt.errors import SubptError
    from subpt.experiments.launcher import ClusterOptions, launch_sweep

    monkeypatch.setenv("SUBPT_SUBMITIT_CLUSTER", "local")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    opts = ClusterOptions(gpus_per_job=0, time_min=20)
    s = settings(tmp_path, seeds=[1])
    seed = tmp_path / "base2novel" / DATASET / "shots2" / "seed1"
    monkeypatch.setenv("SUBPT_CRASH_AT", "checkpoint-saved@2")  # the job ends as a SIGKILL would, mid-run
    lines: list[str] = []
    with pytest.raises(SubptError, match="1 of 1 cluster job.*coop.*run the same command again to resume"):
        launch_sweep(replace(s, methods=["coop"]), opts, echo=lines.append, poll_s=0.5)
    assert len(read_metrics(seed / "coop")) == 1
    assert torch.load(seed / "coop" / "ckpt" / "last.pt", weights_only=True)["epoch"] == 2
    monkeypatch.delenv("SUBPT_CRASH_AT")
    lines.clear()
    result = launch_sweep(s, opts, echo=lines.append, poll_s=0.5)
    assert (result["resumed"], result["done"], result["skipped"]) == (1, 2, 0), lines
    assert "submitted 3 job(s) (local)" in lines[0]
    assert any("seed1/coop: resumed, from epoch" in ln for ln in lines), lines
    reference = swept[0] / "base2novel" / DATASET / "shots2" / "seed1"
    for method in METHODS:  # as if never interrupted, and as the local sweep
        if method == "zeroshot":
            assert run_numbers(seed / method) == run_numbers(reference / method)
        else:
            numbers = [[(m["loss"], m["base_acc"], m["novel_acc"]) for m in read_metrics(r / method)]
                       for r in (seed, reference)]  # fmt: skip
            assert numbers[0] == numbers[1]
    logs = [p for p in (tmp_path / "base2novel" / ".submitit").iterdir() if p.name.isdigit()]
    assert len(logs) == 4  # one log folder per submitted job: the killed one, then three
    lines.clear()
    result = launch_sweep(s, opts, echo=lines.append, poll_s=0.5)
    assert result["skipped"] == 3 and not any("submitted" in ln for ln in lines)


def test_cluster_launcher_options(swept, tmp_path, monkeypatch):
    monkeypatch.delenv("SUBPT_SUBMITIT_CLUSTER", raising=False)
    base = ["sweep", "--datasets", DATASET, "--seeds", "1,2", "--methods", ",".join(METHODS), "--shots", "2",
            "--epochs", "4", "--n-ctx", "4", "--noise", "40", "--test-per-class", "6", "--device", "cpu"]  # fmt: skip
    slurm = ["--launcher", "slurm", "--partition", "gpu", "--time", "30", "--gpus-per-job", "1"]
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "new"), *slurm, "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "would submit 6 cluster job(s): 1 GPU(s), 30 min each, partition gpu" in res.stdout
    res = runner.invoke(app, [*base, "--out", str(swept[0]), *slurm, "--dry-run"])
    assert res.exit_code == 0 and "would submit 0 cluster job(s)" in res.stdout
    assert res.stdout.count("(not submitted)") == 6
    for args, needle in (
        ([*slurm], "no Slurm here"),
        (["--launcher", "pbs"], "--launcher must be one of local, slurm"),
        (["--partition", "gpu"], "apply to --launcher slurm only"),
        (["--launcher", "slurm", "--time", "0"], "--time must be at least 1"),
        (["--launcher", "slurm", "--gpus", "2"], "--gpus applies to --launcher local"),
    ):
        res = runner.invoke(app, [*base, "--out", str(tmp_path / "bad"), *args])
        assert res.exit_code == 2, res.output
        err = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert len(err) == 1 and needle in err[0], res.stderr
        assert not (tmp_path / "bad").exists()


def test_cluster_jobs_ask_slurm_for_the_options(tmp_path, monkeypatch):
    """On Slurm (sbatch mocked by submitit's own test helper): one array task per run, arrays of at most
    --array-size, and the partition, GPUs, time limit, CPUs, memory and %N of the options."""
    from submitit.slurm.test_slurm import mocked_slurm

    from subpt.experiments.launcher import ClusterOptions, log_folder, make_executor, submit_jobs

    monkeypatch.delenv("SUBPT_SUBMITIT_CLUSTER", raising=False)
    s = settings(tmp_path, seeds=[1])
    jobs = plan_jobs(s)
    opts = ClusterOptions(partition="gpu", gpus_per_job=2, time_min=30, array_size=2, max_running=2, cpus_per_job=8,
                          mem_gb=32)  # fmt: skip
    with mocked_slurm():
        executor = make_executor(log_folder(s), opts, name="subpt-base2novel")
        submitted = submit_jobs(s, jobs, opts, executor)
    assert [j.index for j, _ in submitted] == [0, 1, 2]
    scripts = sorted({p.read_text() for p in log_folder(s).rglob("*.sh")})  # each array's script, once
    assert len(scripts) == 2  # 3 runs in arrays of at most 2
    arrays = sorted(line for text in scripts for line in text.splitlines() if line.startswith("#SBATCH --array"))
    assert arrays == ["#SBATCH --array=0-1%2"]  # the last run alone: a plain job, not an array of one
    for text in scripts:
        for line in ("--partition=gpu", "--gpus-per-node=2", "--time=30", "--cpus-per-task=8", "--mem=32GB",
                     "--job-name=subpt-base2novel"):  # fmt: skip
            assert f"#SBATCH {line}" in text, text
