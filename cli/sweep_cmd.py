"""`subpt sweep` and `subpt table`: run an evaluation protocol over datasets x seeds x methods, then
aggregate the run folders into the papers' tables. Wired in cli/subpt_app.py with
`app.command("sweep")(sweep)` and `app.command("table")(table)`."""

from __future__ import annotations

from pathlib import Path

import typer

from subpt.config import PROMPT_METHODS
from subpt.errors import SubptError
from subpt.experiments.launcher import ClusterOptions
from subpt.experiments.protocols import PROTOCOLS
from subpt.experiments.sweep_plan import METHODS, SweepSettings, parse_list, validate

from .common import check_output_file, defaults_of, print_json, register_user_error, run_guarded
from .task_options import with_task_options

register_user_error(SubptError)
S = defaults_of(SweepSettings)  # the defaults of `subpt sweep`
C = ClusterOptions()  # the defaults of its cluster options

PROTOCOL_NAMES = ", ".join(PROTOCOLS)


@run_guarded
@with_task_options
def sweep(
    protocol: str = typer.Option(
        "base2novel",
        "--protocol",
        help=f"Evaluation protocol(s), a comma list run in turn: {PROTOCOL_NAMES}. Runs the protocols share (the "
        "ImageNet runs of crossdataset and domaingen) are trained once.",
    ),
    datasets: str = typer.Option(
        None,
        "--datasets",
        "-d",
        help="Comma list of (source) datasets (default: the protocol's, e.g. CoOp's 11).",
    ),
    seeds: str = typer.Option("1,2,3", "--seeds", help="Comma list of seeds."),
    methods: str = typer.Option(
        ",".join(METHODS),
        "--methods",
        help=f"Comma list of the variants {', '.join(METHODS)} of every --method.",
    ),
    method: str = typer.Option(
        "coop",
        "--method",
        help=f"Comma list of prompt-learning methods ({', '.join(PROMPT_METHODS)}), each run with every variant "
        "of --methods in its own folders (docs/baselines.md); runs the trainer refuses (ProGrad+NFL) are left out.",
    ),
    method_lambda: float = typer.Option(
        None,
        "--method-lambda",
        help="Weight of the method's own term (one --method other than coop; default: its paper's).",
    ),
    shots: str = typer.Option(None, "--shots", help="Comma list of shot counts (default: the protocol's)."),
    targets: str = typer.Option(
        None, "--targets", help="Transfer protocols: comma list of target datasets (default: the protocol's)."
    ),
    epochs: int = typer.Option(
        None, "--epochs", help="Training epochs (default: CoOp's schedule by shots; 100 for base2novel)."
    ),
    n_ctx: int = typer.Option(S("n_ctx"), "--n-ctx", help="Number of context vectors."),
    aug_views: int = typer.Option(
        S("aug_views"),
        "--aug-views",
        help="Augmented training views per image, cached, one per epoch; 0: the test view only "
        "(default: 16; 0 for the embedded subpt-tiny).",
    ),
    t_early: int = typer.Option(
        None, "--t-early", help="SubPT window: epochs 1..t (default: the reference value)."
    ),
    rank: int = typer.Option(None, "--rank", help="SubPT basis rank r (default: the reference value)."),
    root: str = typer.Option(None, "--root", help="Data root of the real datasets (docs/datasets.md)."),
    model: str = typer.Option(
        S("model"), "--model", "-m", help="open_clip model name, or subpt-tiny (embedded)."
    ),
    pretrained: str = typer.Option(
        S("pretrained"),
        "--pretrained",
        "-p",
        help="open_clip pretrained tag, a checkpoint file, 'random' (drawn from each run's seed) or 'embedded'.",
    ),
    device: str = typer.Option(None, "--device", help="cpu or cuda (default: cuda when a GPU is visible)."),
    out: Path = typer.Option(Path("runs"), "--out", "-o", help="Sweep folder: runs go to OUT/<protocol>/..."),
    gpus: int = typer.Option(
        None, "--gpus", help="Worker processes, one per GPU (default: all visible GPUs; 1 on the CPU)."
    ),
    task_options: dict | None = None,
    test_per_class: int = typer.Option(
        None, "--test-per-class", hidden=True, help="Embedded world only: test images per class (fast tests)."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the job list with each job's state, run nothing."
    ),
    launcher: str = typer.Option(
        "local",
        "--launcher",
        help="local: run here (--gpus workers); slurm: one cluster job per run (submitit).",
    ),
    partition: str = typer.Option(None, "--partition", help="slurm: the partition to submit to."),
    gpus_per_job: int = typer.Option(C.gpus_per_job, "--gpus-per-job", help="slurm: GPUs of each job."),
    time_min: int = typer.Option(C.time_min, "--time", help="slurm: time limit of each job, in minutes."),
    array_size: int = typer.Option(
        C.array_size, "--array-size", help="slurm: at most this many jobs per array."
    ),
    max_running: int = typer.Option(
        None, "--max-running", help="slurm: at most this many jobs of an array at once (default: no limit)."
    ),
    cpus_per_job: int = typer.Option(None, "--cpus-per-job", help="slurm: CPUs of each job."),
    mem_gb: int = typer.Option(None, "--mem-gb", help="slurm: memory of each job, in GB."),
) -> None:
    """Run an evaluation protocol over datasets x seeds x methods (skips finished runs, resumes interrupted ones)."""
    from subpt.experiments.launcher import LAUNCHERS, ClusterOptions, launch_sweep
    from subpt.experiments.sweep import run_sweep, settings_from_options, with_device

    if launcher not in LAUNCHERS:
        raise SubptError(f"--launcher must be one of {', '.join(LAUNCHERS)}, got {launcher!r}")
    cluster = ClusterOptions(partition, gpus_per_job, time_min, array_size, max_running, cpus_per_job, mem_gb)
    if launcher == "local" and cluster != ClusterOptions():
        raise SubptError(
            "--partition, --gpus-per-job, --time, --array-size, --max-running, --cpus-per-job and "
            "--mem-gb apply to --launcher slurm only"
        )
    if launcher == "slurm" and gpus is not None:
        raise SubptError("--gpus applies to --launcher local; a cluster job asks for --gpus-per-job")

    options = dict(task_options or {})
    if test_per_class is not None:
        options["test_per_class"] = test_per_class
    protocols = parse_list(protocol, "protocol")
    if not protocols:
        raise SubptError("--protocol is empty")
    common = dict(
        root=root,
        model=model,
        pretrained=pretrained,
        epochs=epochs,
        n_ctx=n_ctx,
        aug_views=aug_views,
        t_early=t_early,
        rank=rank,
        embedded_options=options,
        prompt_methods=parse_list(method, "method"),
        method_lambda=method_lambda,
    )
    every = [
        settings_from_options(p, datasets, seeds, methods, shots, str(out), targets, **common)
        for p in protocols
    ]
    for settings in every:
        validate(settings, local=launcher == "local")
    # Every protocol is checked before any runs; they run in turn, so a later one reuses an earlier one's runs.
    for settings in every:
        if len(every) > 1:
            typer.echo(f"== {settings.protocol}")
        if launcher == "slurm":
            # The jobs run on the cluster's nodes: --device defaults to what each job asks for, not this machine's.
            job_device = device or ("cuda" if gpus_per_job > 0 else "cpu")
            launch_sweep(with_device(settings, job_device), cluster, dry_run=dry_run, echo=typer.echo)
        else:
            run_sweep(with_device(settings, device), gpus=gpus, dry_run=dry_run, echo=typer.echo)


@run_guarded
def table(
    roots: list[Path] = typer.Argument(..., help="Sweep folders: OUT/<protocol> (or OUT holding several)."),
    protocol: str = typer.Option(None, "--protocol", help=f"Only this protocol ({PROTOCOL_NAMES})."),
    out: Path = typer.Option(None, "--out", "-o", help="Write the tables as Markdown to this file."),
    csv_path: Path = typer.Option(None, "--csv", help="Write one CSV line per cell to this file."),
    published: bool = typer.Option(
        False,
        "--published",
        help="base2novel: print the published averages (ViT-B/16, CoOp's 11 datasets; METHOD.md section 5) in a "
        "table of their own beside the measured average, never mixed into it.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the tables as JSON instead of rich tables."),
) -> None:
    """Aggregate sweep run folders into the papers' tables (mean ± std over seeds; missing runs listed)."""
    from subpt.experiments.table import make_report, print_report, to_markdown, write_csv

    check_output_file(out, "--out")
    check_output_file(csv_path, "--csv")
    report = make_report(roots, protocol, published=published)
    try:
        if out is not None:
            out.write_text(to_markdown(report))
        if csv_path is not None:
            write_csv(report, csv_path)
    except OSError as e:
        raise SubptError(f"cannot write {e.filename}: {e.strerror}") from e
    if as_json:
        print_json(report)
    else:
        print_report(report)
        for path, what in ((out, "Markdown"), (csv_path, "CSV")):
            if path is not None:
                typer.echo(f"{what}: {path}")
