"""`subpt sweep` and `subpt table`: run an evaluation protocol over datasets x seeds x methods, then
aggregate the run folders into the papers' tables. Wired in cli/subpt_app.py with
`app.command("sweep")(sweep)` and `app.command("table")(table)`."""

from __future__ import annotations

from pathlib import Path

import typer

from subpt.errors import SubptError
from subpt.experiments.protocols import PROTOCOLS
from subpt.experiments.sweep_plan import METHODS, SweepSettings

from .common import check_output_file, defaults_of, print_json, register_user_error, run_guarded
from .task_options import with_task_options

register_user_error(SubptError)
S = defaults_of(SweepSettings)  # the defaults of `subpt sweep`

PROTOCOL_NAMES = ", ".join(PROTOCOLS)


@run_guarded
@with_task_options
def sweep(
    protocol: str = typer.Option("base2novel", "--protocol", help=f"Evaluation protocol: {PROTOCOL_NAMES}."),
    datasets: str = typer.Option(
        None,
        "--datasets",
        "-d",
        help="Comma list of (source) datasets (default: the protocol's, e.g. CoOp's 11).",
    ),
    seeds: str = typer.Option("1,2,3", "--seeds", help="Comma list of seeds."),
    methods: str = typer.Option(",".join(METHODS), "--methods", help=f"Comma list of {', '.join(METHODS)}."),
    shots: str = typer.Option(None, "--shots", help="Comma list of shot counts (default: the protocol's)."),
    targets: str = typer.Option(
        None, "--targets", help="Transfer protocols: comma list of target datasets (default: the protocol's)."
    ),
    epochs: int = typer.Option(
        None, "--epochs", help="Training epochs (default: CoOp's schedule by shots; 100 for base2novel)."
    ),
    n_ctx: int = typer.Option(S("n_ctx"), "--n-ctx", help="Number of context vectors."),
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
) -> None:
    """Run an evaluation protocol over datasets x seeds x methods (skips finished runs, resumes interrupted ones)."""
    from subpt.experiments.sweep import run_sweep, settings_from_options, with_device

    options = dict(task_options or {})
    if test_per_class is not None:
        options["test_per_class"] = test_per_class
    settings = settings_from_options(
        protocol,
        datasets,
        seeds,
        methods,
        shots,
        str(out),
        targets,
        root=root,
        model=model,
        pretrained=pretrained,
        epochs=epochs,
        n_ctx=n_ctx,
        t_early=t_early,
        rank=rank,
        embedded_options=options,
    )
    run_sweep(with_device(settings, device), gpus=gpus, dry_run=dry_run, echo=lambda line: typer.echo(line))


@run_guarded
def table(
    roots: list[Path] = typer.Argument(..., help="Sweep folders: OUT/<protocol> (or OUT holding several)."),
    protocol: str = typer.Option(None, "--protocol", help=f"Only this protocol ({PROTOCOL_NAMES})."),
    out: Path = typer.Option(None, "--out", "-o", help="Write the tables as Markdown to this file."),
    csv_path: Path = typer.Option(None, "--csv", help="Write one CSV line per cell to this file."),
    published: bool = typer.Option(
        False,
        "--published",
        help="base2novel: add the published averages (ViT-B/16, 11 datasets) to compare with.",
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
