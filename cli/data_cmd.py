"""`subpt data ...`: commands about datasets on disk (mounted with app.add_typer(data_app, name="data"))."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from subpt.errors import SubptError

data_app = typer.Typer(
    help="Datasets on disk: verify a data root against CoOp's layouts.", no_args_is_help=True
)


@data_app.callback()
def _data() -> None:
    """Datasets on disk: verify a data root against CoOp's layouts."""


@data_app.command("check")
def check(
    root: Path = typer.Option(..., "--root", help="Data root holding one folder per dataset (CoOp's $DATA)."),
    dataset: str | None = typer.Option(
        None,
        "--dataset",
        help="Check only this dataset (registry name, or a dense benchmark: coco, voc, whose own root --root "
        "is); default: all 15 CoOp datasets.",
    ),
    shots: int = typer.Option(16, "--shots", help="Report classes with fewer training images than this."),
    decode: bool = typer.Option(
        False, "--decode", help="Fully decode every image (slower) instead of PIL's verify()."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON instead of a table."),
) -> None:
    """Check layout, split files, every image, counts per split/class and low-shot classes.

    Exit code 0: all checked datasets are fine; 1: a problem was found (or a named dataset, or every
    dataset, is missing); 2: the root does not exist or the arguments are wrong.
    """
    from subpt.data.check import check_root, checks_failed, format_report
    from subpt.data.dense_check import DENSE_DATASETS, check_dense

    try:
        if dataset in DENSE_DATASETS:
            if not root.is_dir():
                raise SubptError(f"data root {root} does not exist or is not a folder")
            checks = [check_dense(dataset, root, decode=decode)]
        else:
            checks = check_root(root, dataset, shots, decode=decode)
    except SubptError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    failed = checks_failed(checks, named=dataset is not None)
    if as_json:
        out = {
            "root": str(root),
            "shots": shots,
            "ok": not failed,
            "datasets": [c.to_dict() for c in checks],
        }
        typer.echo(json.dumps(out, indent=2))
    else:
        typer.echo(format_report(checks))
    raise typer.Exit(1 if failed else 0)
