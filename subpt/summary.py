"""Tables of Base / Novel / HM: one run against zero-shot, or methods over seeds (mean +- std)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from subpt.runs import has_zeroshot, read_metrics, read_zeroshot

KEYS = ("base_acc", "novel_acc", "hm")


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value), ignoring NaNs."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return float("nan"), float("nan")
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def fmt(mean: float, std: float | None = None) -> str:
    """'82.31 +- 0.52', or 'n/a' for a missing value."""
    if mean is None or math.isnan(mean):
        return "n/a"
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def print_run_summary(run_dir: Path, console: Console | None = None) -> None:
    """Zero-shot vs the final epoch (and the epoch where base accuracy peaked) of one run."""
    run_dir = Path(run_dir)
    metrics = [m for m in read_metrics(run_dir) if "base_acc" in m]
    table = Table(title=f"{run_dir}")
    for col in ("", "Base", "Novel", "HM"):
        table.add_column(col, justify="right" if col else "left")
    if has_zeroshot(run_dir):
        zs = read_zeroshot(run_dir)
        table.add_row("zero-shot", *(fmt(zs[k]) for k in KEYS))
    if metrics:
        peak = max(metrics, key=lambda m: m["base_acc"])
        table.add_row(f"peak base (epoch {peak['epoch']})", *(fmt(peak[k]) for k in KEYS))
        last = metrics[-1]
        table.add_row(f"final (epoch {last['epoch']})", *(fmt(last[k]) for k in KEYS))
    (console or Console()).print(table)


def aggregate(records: dict[str, list[dict]]) -> dict[str, dict[str, tuple[float, float]]]:
    """Mean and std of Base / Novel / HM over each method's records (e.g. one per seed)."""
    return {m: {k: mean_std([r[k] for r in recs]) for k in KEYS} for m, recs in records.items()}


def method_table(table: dict[str, dict[str, tuple[float, float]]], title: str) -> Table:
    """A rich table with one row per method: Base / Novel / HM as mean +- std."""
    out = Table(title=title)
    out.add_column("method")
    for col in ("Base", "Novel", "HM"):
        out.add_column(col, justify="right")
    for method, cells in table.items():
        out.add_row(method, *(fmt(*cells[k]) for k in KEYS))
    return out
