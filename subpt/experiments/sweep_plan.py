"""The plan of a sweep: its settings, its jobs in dependency order, and the state of each job's run folder.

Layout: OUT/<protocol>/<dataset>/shots<K>/seed<S>/<run>/ with runs (the variants of --methods)
  zeroshot   config.json (method "zeroshot") + zeroshot.json: zero-shot CLIP with the dataset's template
  coop       CoOp
  subpt      SubPT with the early basis of the same seed's coop run (seed<S>/basis_coop.pt)
  nfl        CoOp+NFL
  subpt_nfl  SubPT+NFL with the early basis of the same seed's nfl run (seed<S>/basis_nfl.pt)
and, for every other prompt-learning method P of --method (subpt.config.PROMPT_METHODS, e.g. kgcoop), the same
variants under names that carry P, so that methods never share a folder (`run_name`):
  P, subpt_P (basis_P.pt), P_nfl, subpt_P_nfl (basis_P_nfl.pt); zeroshot is one run for every method.
Transfer protocols add RUN/transfer/<target>.json to every run. OUT/<protocol>/sweep.json lists every
job ever planned there, so `subpt table` can show the ones that are missing.

A run is finished when subpt.runs says so (every epoch done, the last evaluated) with the same settings
and basis content; finished runs are skipped, an interrupted one resumes from ckpt/last.pt (or restarts
when there is none), and a run that another protocol's folder under the same OUT holds, finished with the same
settings (the transfer protocols' ImageNet runs), is copied instead of trained again (`reusable_run`).
`subpt.experiments.sweep` runs the plan, here or (`subpt.experiments.launcher`) as cluster jobs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gradflow.atomic import atomic_write_json
from subpt.basis_plan import BasisPlan
from subpt.errors import SubptError
from subpt.experiments.protocols import (
    ZEROSHOT,
    Protocol,
    get_protocol,
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
# The run folder of each variant for a prompt-learning method other than CoOp (P: its key in PROMPT_METHODS).
_PROMPT_RUN_NAMES = {"coop": "{p}", "subpt": "subpt_{p}", "nfl": "{p}_nfl", "subpt_nfl": "subpt_{p}_nfl"}
# Settings that do not change a run's numbers, or are managed by the sweep itself.
NOT_MATERIAL = ("device", "root", "text_chunk", "basis")
MANIFEST = "sweep.json"

Echo = Callable[[str], None]


def run_name(variant: str, prompt: str = "coop") -> str:
    """The run folder of a variant (coop, subpt, nfl, subpt_nfl, zeroshot) of a prompt-learning method: CoOp's
    keep their names, another method's carry its key (kgcoop, subpt_kgcoop, kgcoop_nfl, subpt_kgcoop_nfl)."""
    if prompt == "coop" or variant == ZEROSHOT:
        return variant
    return _PROMPT_RUN_NAMES[variant].format(p=prompt)


def run_names() -> dict[str, tuple[str, str]]:
    """Every run folder name a sweep can write -> (variant, prompt method), in table order: zero-shot, then each
    prompt method of subpt.config.PROMPT_METHODS with its variants."""
    from subpt.config import PROMPT_METHODS

    out = {ZEROSHOT: (ZEROSHOT, "coop")}
    for p in PROMPT_METHODS:
        for v in METHODS[1:]:
            out[run_name(v, p)] = (v, p)
    return out


def run_label(name: str) -> str:
    """The display name of a run folder: Zero-shot CLIP, CoOp, SubPT+NFL, KgCoOp, SubPT(KgCoOp)+NFL, ..."""
    from subpt.config import PROMPT_METHODS

    variant, prompt = run_names().get(name, (name, "coop"))
    if prompt == "coop" or variant == ZEROSHOT:
        return METHOD_LABELS.get(variant, name)
    base = PROMPT_METHODS[prompt][0]
    label = f"SubPT({base})" if variant in STAGE1 else base
    return label + ("+NFL" if variant in NFL_METHODS else "")


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
    aug_views: int | None = None  # None: the model's default (subpt.config.default_aug_views)
    t_early: int | None = None  # None: the reference value for the shots
    rank: int | None = None
    targets: list[str] = field(default_factory=list)  # transfer protocols
    embedded_options: dict[str, Any] = field(default_factory=dict)  # dataset options of embedded datasets
    prompt_methods: list[str] = field(default_factory=lambda: ["coop"])  # --method: keys of PROMPT_METHODS
    method_lambda: float | None = None  # --method-lambda (one method other than CoOp only)

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

    def basis_plan(self, dataset: str, shots: int) -> BasisPlan:
        """SubPT's basis: the reference plan (or the overrides) for the run length, its rank capped by the window.

        The window is the ctx snapshots after epochs 1..t_early, so t_early is at most the number of
        epochs; centring t rows leaves t - 1 directions, and a rank that keeps them all selects nothing
        (gradflow refuses it), so r is at most t_early - 2.
        """
        epochs = self.epochs_for(dataset, shots)
        return BasisPlan.reference(epochs, shots, self.spec.base_to_novel, self.t_early, self.rank).capped()


@dataclass
class Job:
    """One run of the sweep."""

    index: int
    dataset: str
    shots: int
    seed: int
    method: str  # the variant: zeroshot, coop, subpt, nfl or subpt_nfl
    run_dir: str
    prompt: str = "coop"  # the prompt-learning method (subpt.config.PROMPT_METHODS)

    @property
    def group(self) -> tuple[str, int, int]:
        """Jobs of one (dataset, shots, seed) depend on each other and stay on one worker."""
        return (self.dataset, self.shots, self.seed)

    @property
    def name(self) -> str:
        """dataset/shotsK/seedS/run (the run folder's name)."""
        return f"{self.dataset}/shots{self.shots}/seed{self.seed}/{self.run}"

    @property
    def run(self) -> str:
        """The run folder's name: coop, subpt_nfl, kgcoop, subpt_kgcoop_nfl, ... (see `run_name`)."""
        return run_name(self.method, self.prompt)

    @property
    def stage1_run(self) -> str:
        """The run folder's name of the run a SubPT job takes its basis from (same prompt method, same seed)."""
        return run_name(STAGE1[self.method], self.prompt)


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


def prompt_plan(s: SweepSettings) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """The (prompt method, variant) pairs the sweep runs, and for each run the trainer refuses (ProGrad with NFL,
    ...) its folder name -> the trainer's own one-line reason (TrainConfig.validate_method)."""
    from subpt.config import TrainConfig

    variants, _ = expand_methods(s.methods)
    pairs, refused = [], {}
    for p in s.prompt_methods:
        for v in variants:
            if v == ZEROSHOT:
                continue
            try:
                TrainConfig(prompt_method=p, method_lambda=_lambda(s, p), nfl=v in NFL_METHODS).validate_method()
            except SubptError as e:
                refused[run_name(v, p)] = str(e)
                continue
            pairs.append((p, v))
    return pairs, refused


def _lambda(s: SweepSettings, prompt: str) -> float | None:
    return None if prompt == "coop" else s.method_lambda


def validate_prompt_methods(s: SweepSettings) -> None:
    """Check --method and --method-lambda: known methods (subpt.config.PROMPT_METHODS), no repeats, a lambda for
    exactly one method other than CoOp; a method none of whose runs the trainer accepts is refused."""
    from subpt.config import PROMPT_METHODS, TrainConfig

    if not s.prompt_methods:
        raise SubptError("--method is empty")
    for p in s.prompt_methods:
        if p not in PROMPT_METHODS:
            raise SubptError(f"--method: unknown method {p!r}; choose from {', '.join(PROMPT_METHODS)}")
    if len(set(s.prompt_methods)) != len(s.prompt_methods):
        raise SubptError(f"--method lists a method twice: {','.join(s.prompt_methods)}")
    if s.method_lambda is not None:
        if len(s.prompt_methods) != 1 or s.prompt_methods[0] == "coop":
            raise SubptError("--method-lambda weighs one baseline's own term: give exactly one --method other than coop")
        TrainConfig(prompt_method=s.prompt_methods[0], method_lambda=s.method_lambda).validate_method()
    pairs, refused = prompt_plan(s)
    trained = {p for p, _ in pairs}
    for p in s.prompt_methods:
        mine = [(n, r) for n, r in refused.items() if run_names()[n][1] == p]
        if p not in trained and mine:
            name, reason = mine[0]
            raise SubptError(f"--method {p} --methods {','.join(s.methods)}: nothing left to run ({name}: {reason})")


def validate(s: SweepSettings, local: bool = True) -> None:
    """Check the settings before anything runs or is written (`local` false: the runs go to a cluster, so a CUDA
    sweep needs no GPU here)."""
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
    validate_prompt_methods(s)
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
    if s.aug_views is not None and s.aug_views < 0:
        raise SubptError(f"--aug-views must be 0 (the test view only) or a number of views such as 16, got {s.aug_views}")
    if s.embedded_options and all(needs_root(d) for d in [*s.datasets, *s.targets]):
        raise SubptError("the embedded-world options (--cue, --noise, --n-classes, ...) apply to the embedded world only")
    if s.device.startswith("cuda") and local:
        import torch

        if not torch.cuda.is_available():
            raise SubptError("--device cuda: no CUDA GPU is visible; use --device cpu")
    if any(m in STAGE1 for m in s.methods):
        for d in s.datasets:
            for k in s.shots:
                plan = s.basis_plan(d, k)
                t, r = plan.t, plan.rank
                if t < 3 or r < 1:
                    raise SubptError(
                        f"SubPT on {d} with {k} shots: its basis needs CoOp runs of at least 3 epochs "
                        f"(t_early {t}, rank {r}); raise --epochs or --t-early"
                    )


def plan_jobs(s: SweepSettings) -> list[Job]:
    """The job list: datasets x shots x seeds, and within each, zero-shot then every prompt method's variants in
    dependency order (the pairs the trainer refuses left out, see `prompt_plan`)."""
    methods, _ = expand_methods(s.methods)
    pairs, _ = prompt_plan(s)
    units = [(ZEROSHOT, "coop")] if ZEROSHOT in methods else []
    units += [(v, p) for p, v in pairs]
    jobs = []
    for d in s.datasets:
        for k in s.shots:
            for seed in s.seeds:
                for v, p in units:
                    run = s.protocol_dir / d / f"shots{k}" / f"seed{seed}" / run_name(v, p)
                    jobs.append(Job(len(jobs), d, k, seed, v, str(run), p))
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
    return Path(job.run_dir).parent / f"basis_{job.stage1_run}.pt"


def job_config(s: SweepSettings, job: Job) -> Any:
    """The TrainConfig of a job (for zeroshot: the settings its zero-shot evaluation uses)."""
    from subpt.config import TrainConfig, method_presets

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
        return TrainConfig(**common, aug_views=0)  # zero-shot sees no training view
    # A method with published training settings (CoCoOp) trains with them, not with the protocol's CoOp ones
    trained = {"n_ctx": s.n_ctx, "epochs": s.epochs_for(job.dataset, job.shots)} | method_presets(job.prompt, set())
    return TrainConfig(
        **common,
        **trained,
        aug_views=s.aug_views,
        prompt_method=job.prompt,
        method_lambda=_lambda(s, job.prompt),
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


def sibling_runs(s: SweepSettings, job: Job) -> list[Path]:
    """The same job's folders in the sweep's other protocol folders (OUT/<other>/<dataset>/shots<K>/seed<S>/<m>)
    that hold a run: the transfer protocols (and few-shot ImageNet) train the very same source runs."""
    from subpt import runs

    return [p for p in _sibling_paths(s, job) if runs.holds_run(p)]


def _sibling_paths(s: SweepSettings, job: Job) -> list[Path]:
    from subpt.experiments.protocols import PROTOCOLS

    rel = Path(job.run_dir).relative_to(s.protocol_dir)
    return [Path(s.out) / name / rel for name in PROTOCOLS if name != s.protocol]


def reusable_run(s: SweepSettings, job: Job) -> Path | None:
    """A finished run of another protocol's folder with this job's settings (the basis file's content included),
    which this job can copy instead of training it again; None when there is none."""
    from subpt import runs

    cfg = job_config(s, job)
    for src in sibling_runs(s, job):
        try:
            saved, marker = runs.read_run_config(src)
            if (marker == ZEROSHOT) != (job.method == ZEROSHOT) or _material(saved.to_dict()) != _material(
                cfg.to_dict()
            ):
                continue
            if job.method == ZEROSHOT:
                if runs.has_zeroshot(src):
                    return src
                continue
            if not runs.is_finished(runs.read_metrics(src), cfg.epochs):
                continue
        except SubptError:  # a damaged folder elsewhere is that sweep's business, not a reason to stop this one
            continue
        if cfg.basis and runs.saved_stamp(src).get("basis_sha256") != cfg.basis_sha256():
            continue
        return src
    return None


def basis_window(path: Path) -> tuple[str | None, int | None]:
    """(window, rank) a basis file was built with; (None, None) when it cannot be read."""
    from gradflow.subspace import Basis

    try:
        meta = Basis.load(path).metadata
    except Exception:
        return None, None
    return meta.get("window"), meta.get("rank")


def reusable_basis(s: SweepSettings, job: Job, plan: BasisPlan) -> Path | None:
    """Another protocol folder's basis file for this SubPT job that this job can copy instead of building it: same
    window and rank, built from a stage-1 run whose context after every epoch of the window equals this job's
    stage-1 run's (it was copied from there, see reusable_run); None when there is none."""
    import torch

    from subpt import runs

    ours = Path(job.run_dir).parent / job.stage1_run
    for sibling in _sibling_paths(s, job):
        theirs = sibling.parent / job.stage1_run
        candidate = sibling.parent / basis_path(job).name
        if not candidate.is_file() or basis_window(candidate) != (plan.window, plan.rank):
            continue
        try:
            same = all(
                torch.equal(runs.load_ctx(ours, e)[0], runs.load_ctx(theirs, e)[0]) for e in range(plan.lo, plan.hi + 1)
            )
        except SubptError:
            continue
        if same:
            return candidate
    return None


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
    keys |= {(j.dataset, j.shots, j.seed, j.run) for j in jobs}
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
