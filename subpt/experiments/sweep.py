"""Run a protocol over datasets x shots x seeds x methods into one folder tree, resumably.

Layout: OUT/<protocol>/<dataset>/shots<K>/seed<S>/<method>/ with methods
  zeroshot   config.json (method "zeroshot") + zeroshot.json: zero-shot CLIP with the dataset's template
  coop       CoOp
  subpt      SubPT with the early basis of the same seed's coop run (seed<S>/basis_coop.pt)
  nfl        CoOp+NFL
  subpt_nfl  SubPT+NFL with the early basis of the same seed's nfl run (seed<S>/basis_nfl.pt)
Transfer protocols add RUN/transfer/<target>.json to every run. OUT/<protocol>/sweep.json lists every
job ever planned there, so `subpt table` can show the ones that are missing.

A run is finished when metrics.jsonl has `epochs` lines and the last one is evaluated; finished runs are
skipped, an interrupted one resumes from ckpt/last.pt (or restarts when there is none). Jobs of one
(dataset, shots, seed) run in order on one worker (coop -> basis -> subpt, nfl -> basis -> subpt_nfl);
with several GPUs, one worker process per GPU takes every N-th such group.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from gradflow.atomic import atomic_write_json
from subpt.errors import SubptError
from subpt.experiments.protocols import (
    ZEROSHOT,
    Protocol,
    cached_transfer,
    get_protocol,
    transfer_eval,
)

METHODS: tuple[str, ...] = ("zeroshot", "coop", "subpt", "nfl", "subpt_nfl")
METHOD_LABELS = {
    "zeroshot": "Zero-shot CLIP",
    "coop": "CoOp",
    "subpt": "SubPT",
    "nfl": "CoOp+NFL",
    "subpt_nfl": "SubPT+NFL",
}
# SubPT's basis comes from this method's run of the same seed.
STAGE1 = {"subpt": "coop", "subpt_nfl": "nfl"}
NFL_METHODS = ("nfl", "subpt_nfl")
# Settings that do not change a run's numbers, or are managed by the sweep itself.
NOT_MATERIAL = ("device", "root", "text_chunk", "basis")
MANIFEST = "sweep.json"

Echo = Callable[[str], None]


@dataclass
class SweepSettings:
    """Everything a sweep needs; serialisable, so worker processes get the same plan."""

    protocol: str
    datasets: list[str]
    seeds: list[int]
    methods: list[str]
    shots: list[int]
    out: str
    root: str | None = None
    model: str = "subpt-tiny"
    pretrained: str = "embedded"
    device: str = "cpu"
    epochs: int | None = None  # None: the protocol's default for (dataset, shots)
    n_ctx: int = 16
    t_early: int | None = None  # None: the reference value for the shots
    rank: int | None = None
    targets: list[str] = field(default_factory=list)  # transfer protocols
    embedded_options: dict[str, Any] = field(default_factory=dict)  # dataset options of embedded datasets

    @property
    def spec(self) -> Protocol:
        """The protocol's defaults."""
        return get_protocol(self.protocol)

    @property
    def protocol_dir(self) -> Path:
        """OUT/<protocol>."""
        return Path(self.out) / self.protocol

    def options_for(self, dataset: str) -> dict[str, Any]:
        """Dataset options for `dataset`: the embedded-world options apply to embedded datasets only."""
        from subpt.data.catalogue import needs_root

        return dict(self.embedded_options) if not needs_root(dataset) else {}

    def epochs_for(self, dataset: str, shots: int) -> int:
        """--epochs, or the protocol's default."""
        return self.epochs if self.epochs is not None else self.spec.default_epochs(dataset, shots)

    def basis_setting(self, dataset: str, shots: int) -> tuple[int, int]:
        """(t_early, r) of SubPT's basis: the reference values (or the overrides), fitted to the run length.

        The window is the ctx snapshots after epochs 1..t_early, so t_early is at most the number of
        epochs; centring t rows leaves t - 1 directions, and a rank that keeps them all selects nothing
        (gradflow refuses it), so r is at most t_early - 2.
        """
        from subpt.experiments.pipeline import reference_setting

        ref_t, ref_r = reference_setting(shots, self.spec.base_to_novel)
        t = min(self.t_early or ref_t, self.epochs_for(dataset, shots))
        r = min(self.rank or ref_r, t - 2)
        return t, r


@dataclass
class Job:
    """One run of the sweep."""

    index: int
    dataset: str
    shots: int
    seed: int
    method: str
    run_dir: str

    @property
    def group(self) -> tuple[str, int, int]:
        """Jobs of one (dataset, shots, seed) depend on each other and stay on one worker."""
        return (self.dataset, self.shots, self.seed)

    @property
    def name(self) -> str:
        """dataset/shotsK/seedS/method."""
        return f"{self.dataset}/shots{self.shots}/seed{self.seed}/{self.method}"


def parse_list(text: str | None, what: str, cast: type = str) -> list:
    """A comma-separated option as a list (empty items dropped); a bad item is a one-line error."""
    if text is None:
        return []
    out = []
    for item in (x.strip() for x in str(text).split(",")):
        if not item:
            continue
        try:
            out.append(cast(item))
        except ValueError as e:
            raise SubptError(f"--{what}: {item!r} is not a valid {cast.__name__}") from e
    return out


def expand_methods(methods: list[str]) -> tuple[list[str], list[str]]:
    """Methods in dependency order, with the CoOp run each SubPT variant needs added; (methods, added)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SubptError(f"--methods: unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    chosen = set(methods)
    added = [STAGE1[m] for m in STAGE1 if m in chosen and STAGE1[m] not in chosen]
    chosen |= set(added)
    return [m for m in METHODS if m in chosen], added


def validate(s: SweepSettings) -> None:
    """Check the settings before anything runs or is written."""
    from subpt.data.catalogue import dataset_names, needs_root

    spec = s.spec
    known = dataset_names()
    if not s.datasets:
        raise SubptError("--datasets is empty")
    if not s.seeds:
        raise SubptError("--seeds is empty")
    if not s.methods:
        raise SubptError("--methods is empty")
    if not s.shots:
        raise SubptError("--shots is empty")
    if s.targets and not spec.is_transfer:
        raise SubptError(f"--targets only applies to the transfer protocols, not {s.protocol}")
    if spec.is_transfer and not s.targets:
        raise SubptError(f"protocol {s.protocol} needs at least one target dataset (--targets)")
    for d in [*s.datasets, *s.targets]:
        if d not in known:
            raise SubptError(f"unknown dataset {d!r}; known datasets: {', '.join(known)}")
        if needs_root(d) and s.root is None:
            raise SubptError(f"dataset {d!r} reads files: pass --root DIR (see docs/datasets.md)")
    if any(k < 1 for k in s.shots):
        raise SubptError(f"--shots must be at least 1, got {s.shots}")
    if s.epochs is not None and s.epochs < 1:
        raise SubptError(f"--epochs must be at least 1, got {s.epochs}")
    if s.embedded_options and all(needs_root(d) for d in [*s.datasets, *s.targets]):
        raise SubptError("the embedded-world options (--cue, --noise, --n-classes, ...) apply to the embedded world only")
    if s.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise SubptError("--device cuda: no CUDA GPU is visible; use --device cpu")
    if any(m in STAGE1 for m in s.methods):
        for d in s.datasets:
            for k in s.shots:
                t, r = s.basis_setting(d, k)
                if t < 3 or r < 1:
                    raise SubptError(
                        f"SubPT on {d} with {k} shots: its basis needs CoOp runs of at least 3 epochs "
                        f"(t_early {t}, rank {r}); raise --epochs or --t-early"
                    )


def plan_jobs(s: SweepSettings) -> list[Job]:
    """The job list: datasets x shots x seeds, and within each, the methods in dependency order."""
    methods, _ = expand_methods(s.methods)
    jobs = []
    for d in s.datasets:
        for k in s.shots:
            for seed in s.seeds:
                for m in methods:
                    run = s.protocol_dir / d / f"shots{k}" / f"seed{seed}" / m
                    jobs.append(Job(len(jobs), d, k, seed, m, str(run)))
    return jobs


def group_jobs(jobs: list[Job]) -> list[list[Job]]:
    """Jobs grouped by (dataset, shots, seed), in list order."""
    groups: dict[tuple[str, int, int], list[Job]] = {}
    for j in jobs:
        groups.setdefault(j.group, []).append(j)
    return list(groups.values())


def worker_share(jobs: list[Job], worker: int, workers: int) -> list[Job]:
    """The jobs of worker `worker` of `workers`: every N-th (dataset, shots, seed) group."""
    return [j for g in group_jobs(jobs)[worker::workers] for j in g]


def basis_path(job: Job) -> Path:
    """The basis file SubPT (or SubPT+NFL) of this job's seed uses."""
    return Path(job.run_dir).parent / f"basis_{STAGE1[job.method]}.pt"


def job_config(s: SweepSettings, job: Job) -> Any:
    """The TrainConfig of a job (for zeroshot: the settings its zero-shot evaluation uses)."""
    from subpt.config import TrainConfig

    spec = s.spec
    device = "cuda" if s.device.startswith("cuda") and os.environ.get("SUBPT_SWEEP_WORKER") else s.device
    common = dict(
        dataset=job.dataset,
        root=s.root,
        dataset_options=s.options_for(job.dataset),
        model=s.model,
        pretrained=s.pretrained,
        shots=job.shots,
        seed=job.seed,
        subsample=spec.subsample,
        device=device,
    )
    if job.method == ZEROSHOT:  # training settings left at their defaults: they do not change zero-shot numbers
        return TrainConfig(**common)
    return TrainConfig(
        **common,
        n_ctx=s.n_ctx,
        epochs=s.epochs_for(job.dataset, job.shots),
        nfl=job.method in NFL_METHODS,
        nfl_names=spec.nfl_names,
        basis=str(basis_path(job)) if job.method in STAGE1 else None,
    )


def _material(d: dict) -> dict:
    out = {k: v for k, v in d.items() if k not in NOT_MATERIAL}
    out["basis"] = bool(d.get("basis"))
    return out


def run_state(s: SweepSettings, job: Job) -> tuple[str, str]:
    """(state, detail): 'new', 'finished', 'resume', 'restart' or 'conflict' (other settings in the folder)."""
    from subpt import runs

    run = Path(job.run_dir)
    if not runs.config_path(run).is_file():
        return "new", ""
    cfg = job_config(s, job)
    try:
        saved, marker = runs.read_run_config(run)
    except SubptError as e:
        return "restart", f"unreadable config ({e})"
    if (marker == ZEROSHOT) != (job.method == ZEROSHOT):
        return "conflict", "holds a run of another method"
    if _material(saved.to_dict()) != _material(cfg.to_dict()):
        diff = [k for k, v in _material(cfg.to_dict()).items() if _material(saved.to_dict()).get(k) != v]
        return "conflict", "settings differ: " + ", ".join(
            f"{k} {getattr(saved, k)!r} -> {getattr(cfg, k)!r}" for k in diff
        )
    if job.method == ZEROSHOT:
        return ("finished", "") if runs.has_zeroshot(run) else ("restart", "no zeroshot.json")
    metrics = runs.read_metrics(run)
    if runs.basis_changed(run, cfg):
        return "restart", "basis file changed"
    if runs.is_finished(metrics, cfg.epochs):
        return "finished", ""
    done = len(metrics)
    if runs.can_resume(run, cfg):
        return "resume", f"from epoch {done}/{cfg.epochs}"
    return "restart", f"interrupted at epoch {done}/{cfg.epochs}"


def check_conflicts(s: SweepSettings, jobs: list[Job]) -> None:
    """Refuse to touch run folders that hold runs with other settings."""
    bad = [(j, detail) for j in jobs for state, detail in [run_state(s, j)] if state == "conflict"]
    if bad:
        j, detail = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise SubptError(
            f"{j.run_dir} already holds a run with other settings ({detail}){more}: "
            "choose another --out, or delete those runs"
        )


def update_manifest(s: SweepSettings, jobs: list[Job]) -> Path:
    """Merge this sweep's jobs and targets into OUT/<protocol>/sweep.json."""
    path = s.protocol_dir / MANIFEST
    old: dict[str, Any] = {}
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            old = {}
    keys = {tuple(k) for k in old.get("jobs", [])}
    keys |= {(j.dataset, j.shots, j.seed, j.method) for j in jobs}
    targets = dict(old.get("targets", {}))
    for d in s.datasets:
        targets[d] = list(dict.fromkeys([*targets.get(d, []), *s.targets]))
    manifest = {
        "protocol": s.protocol,
        "jobs": sorted(list(k) for k in keys),
        "targets": targets if s.spec.is_transfer else {},
        "last_settings": asdict(s),
    }
    atomic_write_json(path, manifest, mkdir=True, indent=2, sort_keys=True)
    return path


# ----------------------------------------------------------------------------------------------------
# Running the jobs


def run_zeroshot(cfg: Any, run_dir: Path) -> dict:
    """Write a zero-shot folder: config.json (method "zeroshot"), then zeroshot.json (written last)."""
    from subpt import runs
    from subpt.backbone import load_backbone
    from subpt.evaluate import zero_shot_metrics
    from subpt.splits import prepare_data

    backbone = load_backbone(cfg.model, cfg.pretrained, cfg.device)
    splits = prepare_data(cfg, backbone, progress=False)
    templates = [splits.task.template]
    zs = zero_shot_metrics(backbone, splits, templates)
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    runs.write_zeroshot_run(run_dir, cfg, zs, templates)
    return zs


def basis_window(path: Path) -> tuple[str | None, int | None]:
    """(window, rank) a basis file was built with; (None, None) when it cannot be read."""
    from gradflow.subspace import Basis

    try:
        meta = Basis.load(path).metadata
    except Exception:
        return None, None
    return meta.get("window"), meta.get("rank")


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
    """Run (or skip, or resume) one job and print its line; returns 'done', 'resumed' or 'skipped'."""
    from subpt.experiments.pipeline import run_basis

    t0 = time.time()
    run = Path(job.run_dir)
    cfg = job_config(s, job)
    state, detail = run_state(s, job)
    if state == "conflict":
        raise SubptError(f"{run} already holds a run with other settings ({detail})")
    notes = []
    if job.method in STAGE1:
        bpath = basis_path(job)
        stage1 = str(run.parent / STAGE1[job.method])
        t, r = s.basis_setting(job.dataset, job.shots)
        changed = bpath.is_file() and basis_window(bpath) != (f"epochs:1-{t}", r)
        if stage1 in restart_subpt or changed or not bpath.is_file():
            run_basis(Path(stage1), f"epochs:1-{t}", r, bpath, source="snapshots")
            notes.append(f"basis epochs 1-{t}, r {r}")
        if (stage1 in restart_subpt or changed) and state != "new":
            retrained = f"{STAGE1[job.method]} was retrained"
            state, detail = "restart", retrained if stage1 in restart_subpt else "basis setting changed"
    if state == "finished":
        outcome = "skipped"
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
    what = {"done": "done", "resumed": "resumed", "skipped": "skipped (finished)"}[outcome]
    extra = f" [{'; '.join(notes)}]" if notes else ""
    echo(
        f"{prefix}[{job.index + 1}/{total}] {s.protocol} {job.name}: {what}{detail_txt} in {time.time() - t0:.1f} s "
        f"- {_summary(job)}{extra}"
    )
    return outcome


def run_jobs(s: SweepSettings, jobs: list[Job], total: int, echo: Echo, prefix: str = "") -> dict[str, int]:
    """Run jobs in order (a worker's share); returns counts per outcome."""
    counts = {"done": 0, "resumed": 0, "skipped": 0}
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
        info = []
        if j.method != ZEROSHOT:
            info.append(f"{s.epochs_for(j.dataset, j.shots)} epochs")
        if j.method in STAGE1:
            t, r = s.basis_setting(j.dataset, j.shots)
            info.append(f"basis of {STAGE1[j.method]}: epochs 1-{t}, r {r}")
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


def run_sweep(s: SweepSettings, gpus: int | None = None, dry_run: bool = False, echo: Echo = print) -> dict:
    """Plan, check and run the sweep (in this process, or one worker process per GPU)."""
    validate(s)
    methods, added = expand_methods(s.methods)
    jobs = plan_jobs(s)
    workers = default_workers(s.device) if gpus is None else gpus
    if workers < 1:
        raise SubptError(f"--gpus must be at least 1, got {workers}")
    if s.device.startswith("cuda"):
        import torch

        if workers > torch.cuda.device_count():
            raise SubptError(f"--gpus {workers}: only {torch.cuda.device_count()} CUDA GPU(s) are visible")
    workers = min(workers, len(group_jobs(jobs)))
    if added:
        echo(f"note: added {', '.join(added)}: SubPT builds its basis from that run of the same seed")
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
    echo(
        f"{len(jobs)} jobs in {time.time() - t0:.0f} s: {counts['done']} done, {counts['resumed']} resumed, "
        f"{counts['skipped']} skipped. Table: subpt table {s.protocol_dir}"
    )
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
        counts = {"done": 0, "resumed": 0, "skipped": 0}
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
