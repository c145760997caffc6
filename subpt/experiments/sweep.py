"""Run a protocol over datasets x shots x seeds x methods into one folder tree, resumably.

The plan (settings, jobs, the state of each run folder) is subpt.experiments.sweep_plan. Jobs of one
(dataset, shots, seed) run in order on one worker (coop -> basis -> subpt, nfl -> basis -> subpt_nfl);
with several GPUs, one worker process per GPU takes every N-th such group.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from gradflow.atomic import atomic_write_json
from subpt.errors import SubptError
from subpt.experiments.protocols import ZEROSHOT, cached_transfer, get_protocol, transfer_eval
from subpt.experiments.sweep_plan import (
    STAGE1,
    Echo,
    Job,
    SweepSettings,
    basis_path,
    basis_window,
    check_conflicts,
    expand_methods,
    group_jobs,
    job_config,
    parse_list,
    plan_jobs,
    prompt_plan,
    reusable_basis,
    reusable_run,
    run_state,
    update_manifest,
    validate,
    worker_share,
)

# ----------------------------------------------------------------------------------------------------
# Running the jobs

OUTCOMES = ("done", "resumed", "skipped", "reused")


def run_zeroshot(cfg: Any, run_dir: Path) -> dict:
    """Write a zero-shot folder: config.json (method "zeroshot"), then zeroshot.json (written last)."""
    from subpt import runs
    from subpt.backbone import load_backbone
    from subpt.evaluate import zero_shot_metrics
    from subpt.splits import prepare_data

    backbone = load_backbone(cfg.model, cfg.pretrained, cfg.device, seed=cfg.seed)
    splits = prepare_data(cfg, backbone, progress=False, augment=False)
    templates = [splits.task.template]
    zs = zero_shot_metrics(backbone, splits, templates)
    runs.clear_run(run_dir)  # the run's files only: the folder and the lock this sweep holds on it stay
    run_dir.mkdir(parents=True, exist_ok=True)
    runs.write_zeroshot_run(run_dir, cfg, zs, templates)
    return zs


def _train(cfg: Any, run_dir: Path, resume: bool) -> None:
    from subpt.train import train

    if resume:
        train(cfg, run_dir, resume=True, progress=False)
    else:
        train(cfg, run_dir, overwrite=True, progress=False)


def _summary(job: Job) -> str:
    from subpt import runs

    run = Path(job.run_dir)
    m = runs.read_zeroshot(run) if job.method == ZEROSHOT else runs.read_metrics(run)[-1]
    if m.get("novel_acc") is not None and m["novel_acc"] == m["novel_acc"]:
        return f"base {m['base_acc']:.2f}  novel {m['novel_acc']:.2f}  HM {m['hm']:.2f}"
    return f"acc {m['base_acc']:.2f}"


def run_job(
    s: SweepSettings, job: Job, restart_subpt: set[str], total: int, echo: Echo, prefix: str = ""
) -> str:
    """Claim one job (its run folder's lock, waiting while another sweep process holds it), then run, skip, resume
    or reuse it (copy the same finished run from another protocol's folder) and print its line; returns 'done',
    'resumed', 'skipped' or 'reused'. Concurrent sweeps on one folder so
    share the work: a job another process finished while this one waited is skipped."""
    from subpt import runs

    claim = runs.lock_run_dir(Path(job.run_dir), wait=True)
    try:
        return _run_claimed_job(s, job, restart_subpt, total, echo, prefix)
    finally:
        claim.close()


def _run_claimed_job(
    s: SweepSettings, job: Job, restart_subpt: set[str], total: int, echo: Echo, prefix: str = ""
) -> str:
    t0 = time.time()
    run = Path(job.run_dir)
    cfg = job_config(s, job)
    state, detail = run_state(s, job)
    if state == "conflict":
        raise SubptError(f"{run} already holds a run with other settings ({detail})")
    notes = []
    if job.method in STAGE1:
        bpath = basis_path(job)
        stage1 = str(run.parent / job.stage1_run)
        plan = s.basis_plan(job.dataset, job.shots)
        changed = bpath.is_file() and basis_window(bpath) != (plan.window, plan.rank)
        if stage1 in restart_subpt or changed or not bpath.is_file():
            from subpt import runs

            stage1_claim = runs.lock_run_dir(Path(stage1), wait=True)  # another sweep may still be training it
            try:
                reuse = reusable_basis(s, job, plan)
                if reuse is not None:  # the stage-1 run was copied from there: so is its basis
                    runs.copy_file(reuse, bpath)
                else:
                    plan.build(Path(stage1), bpath)
            finally:
                stage1_claim.close()
            notes.append(f"basis epochs 1-{plan.t}, r {plan.rank}" + (f" from {reuse}" if reuse else ""))
        if (stage1 in restart_subpt or changed) and state != "new":
            # The basis digest the run started with decides: a run another sweep trained from the basis just built
            # (from the same stage-1 run) is kept; a run started from an older basis restarts.
            state, detail = run_state(s, job)
            if state == "restart":
                detail = f"{job.stage1_run} was retrained" if stage1 in restart_subpt else "basis setting changed"
    source = reusable_run(s, job) if state != "finished" else None
    if state == "finished":
        outcome = "skipped"
    elif source is not None:  # another protocol's folder holds this very run, finished: copied, not trained again
        from subpt import runs

        runs.copy_run(source, run, None if job.method == ZEROSHOT else cfg)
        outcome = "reused"
        detail = f"copied from {source}"
    elif job.method == ZEROSHOT:
        run_zeroshot(cfg, run)
        outcome = "done"
    else:
        _train(cfg, run, resume=state == "resume")
        outcome = "resumed" if state == "resume" else "done"
        restart_subpt.add(str(run))
    if s.spec.is_transfer:
        cached, accs = 0, []
        for target in s.targets:
            before = cached_transfer(run, target)
            res = transfer_eval(run, target, s.root, cfg.device, options=s.options_for(target))
            cached += before is not None and before == res
            accs.append(res["acc"])
        if cached < len(s.targets):
            if outcome == "skipped":
                outcome = "done"
            notes.append(f"{len(s.targets) - cached} target(s) evaluated")
        notes.append(f"targets mean {sum(accs) / len(accs):.2f}")
    detail_txt = f", {detail}" if outcome != "skipped" and detail else ""
    what = {"done": "done", "resumed": "resumed", "skipped": "skipped (finished)", "reused": "reused"}[outcome]
    extra = f" [{'; '.join(notes)}]" if notes else ""
    echo(
        f"{prefix}[{job.index + 1}/{total}] {s.protocol} {job.name}: {what}{detail_txt} in {time.time() - t0:.1f} s "
        f"- {_summary(job)}{extra}"
    )
    return outcome


def run_jobs(s: SweepSettings, jobs: list[Job], total: int, echo: Echo, prefix: str = "") -> dict[str, int]:
    """Run jobs in order (a worker's share); returns counts per outcome."""
    counts = dict.fromkeys(OUTCOMES, 0)
    restarted: set[str] = set()
    for job in jobs:
        counts[run_job(s, job, restarted, total, echo, prefix)] += 1
    return counts


def describe_plan(s: SweepSettings, jobs: list[Job], workers: int) -> list[str]:
    """One line per job for --dry-run: state, epochs, basis window, worker."""
    owner = {j.index: w for w in range(workers) for j in worker_share(jobs, w, workers)}
    lines = []
    for j in jobs:
        state, detail = run_state(s, j)
        what = {"new": "run", "finished": "skip (finished)", "resume": "resume", "restart": "restart"}.get(
            state, state
        )
        source = reusable_run(s, j) if state in ("new", "resume", "restart") else None
        if source is not None:
            what, detail = "reuse", f"copy of {source}"
        info = []
        if j.method != ZEROSHOT:
            info.append(f"{s.epochs_for(j.dataset, j.shots)} epochs")
        if j.method in STAGE1:
            plan = s.basis_plan(j.dataset, j.shots)
            info.append(f"basis of {j.stage1_run}: epochs 1-{plan.t}, r {plan.rank}")
        if s.spec.is_transfer:
            info.append(f"-> {', '.join(s.targets)}")
        if detail:
            info.append(detail)
        w = f" (worker {owner[j.index]})" if workers > 1 else ""
        lines.append(f"[{j.index + 1}/{len(jobs)}] {s.protocol} {j.name}: {what}{w} - {'; '.join(info)}")
    return lines


def default_workers(device: str) -> int:
    """All visible GPUs for a CUDA sweep, one process otherwise."""
    if not device.startswith("cuda"):
        return 1
    import torch

    return max(1, torch.cuda.device_count())


def prepare_sweep(s: SweepSettings, echo: Echo, local: bool = True) -> list[Job]:
    """Check the settings and the output folder and plan the jobs (printing which stage-1 methods were added);
    `local` false: the jobs run elsewhere (a cluster), so this machine needs no GPU."""
    from subpt.runs import check_output_folder

    validate(s, local=local)
    check_output_folder(Path(s.out))
    _, added = expand_methods(s.methods)
    if added:
        echo(f"note: added {', '.join(added)}: SubPT builds its basis from that run of the same seed")
    for name, reason in prompt_plan(s)[1].items():
        echo(f"note: {name} left out: {reason}")
    return plan_jobs(s)


def summary_line(s: SweepSettings, jobs: list[Job], counts: dict[str, int], seconds: float) -> str:
    """The sweep's last line: jobs and outcomes."""
    reused = f", {counts['reused']} reused from another protocol's folder" if counts.get("reused") else ""
    return (
        f"{len(jobs)} jobs in {seconds:.0f} s: {counts['done']} done, {counts['resumed']} resumed, "
        f"{counts['skipped']} skipped{reused}. Table: subpt table {s.protocol_dir}"
    )


def run_sweep(s: SweepSettings, gpus: int | None = None, dry_run: bool = False, echo: Echo = print) -> dict:
    """Plan, check and run the sweep (in this process, or one worker process per GPU)."""
    validate(s)
    jobs = plan_jobs(s)
    workers = default_workers(s.device) if gpus is None else gpus
    if workers < 1:
        raise SubptError(f"--gpus must be at least 1, got {workers}")
    if s.device.startswith("cuda"):
        import torch

        if workers > torch.cuda.device_count():
            raise SubptError(f"--gpus {workers}: only {torch.cuda.device_count()} CUDA GPU(s) are visible")
    workers = min(workers, len(group_jobs(jobs)))
    jobs = prepare_sweep(s, echo)
    if dry_run:
        for line in describe_plan(s, jobs, workers):
            echo(line)
        return {"jobs": len(jobs), "workers": workers, "dry_run": True}
    check_conflicts(s, jobs)
    update_manifest(s, jobs)
    t0 = time.time()
    if workers == 1:
        counts = run_jobs(s, jobs, len(jobs), echo)
    else:
        counts = _run_workers(s, workers)
    echo(summary_line(s, jobs, counts, time.time() - t0))
    return {"jobs": len(jobs), "workers": workers, **counts}


def _run_workers(s: SweepSettings, workers: int) -> dict[str, int]:
    """One process per GPU (CUDA_VISIBLE_DEVICES=i), each running every N-th job group; wait for all.

    Workers print their job lines to the same terminal as they go and leave their counts in a file.
    """
    tag = f".sweep-{os.getpid()}"
    plan = s.protocol_dir / f"{tag}-plan.json"
    atomic_write_json(plan, asdict(s), mkdir=True, indent=2, sort_keys=True)
    procs = []
    try:
        for i in range(workers):
            env = {**os.environ, "SUBPT_SWEEP_WORKER": str(i)}
            if s.device.startswith("cuda"):
                env["CUDA_VISIBLE_DEVICES"] = str(i)
            cmd = [sys.executable, "-m", "subpt.experiments.sweep", str(plan), str(i), str(workers)]
            procs.append(subprocess.Popen(cmd, env=env))
        codes = [p.wait() for p in procs]
        failed = [(i, rc) for i, rc in enumerate(codes) if rc != 0]
        if failed:
            i, rc = failed[0]
            raise SubptError(
                f"sweep worker {i} failed (exit code {rc}; its error is printed above); finished runs are kept: "
                "run the same command again to resume"
            )
        counts = dict.fromkeys(OUTCOMES, 0)
        for i in range(workers):
            for k, v in json.loads(_counts_path(plan, i).read_text()).items():
                counts[k] += v
        return counts
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait()
        for i in range(workers):
            _counts_path(plan, i).unlink(missing_ok=True)
        plan.unlink(missing_ok=True)


def _counts_path(plan: Path, worker: int) -> Path:
    return plan.with_name(plan.name.replace("-plan.json", f"-counts{worker}.json"))


def worker_main(argv: list[str]) -> int:
    """Entry point of a worker process: `python -m subpt.experiments.sweep PLAN WORKER WORKERS`."""
    plan, worker, workers = Path(argv[0]), int(argv[1]), int(argv[2])
    s = SweepSettings(**json.loads(plan.read_text()))
    jobs = plan_jobs(s)
    mine = worker_share(jobs, worker, workers)
    gpu = f"GPU {worker}" if s.device.startswith("cuda") else f"worker {worker}"
    try:
        counts = run_jobs(s, mine, len(jobs), lambda line: print(line, flush=True), prefix=f"{gpu} ")
    except SubptError as e:
        print(f"{gpu} error: {' '.join(str(e).split())}", file=sys.stderr, flush=True)
        return 2
    atomic_write_json(_counts_path(plan, worker), counts, mkdir=True, indent=2, sort_keys=True)
    return 0


def settings_from_options(
    protocol: str,
    datasets: str | None,
    seeds: str,
    methods: str,
    shots: str | None,
    out: str,
    targets: str | None = None,
    **kw: Any,
) -> SweepSettings:
    """SweepSettings from the command line's comma-separated options and the protocol's defaults."""
    spec = get_protocol(protocol)
    return SweepSettings(
        protocol=protocol,
        datasets=parse_list(datasets, "datasets") or list(spec.datasets),
        seeds=parse_list(seeds, "seeds", int),
        methods=parse_list(methods, "methods"),
        shots=parse_list(shots, "shots", int) or list(spec.shots),
        out=str(out),
        targets=(parse_list(targets, "targets") or list(spec.targets))
        if spec.is_transfer
        else parse_list(targets, "targets"),
        **kw,
    )


def with_device(s: SweepSettings, device: str | None) -> SweepSettings:
    """The settings with --device resolved: cuda when a GPU is visible, else cpu."""
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return replace(s, device=device)


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
