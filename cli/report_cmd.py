"""`subpt report` and `gradflow report`: the interpretability report as one self-contained HTML file.

Wire them into the apps with `register(subpt_app.app, gradflow_app.app)`, or add the two command functions
`subpt_report` and `gradflow_report` yourself under the name "report".
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gradflow.analysis import TrajectoryOptions
from subpt.errors import SubptError
from subpt.report.options import ReportOptions

from .common import check_output_file, defaults_of, print_json, register_user_error, run_guarded

register_user_error(SubptError)
R = defaults_of(ReportOptions)  # the defaults of `subpt report`
G = defaults_of(TrajectoryOptions)  # the defaults of `gradflow report`

OutOpt = Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")]
RankOpt = Annotated[
    int,
    typer.Option(
        "--rank", "-r", help="Rank of the early and late subspaces (capped by the rows of a window)."
    ),
]
EarlyOpt = Annotated[float, typer.Option("--early", help="Early window: this first fraction of the epochs.")]
LateOpt = Annotated[float, typer.Option("--late", help="Late window: this last fraction of the epochs.")]
EarlyWinOpt = Annotated[
    str | None,
    typer.Option("--early-window", help="Explicit early window, e.g. epochs:1-10 (overrides --early)."),
]
LateWinOpt = Annotated[
    str | None,
    typer.Option("--late-window", help="Explicit late window, e.g. epochs:91-100 (overrides --late)."),
]
WindowOpt = Annotated[
    int | None,
    typer.Option(
        "--window",
        help="Epochs per window of the rank-over-time and drift panels (default: about ten windows).",
    ),
]
SourceOpt = Annotated[
    str,
    typer.Option("--source", help="Trajectory stream: auto (gradients when recorded), grads or snapshots."),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines on stderr.")]
JsonOpt = Annotated[bool, typer.Option("--json", help='Print {"report": PATH} as JSON when done.')]


def _epochs(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError as e:
        raise SubptError(
            f"--epochs {text!r}: give comma-separated epoch numbers, e.g. 1,7,20 (0 = initialisation)"
        ) from e


def _done(out: Path, as_json: bool) -> None:
    if as_json:
        print_json({"report": str(out)})
    else:
        typer.echo(f"wrote {out}")


@run_guarded
def subpt_report(
    runs: Annotated[list[Path], typer.Argument(help="Run folders written by `subpt train --out RUN`.")],
    out: OutOpt = Path("report.html"),
    rank: RankOpt = R("rank"),
    early: EarlyOpt = R("early"),
    late: LateOpt = R("late"),
    early_window: EarlyWinOpt = R("early_window"),
    late_window: LateWinOpt = R("late_window"),
    window: WindowOpt = R("window"),
    source: SourceOpt = R("source"),
    epochs: Annotated[
        str | None,
        typer.Option(
            "--epochs", help="Epochs whose context is decoded, e.g. 1,7,20 (default: first, peak base, last)."
        ),
    ] = None,
    topk: Annotated[
        int, typer.Option("--topk", help="Nearest vocabulary tokens shown per context vector.")
    ] = R("topk"),
    metric: Annotated[
        str, typer.Option("--metric", help="Nearest tokens by cosine or euclidean distance.")
    ] = R("metric"),
    no_model: Annotated[
        bool,
        typer.Option(
            "--no-model", help="Skip the sections that load the model (decoded context, classes, cue)."
        ),
    ] = False,
    device: Annotated[
        str, typer.Option("--device", help="cpu or cuda (for the model-dependent sections).")
    ] = R("device"),
    max_classes: Annotated[
        int, typer.Option("--max-classes", help="Classes shown per group in the gains/losses figure.")
    ] = R("max_classes"),
    title: Annotated[str | None, typer.Option("--title", help="Report title.")] = R("title"),
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Interpretability report of one or more runs: accuracy vs zero-shot, gradient spectra, subspaces, decoded context, classes, cue."""
    from subpt.report.build import write_report

    check_output_file(out, "--out")
    path = write_report(
        runs,
        out,
        rank=rank,
        early=early,
        late=late,
        early_window=early_window,
        late_window=late_window,
        window=window,
        source=source,
        decode_epochs=_epochs(epochs),
        topk=topk,
        metric=metric,
        model=not no_model,
        device=device,
        max_classes=max_classes,
        title=title,
        progress=not quiet and not as_json,
    )
    _done(path, as_json)


@run_guarded
def gradflow_report(
    store: Annotated[
        str, typer.Argument(help="A trajectory store folder, or a run folder that contains trajectory/.")
    ],
    out: OutOpt = Path("report.html"),
    rank: RankOpt = G("rank"),
    early: EarlyOpt = G("early"),
    late: LateOpt = G("late"),
    early_window: EarlyWinOpt = G("early_window"),
    late_window: LateWinOpt = G("late_window"),
    window: WindowOpt = G("window"),
    source: SourceOpt = G("source"),
    title: Annotated[str | None, typer.Option("--title", help="Report title.")] = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Report on a bare trajectory: spectra of the early and late windows, effective rank, angles, drift, captured energy."""
    from gradflow.report import write_trajectory_report

    check_output_file(out, "--out")
    path = write_trajectory_report(
        store,
        out,
        rank=rank,
        early=early,
        late=late,
        early_window=early_window,
        late_window=late_window,
        window=window,
        source=source,
        title=title,
        progress=not quiet and not as_json,
    )
    _done(path, as_json)


def register(app_subpt: typer.Typer, app_gradflow: typer.Typer) -> None:
    """Add `report` to both apps."""
    app_subpt.command("report")(subpt_report)
    app_gradflow.command("report")(gradflow_report)
