"""`gradflow` command line: spectra of trajectory windows, bases, and subspace comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from gradflow.errors import GradflowError
from gradflow.spectrum import Spectrum
from gradflow.subspace import Basis, captured_energy, grassmann_distance, overlap, principal_angles
from gradflow.trajectory import STREAMS, TrajectoryStore
from gradflow.windowbasis import basis_metadata, window_spectrum
from gradflow.windows import Window

from .common import check_output_file, fail, print_json, run_app, run_guarded
from .report_cmd import gradflow_report

app = typer.Typer(
    name="gradflow",
    help="Analyse recorded gradient trajectories: spectra, subspace bases and their comparison.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

RunArg = Annotated[
    str, typer.Argument(help="A trajectory store folder, or a run folder that contains trajectory/.")
]
SourceOpt = Annotated[
    str, typer.Option("--source", help="Stream to analyse: grads (per-step gradients) or snapshots.")
]
CenterOpt = Annotated[bool, typer.Option("--center", help="Remove the mean row before the SVD.")]
MethodOpt = Annotated[
    str, typer.Option("--method", help="SVD method: auto, exact or randomized (streaming).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]


def _spectrum_summary(
    store: TrajectoryStore, source: str, win: Window, spec: Spectrum, r: int
) -> dict[str, Any]:
    """The numbers printed by `gradflow spectrum`."""
    return {
        "store": str(store.path),
        "source": source,
        "window": win.text,
        "resolved_window": str(win),
        "rows": spec.n_rows,
        "dim": spec.dim,
        "method": spec.method,
        "centered": spec.centered,
        "rank": r,
        "singular_values": spec.singular_values[: max(r, min(10, spec.k))],
        "explained_variance_ratio": spec.explained_variance_ratio[:r],
        "explained_variance_top_r": float(spec.explained_variance_ratio[:r].sum()),
        "cumulative_energy_at_r": float(spec.cumulative_energy[r - 1]),
        "effective_rank_entropy": spec.effective_rank_entropy,
        "participation_ratio": spec.participation_ratio,
        "total_energy": spec.total_energy,
    }


def _print_spectrum(summary: dict[str, Any], console: Console) -> None:
    """Rich table for a spectrum summary."""
    table = Table(title=f"spectrum of {summary['source']} {summary['resolved_window']} ({summary['window']})")
    table.add_column("quantity")
    table.add_column("value", overflow="fold")
    for key in ("store", "rows", "dim", "method", "centered", "rank"):
        table.add_row(key, str(summary[key]))
    sv = ", ".join(f"{v:.4g}" for v in summary["singular_values"])
    table.add_row("top singular values", sv)
    evr = ", ".join(f"{100 * v:.1f}%" for v in summary["explained_variance_ratio"])
    table.add_row("explained variance (top r)", evr)
    table.add_row("explained variance, sum of top r", f"{100 * summary['explained_variance_top_r']:.2f}%")
    table.add_row("cumulative energy at r", f"{100 * summary['cumulative_energy_at_r']:.2f}%")
    table.add_row("effective rank (entropy)", f"{summary['effective_rank_entropy']:.3f}")
    table.add_row("participation ratio", f"{summary['participation_ratio']:.3f}")
    console.print(table)


@app.command()
@run_guarded
def spectrum(
    run: RunArg,
    window: Annotated[
        str | None,
        typer.Option(
            "--window", "-w", help="Rows to use: epochs:1-30, steps:0-999, epochs:0%-30%; default all."
        ),
    ] = None,
    source: SourceOpt = "grads",
    rank: Annotated[int, typer.Option("--rank", "-r", help="Number of basis vectors r to keep.")] = 10,
    energy: Annotated[
        float | None,
        typer.Option(
            "--energy", help="Keep the smallest r reaching this cumulative energy (overrides --rank)."
        ),
    ] = None,
    center: CenterOpt = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the top-r basis to this .pt file.")
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Spectrum figure (PNG); default <output stem>_spectrum.png with -o."),
    ] = None,
    json_out: JsonOpt = False,
    method: MethodOpt = "auto",
    param: Annotated[
        str | None,
        typer.Option("--param", help="Use only this recorded parameter's columns (e.g. ctx); default all."),
    ] = None,
) -> None:
    """Spectrum of a window of a trajectory; optionally save its top-r basis and a figure."""
    check_output_file(output, "--output")
    check_output_file(plot, "--plot")
    store = TrajectoryStore.open(run)
    win, spec, r = window_spectrum(
        store, source, window, rank=rank, energy=energy, center=center, method=method, param=param
    )
    summary = _spectrum_summary(store, source, win, spec, r)
    if output is not None:
        basis = Basis.from_spectrum(spec, r, basis_metadata(store, source, win, spec, r, param))
        summary["basis"] = str(basis.save(output))
        if plot is None:
            plot = output.with_name(f"{output.stem}_spectrum.png")
    if plot is not None:
        from gradflow.plots import plot_spectrum

        summary["plot"] = str(plot_spectrum(spec, plot, title=f"{source} {win.text} ({spec.n_rows} rows)"))
    if json_out:
        print_json(summary)
        return
    console = Console()
    _print_spectrum(summary, console)
    for key in ("basis", "plot"):
        if key in summary:
            console.print(f"wrote {key}: {summary[key]}")


def _rows_of_basis(basis: Basis) -> tuple[TrajectoryStore, str, Window] | None:
    """The store, stream and window a basis was built from, when its metadata names a readable store.

    """
    meta = basis.metadata
    where = meta.get("store")
    source = meta.get("source")
    if not isinstance(where, str) or source not in STREAMS:
        return None
    try:
        if not Path(where).exists():  # OSError for a crafted name (too long), ValueError for a NUL byte
            return None
        if not all(k in meta for k in ("window_kind", "window_lo", "window_hi")):
            return None
        kind, lo, hi = str(meta["window_kind"]), int(meta["window_lo"]), int(meta["window_hi"])
        store = TrajectoryStore.open(str(where))
    except (GradflowError, TypeError, ValueError, OverflowError, OSError):
        return None  # the recorded store moved or broke (or the metadata is crafted): compare without its rows
    return store, str(source), Window(kind, lo, hi, str(meta.get("window", f"{kind}:{lo}-{hi}")))


def _energy_summary(fractions: np.ndarray) -> dict[str, Any]:
    """Mean and quartiles of captured-energy fractions (NaN rows ignored)."""
    f = fractions[np.isfinite(fractions)]
    if f.size == 0:
        return {"rows": int(fractions.size), "mean": None, "quartiles": None}
    q = np.percentile(f, [0, 25, 50, 75, 100])
    return {
        "rows": int(fractions.size),
        "mean": float(f.mean()),
        "quartiles": {"min": q[0], "q25": q[1], "median": q[2], "q75": q[3], "max": q[4]},
    }


@app.command()
@run_guarded
def compare(
    a: Annotated[
        str, typer.Argument(help="Basis file A, or a run/store folder (then use --window-a/--window-b).")
    ],
    b: Annotated[str | None, typer.Argument(help="Basis file B (omit when A is a run).")] = None,
    window_a: Annotated[
        str | None, typer.Option("--window-a", help="Window of the run for basis A, e.g. epochs:0%-30%.")
    ] = None,
    window_b: Annotated[
        str | None, typer.Option("--window-b", help="Window of the run for basis B, e.g. epochs:70%-100%.")
    ] = None,
    rank: Annotated[int, typer.Option("--rank", "-r", help="Rank r of each window's basis (run mode).")] = 10,
    source: SourceOpt = "grads",
    center: CenterOpt = False,
    method: MethodOpt = "auto",
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a principal-angle figure (PNG).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Principal angles, overlap, Grassmann distance and captured energy between two subspaces."""
    check_output_file(plot, "--plot")
    result: dict[str, Any] = {}
    rows_b: tuple[TrajectoryStore, str, Window] | None
    if b is None:
        if window_a is None or window_b is None:
            fail("compare needs two basis files A B, or one run with --window-a and --window-b")
        store = TrajectoryStore.open(a)
        win_a, spec_a, _ = window_spectrum(store, source, window_a, rank=rank, center=center, method=method)
        win_b, spec_b, _ = window_spectrum(store, source, window_b, rank=rank, center=center, method=method)
        basis_a = Basis.from_spectrum(spec_a, rank)
        basis_b = Basis.from_spectrum(spec_b, rank)
        result.update(
            {
                "mode": "run",
                "store": str(store.path),
                "source": source,
                "rank": rank,
                "centered": center,
                "a": {"window": window_a, "resolved": str(win_a), "rows": spec_a.n_rows},
                "b": {"window": window_b, "resolved": str(win_b), "rows": spec_b.n_rows},
            }
        )
        rows_b = (store, source, win_b)
    else:
        if window_a is not None or window_b is not None:
            fail("--window-a/--window-b apply to a run; with two basis files give no windows")
        basis_a, basis_b = Basis.load(a), Basis.load(b)
        result.update(
            {
                "mode": "bases",
                "a": {"path": a, "rank": basis_a.rank, "dim": basis_a.dim},
                "b": {"path": b, "rank": basis_b.rank, "dim": basis_b.dim},
            }
        )
        rows_b = _rows_of_basis(basis_b) if basis_a.dim == basis_b.dim else None
    angles = principal_angles(basis_a, basis_b, degrees=True)
    result["principal_angles_deg"] = angles
    result["overlap"] = overlap(basis_a, basis_b)
    result["grassmann_distance"] = grassmann_distance(basis_a, basis_b)
    if rows_b is not None:
        store_b, stream_b, win_b = rows_b
        frac = captured_energy(basis_a, store_b.iter_chunks(stream_b, **win_b.as_kwargs()))
        result["captured_energy_of_b_rows_by_a"] = {
            "window": str(win_b),
            "source": stream_b,
            **_energy_summary(frac),
        }
    else:
        result["captured_energy_of_b_rows_by_a"] = None
    if plot is not None:
        from gradflow.plots import plot_principal_angles

        result["plot"] = str(plot_principal_angles(angles, plot))
    if json_out:
        print_json(result)
        return
    console = Console()
    table = Table(title="subspace comparison A vs B")
    table.add_column("quantity")
    table.add_column("value", overflow="fold")
    for side in ("a", "b"):
        table.add_row(side.upper(), ", ".join(f"{k}={v}" for k, v in result[side].items()))
    table.add_row("principal angles (deg, ascending)", ", ".join(f"{x:.1f}" for x in angles))
    table.add_row("overlap ||U_a U_b^T||_F^2 / r", f"{result['overlap']:.4f}")
    table.add_row("Grassmann distance (rad)", f"{result['grassmann_distance']:.4f}")
    ce = result["captured_energy_of_b_rows_by_a"]
    if ce is None:
        table.add_row("captured energy of B rows by A", "n/a (B's rows are not available)")
    elif ce["mean"] is None:
        table.add_row("captured energy of B rows by A", f"n/a ({ce['rows']} rows, all zero)")
    else:
        q = ce["quartiles"]
        table.add_row(
            "captured energy of B rows by A",
            f"mean {100 * ce['mean']:.1f}% over {ce['rows']} rows; quartiles {100 * q['q25']:.1f}% / "
            f"{100 * q['median']:.1f}% / {100 * q['q75']:.1f}% (min {100 * q['min']:.1f}%, max {100 * q['max']:.1f}%)",
        )
    console.print(table)
    if "plot" in result:
        console.print(f"wrote plot: {result['plot']}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def record(
    ctx: typer.Context,
    every: Annotated[int, typer.Option("--every", help="Record the gradient every N optimiser steps.")] = 1,
    dtype: Annotated[str, typer.Option("--dtype", help="Storage dtype: float32, float16 or bfloat16.")] = "float32",
    grads: Annotated[bool, typer.Option("--grads/--no-grads", help="Record per-step gradients.")] = True,
) -> None:
    """Run `subpt train` with recording on (all of its options apply, e.g. --out RUN --epochs 100).

    ctx snapshots are stored after every epoch in any case; gradients every `--every` steps.
    """
    from .subpt_app import app as subpt_app

    args = ["train", *ctx.args, "--record-every", str(every), "--record-dtype", dtype]
    if grads:
        args.append("--record")
    subpt_app(args=args, prog_name="gradflow record")


app.command("report")(gradflow_report)


def main() -> None:
    """Console-script entry point."""
    run_app(app, "gradflow")


if __name__ == "__main__":
    main()
