"""`subpt sweep --launcher slurm`: the sweep's jobs submitted to a cluster through submitit, one job per run.

A small component on top of the sweep: the plan (subpt.experiments.sweep_plan) gives the jobs, finished ones are
counted as skipped and not submitted, the others go to a submitit executor as one array, and each cluster job runs
its run with the sweep's own `run_job` (claim, skip, resume or train, transfer), so a cluster sweep means exactly
what a local one does. A SubPT job runs its stage-1 run first through the same claim: it waits while the stage-1 job
trains it, skips it when finished, and trains it when its own job has not started yet (that job then skips it).
Run folders are claimed with flock, so the sweep folder must live on a file system that supports it across nodes.

A job cut short (time limit, preemption, a crash, `scancel`) leaves its run's checkpoint; a timed-out or
preempted job is requeued by submitit and resumes from it, and the same command run again submits what is not
finished and resumes interrupted runs. The command waits for its jobs and reports the ones that failed.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from subpt.errors import SubptError
from subpt.experiments.sweep_plan import (
    STAGE1,
    Echo,
    Job,
    SweepSettings,
    check_conflicts,
    plan_jobs,
    run_state,
    update_manifest,
)

LAUNCHERS = ("local", "slurm")
CLUSTER_ENV = "SUBPT_SUBMITIT_CLUSTER"  # "local": run the submitted jobs as local processes (submitit's own)
# A run's outcome over all the jobs that touched it: the first of these any job reported.
OUTCOME_ORDER = ("done", "resumed", "reused", "skipped")


@dataclass(frozen=True)
class ClusterOptions:
    """What each cluster job asks for."""

    partition: str | None = None
    gpus_per_job: int = 1
    time_min: int = 24 * 60
    array_size: int = 1000  # at most this many tasks per Slurm array (most clusters' MaxArraySize is 1001)
    max_running: int | None = (
        None  # at most this many of an array's tasks at once (Slurm's %N); None: no limit
    )
    cpus_per_job: int | None = None
    mem_gb: int | None = None

    def check(self) -> None:
        """Raise a one-line SubptError for an impossible request."""
        checks = [
            (self.gpus_per_job >= 0, f"--gpus-per-job must be 0 or more, got {self.gpus_per_job}"),
            (self.time_min >= 1, f"--time must be at least 1 (minutes), got {self.time_min}"),
            (self.array_size >= 1, f"--array-size must be at least 1, got {self.array_size}"),
            (self.max_running is None or self.max_running >= 1, f"--max-running must be at least 1, got {self.max_running}"),
            (self.cpus_per_job is None or self.cpus_per_job >= 1, f"--cpus-per-job must be at least 1, got {self.cpus_per_job}"),
            (self.mem_gb is None or self.mem_gb >= 1, f"--mem-gb must be at least 1, got {self.mem_gb}"),
            (self.partition is None or bool(self.partition.strip()), "--partition is empty"),
        ]  # fmt: skip
        for ok, msg in checks:
            if not ok:
                raise SubptError(msg)


def job_dependencies(jobs: list[Job], job: Job) -> list[Job]:
    """The jobs a job needs finished before it, then the job itself: [stage-1 run, SubPT run] or [job]."""
    if job.method not in STAGE1:
        return [job]
    stage1 = [j for j in jobs if j.group == job.group and j.run == job.stage1_run]
    return [*stage1, job]


def pending_jobs(s: SweepSettings, jobs: list[Job]) -> list[Job]:
    """The jobs a cluster must run: all but finished runs (whose transfer results, for a transfer protocol, all
    exist). A SubPT job is pending with its stage-1 run, which may have to be retrained."""
    from subpt.experiments.protocols import cached_transfer

    def finished(job: Job) -> bool:
        if run_state(s, job)[0] != "finished":
            return False
        return (
            all(cached_transfer(Path(job.run_dir), t) is not None for t in s.targets)
            if s.spec.is_transfer
            else True
        )

    done = {j.index for j in jobs if finished(j)}
    return [j for j in jobs if any(d.index not in done for d in job_dependencies(jobs, j))]


def run_cluster_job(settings: dict[str, Any], index: int) -> dict[str, Any]:
    """The body of one cluster job: the sweep's run `index` (after its stage-1 run for SubPT), run as the local
    sweep runs it. Returns {"outcomes": {run folder: outcome}, "lines": the job lines it printed}."""
    from subpt.experiments.sweep import run_job

    os.environ.setdefault("SUBPT_SWEEP_WORKER", "cluster")  # a CUDA sweep uses the job's own GPU (cuda)
    s = SweepSettings(**settings)
    jobs = plan_jobs(s)
    if not 0 <= index < len(jobs):
        raise SubptError(f"sweep job {index} does not exist: the plan has {len(jobs)} jobs")
    lines: list[str] = []

    def echo(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    restarted: set[str] = set()
    outcomes = {}
    for job in job_dependencies(jobs, jobs[index]):
        outcomes[job.run_dir] = run_job(s, job, restarted, len(jobs), echo)
    return {"outcomes": outcomes, "lines": lines}


class ClusterJob:
    """The callable submitted per run. Requeued by submitit after a time-out or preemption; the run resumes from
    its checkpoint, as `subpt sweep` run again would."""

    def __call__(self, settings: dict[str, Any], index: int) -> dict[str, Any]:
        """Run the sweep's job `index`."""
        return run_cluster_job(settings, index)

    def checkpoint(self, settings: dict[str, Any], index: int) -> Any:
        """What submitit resubmits when the job is stopped: the same call (the run folder holds the progress)."""
        import submitit

        return submitit.helpers.DelayedSubmission(ClusterJob(), settings, index)


def cluster_kind() -> str:
    """'slurm', or 'local' when $SUBPT_SUBMITIT_CLUSTER says so; a one-line SubptError without submitit or Slurm."""
    try:
        import submitit
    except ModuleNotFoundError:
        raise SubptError(
            "--launcher slurm needs submitit: pip install submitit (or the slurm extra)"
        ) from None
    cluster = os.environ.get(CLUSTER_ENV) or "slurm"
    if cluster not in ("slurm", "local"):
        raise SubptError(f"${CLUSTER_ENV} must be slurm or local, got {cluster!r}")
    if cluster == "slurm" and submitit.AutoExecutor.which() != "slurm":
        raise SubptError(
            f"--launcher slurm: no Slurm here (sbatch is not on PATH); run on the cluster's login node, or set "
            f"{CLUSTER_ENV}=local to run the jobs as local processes"
        )
    return cluster


def make_executor(folder: Path, opts: ClusterOptions, name: str) -> Any:
    """A submitit executor for the sweep's jobs: Slurm, or local processes when $SUBPT_SUBMITIT_CLUSTER is 'local'."""
    import submitit

    executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=cluster_kind())
    params: dict[str, Any] = {"timeout_min": opts.time_min, "gpus_per_node": opts.gpus_per_job, "name": name,
                              "tasks_per_node": 1, "nodes": 1}  # fmt: skip
    if opts.cpus_per_job is not None:
        params["cpus_per_task"] = opts.cpus_per_job
    if opts.mem_gb is not None:
        params["mem_gb"] = opts.mem_gb
    if opts.partition:
        params["slurm_partition"] = opts.partition
    if opts.max_running is not None:
        params["slurm_array_parallelism"] = opts.max_running
    executor.update_parameters(**params)
    return executor


def log_folder(s: SweepSettings) -> Path:
    """Where submitit keeps the sweep's job files and logs: OUT/<protocol>/.submitit/<job id>/."""
    return s.protocol_dir / ".submitit"


def submit_jobs(
    s: SweepSettings, pending: list[Job], opts: ClusterOptions, executor: Any
) -> list[tuple[Job, Any]]:
    """Submit one cluster job per pending run, as arrays of at most --array-size; (job, submitit handle) pairs."""
    settings = asdict(s)
    submitted: list[tuple[Job, Any]] = []
    for start in range(0, len(pending), opts.array_size):
        chunk = pending[start : start + opts.array_size]
        with executor.batch():
            handles = [executor.submit(ClusterJob(), settings, j.index) for j in chunk]
        submitted += list(zip(chunk, handles))
    return submitted


def submit_and_wait(
    s: SweepSettings, jobs: list[Job], opts: ClusterOptions, echo: Echo, poll_s: float = 10.0
) -> dict[str, int]:
    """Submit the pending jobs (arrays of at most --array-size), wait for them, print their lines; returns counts
    per outcome over all runs. Failed jobs are one SubptError after every job has ended: finished runs are kept."""
    import submitit

    opts.check()
    pending = pending_jobs(s, jobs)
    pending_runs = {d.run_dir for j in pending for d in job_dependencies(jobs, j)}
    best = {j.run_dir: "skipped" for j in jobs if j.run_dir not in pending_runs}
    if not pending:
        return _count(best)
    folder = log_folder(s)
    executor = make_executor(folder, opts, name=f"subpt-{s.protocol}")
    submitted = submit_jobs(s, pending, opts, executor)
    echo(f"submitted {len(submitted)} job(s) ({executor.cluster}), logs in {folder}; waiting for them")
    failed: list[tuple[Job, str]] = []
    by_id = {id(h): j for j, h in submitted}
    for handle in submitit.helpers.as_completed([h for _, h in submitted], poll_frequency=poll_s):
        job = by_id[id(handle)]
        try:
            result = handle.result()
        except Exception as e:  # the job's error, as submitit reports it: its last line names it
            lines = [ln for ln in str(e).splitlines() if ln.strip()]
            failed.append((job, lines[-1] if lines else type(e).__name__))
            echo(f"job {handle.job_id} ({job.name}) failed: {failed[-1][1]}")
            continue
        for line in result["lines"]:
            echo(line)
        for run, outcome in result["outcomes"].items():
            old = best.get(run, "skipped")
            best[run] = min(old, outcome, key=OUTCOME_ORDER.index)
    if failed:
        job, why = failed[0]
        raise SubptError(
            f"{len(failed)} of {len(submitted)} cluster job(s) failed, first {job.name}: {why}; finished runs are "
            f"kept: run the same command again to resume (logs in {folder})"
        )
    return _count(best)


def _count(best: dict[str, str]) -> dict[str, int]:
    counts = dict.fromkeys(OUTCOME_ORDER, 0)
    for outcome in best.values():
        counts[outcome] += 1
    return counts


def launch_sweep(
    s: SweepSettings, opts: ClusterOptions, dry_run: bool = False, echo: Echo = print, poll_s: float = 10.0
) -> dict:
    """`subpt sweep --launcher slurm`: plan and check as a local sweep does, then submit the runs that are not
    finished and wait for them, looking every `poll_s` seconds (or, with `dry_run`, list what would be
    submitted)."""
    import time

    from subpt.experiments.sweep import describe_plan, prepare_sweep, summary_line

    opts.check()
    jobs = prepare_sweep(s, echo, local=False)
    if dry_run:
        pending = {j.index for j in pending_jobs(s, jobs)}
        for job, line in zip(jobs, describe_plan(s, jobs, 1)):
            echo(line + ("" if job.index in pending else " (not submitted)"))
        echo(
            f"would submit {len(pending)} cluster job(s): {opts.gpus_per_job} GPU(s), {opts.time_min} min each"
            + (f", partition {opts.partition}" if opts.partition else "")
        )
        return {"jobs": len(jobs), "submitted": len(pending), "dry_run": True}
    cluster_kind()  # no Slurm: stop before anything is written
    check_conflicts(s, jobs)
    update_manifest(s, jobs)
    t0 = time.time()
    counts = submit_and_wait(s, jobs, opts, echo, poll_s=poll_s)
    echo(summary_line(s, jobs, counts, time.time() - t0))
    return {"jobs": len(jobs), "launcher": "slurm", **counts}
