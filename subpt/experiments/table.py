"""The papers' tables from the run folders of `subpt sweep`: per dataset and averaged over datasets.

Rows are methods; columns are Base / Novel / HM (base2novel), accuracy per shot count (fewshot), or the
source and each target dataset with their average (crossdataset, domaingen). A cell is the mean +- std
over seeds of the last epoch's numbers (percent). How HM is formed:
- per dataset, HM is the mean +- std over seeds of each run's own HM (equal to `hm` in its metrics.jsonl);
- in the average over datasets, HM = 2BN/(B+N) of the averaged Base and Novel, as the papers compute it.
Averages over datasets (or targets) are means of the per-dataset means; their std is that of the per-seed
averages over the seeds that every dataset has. Missing or unfinished runs are never dropped silently:
a cell with some seeds missing is marked (n/expected), a cell with none reads "missing", an average that
lacks a dataset reads "missing", and every missing run is listed with the reason.
"""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from subpt.errors import SubptError
from subpt.evaluate import harmonic_mean
from subpt.experiments.collect import Collected, collect, resolve_roots
from subpt.experiments.protocols import (
    BASE2NOVEL,
    FEWSHOT,
    PUBLISHED_BASE2NOVEL,
    PUBLISHED_PAPERS,
    PUBLISHED_SOURCE,
    get_protocol,
)
from subpt.experiments.sweep_plan import ZEROSHOT, run_label

HM_RULE = (
    "HM per dataset: mean ± std over seeds of each run's HM; HM of an average: 2BN/(B+N) of the averaged "
    "Base and Novel, as the papers compute it."
)
AVERAGE = "Average"



@dataclass
class Cell:
    """One table cell: values by seed, and how many seeds were expected."""

    by_seed: dict[int, float]
    expected: int
    mean: float = float("nan")
    std: float | None = float("nan")
    status: str = "ok"  # ok, partial, missing, published
    note: str = ""  # why an average is missing

    @classmethod
    def of(cls, by_seed: dict[int, float], expected: int) -> Cell:
        """Mean and sample std (0 for one seed) over the seeds present."""
        vals = [by_seed[s] for s in sorted(by_seed)]
        cell = cls(dict(sorted(by_seed.items())), expected)
        if vals:
            cell.mean = statistics.fmean(vals)
            cell.std = statistics.stdev(vals) if len(vals) > 1 else 0.0
        cell.status = _status(len(vals), expected)
        return cell

    @property
    def n(self) -> int:
        """Number of seeds present."""
        return len(self.by_seed)

    def text(self) -> str:
        """'82.31 ± 0.52', '82.31' (one seed or no std), with ' (n/expected)' when seeds are missing."""
        if self.status == "missing" or math.isnan(self.mean):
            if self.note:
                return f"missing ({self.note})"
            return "not run" if self.expected == 0 else f"missing (0/{self.expected})"
        body = f"{self.mean:.2f}"
        if self.std is not None and not math.isnan(self.std) and self.n > 1:
            body += f" ± {self.std:.2f}"
        if self.status == "partial":
            body += f" ({self.n}/{self.expected})"
        return body

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (NaN becomes None)."""
        return {
            "mean": _num(self.mean),
            "std": _num(self.std),
            "n": self.n,
            "expected": self.expected,
            "status": self.status,
            "seeds": {str(k): v for k, v in self.by_seed.items()},
            "text": self.text(),
        }


def _status(n: int, expected: int) -> str:
    if n == 0:
        return "missing"
    return "ok" if n >= expected else "partial"


def _num(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def average_cell(cells: list[Cell]) -> Cell:
    """Mean over datasets (or targets) of their means; std over the seeds every one of them has."""
    if not cells or any(c.n == 0 for c in cells):
        have = sum(c.n > 0 for c in cells)
        return Cell(
            {},
            max((c.expected for c in cells), default=0),
            status="missing",
            note=f"{have}/{len(cells)} parts",
        )
    common = sorted(set.intersection(*(set(c.by_seed) for c in cells)))
    per_seed = {s: statistics.fmean(c.by_seed[s] for c in cells) for s in common}
    cell = Cell(per_seed, max(c.expected for c in cells))
    cell.mean = statistics.fmean(c.mean for c in cells)
    cell.std = (
        (statistics.stdev(per_seed.values()) if len(per_seed) > 1 else 0.0) if per_seed else float("nan")
    )
    cell.status = "partial" if any(c.status == "partial" for c in cells) else "ok"
    return cell


def hm_cell(base: Cell, novel: Cell) -> Cell:
    """HM of the averaged Base and Novel (no std)."""
    if base.status == "missing" or novel.status == "missing":
        return Cell({}, base.expected, status="missing")
    cell = Cell({}, base.expected, status=base.status if base.status == "partial" else novel.status)
    cell.mean, cell.std = harmonic_mean(base.mean, novel.mean), None
    cell.by_seed = {s: harmonic_mean(base.by_seed[s], novel.by_seed[s]) for s in base.by_seed if s in novel.by_seed}
    return cell


# ----------------------------------------------------------------------------------------------------
# Tables


def _cell(col: Collected, dataset: str, shots: int, method: str, column: str) -> Cell:
    if shots not in col.shots[dataset]:
        return Cell({}, 0, status="missing")
    vals = {}
    for s in col.seeds:
        r = col.runs[(dataset, shots, s, method)]
        if column in r.values:
            vals[s] = float(r.values[column])
    return Cell.of(vals, len(col.seeds))


def _table(
    title: str, kind: str, dataset: str | None, shots: int | None, columns: list[str], rows: list
) -> dict:
    return {
        "title": title,
        "kind": kind,
        "dataset": dataset,
        "shots": shots,
        "columns": columns,
        "rows": rows,
    }


def _row(method: str, cells: list[Cell], label: str | None = None) -> dict:
    return {"method": method, "label": label or run_label(method), "cells": cells}


PUBLISHED_NAME = {ZEROSHOT: "CLIP (zero-shot)"}  # a measured row's name in PUBLISHED_BASE2NOVEL, where it differs


def published_table(methods: list[str]) -> dict:
    """The published base-to-novel averages (METHOD.md section 5) as a table of their own, never averaged with
    the measured rows; its note names the measured methods that have no published row."""
    rows = []
    for name, vals in PUBLISHED_BASE2NOVEL.items():
        cells = [Cell({}, 0, mean=v, std=None, status="published") for v in vals]
        rows.append({**_row(name, cells, f"{name} (published; method: {PUBLISHED_PAPERS[name]})"), "paper": PUBLISHED_PAPERS[name]})
    labels = [run_label(m) for m in methods]
    unpublished = [lab for m, lab in zip(methods, labels) if PUBLISHED_NAME.get(m, lab) not in PUBLISHED_BASE2NOVEL]
    table = _table(f"Published, not measured here ({PUBLISHED_SOURCE})", "published", None, None,
                   ["Base", "Novel", "HM"], rows)
    table["source"] = PUBLISHED_SOURCE
    table["unpublished"] = unpublished
    return table


def build_tables(col: Collected, published: bool = False) -> list[dict]:
    """The protocol's tables (cells as Cell objects): averages first (with `published`, the published averages
    right after the 16-shot average, as a table of their own), then one per dataset."""
    spec = col.spec
    tables = []
    if spec.kind == BASE2NOVEL:
        for k in sorted({k for d in col.datasets for k in col.shots[d]}):
            ds = [d for d in col.datasets if k in col.shots[d]]
            per = {
                d: {m: [_cell(col, d, k, m, c) for c in ("Base", "Novel", "HM")] for m in col.methods}
                for d in ds
            }
            rows = []
            for m in col.methods:
                b = average_cell([per[d][m][0] for d in ds])
                n = average_cell([per[d][m][1] for d in ds])
                rows.append(_row(m, [b, n, hm_cell(b, n)]))
            title = f"Average over {len(ds)} dataset{'s' if len(ds) > 1 else ''} ({k} shots)"
            tables.append(_table(title, "average", None, k, ["Base", "Novel", "HM"], rows))
            if published:
                tables.append(published_table(col.methods))
                published = False  # once, beside the first average
            for d in ds:
                rows = [_row(m, per[d][m]) for m in col.methods]
                tables.append(_table(f"{d} ({k} shots)", "dataset", d, k, ["Base", "Novel", "HM"], rows))
    elif spec.kind == FEWSHOT:
        all_shots = sorted({k for d in col.datasets for k in col.shots[d]})
        names = [f"{k} shot{'s' if k > 1 else ''}" for k in all_shots]
        per = {
            d: {m: [_cell(col, d, k, m, "Accuracy") for k in all_shots] for m in col.methods}
            for d in col.datasets
        }
        rows = [
            _row(m, [average_cell([per[d][m][i] for d in col.datasets]) for i in range(len(all_shots))])
            for m in col.methods
        ]
        n = len(col.datasets)
        tables.append(
            _table(f"Average over {n} dataset{'s' if n > 1 else ''}", "average", None, None, names, rows)
        )
        for d in col.datasets:
            tables.append(_table(d, "dataset", d, None, names, [_row(m, per[d][m]) for m in col.methods]))
    else:
        for d in col.datasets:
            targets = col.targets.get(d, [])
            for k in col.shots[d]:
                rows = []
                for m in col.methods:
                    source = _cell(col, d, k, m, "Source")
                    cells = [_cell(col, d, k, m, t) for t in targets]
                    rows.append(_row(m, [source, *cells, average_cell(cells)]))
                plural = "s" if len(targets) != 1 else ""
                columns = [f"{d} (source)", *targets, f"{AVERAGE} of {len(targets)} target{plural}"]
                tables.append(
                    _table(
                        f"{d} -> {len(targets)} target{plural} ({k} shots)", "transfer", d, k, columns, rows
                    )
                )
    return tables


def missing_runs(col: Collected) -> list[dict]:
    """Every run (or transfer result) the tables expected and did not find, with the reason."""
    out = []
    for key, r in col.runs.items():
        reasons = sorted(set(r.missing.values()))
        for reason in reasons:
            out.append(
                {
                    "run": str(r.path),
                    "dataset": key[0],
                    "shots": key[1],
                    "seed": key[2],
                    "method": key[3],
                    "reason": reason,
                }
            )
    return out


def make_report(roots: list[Path], protocol: str | None = None, published: bool = False) -> dict:
    """All tables of every protocol found under `roots`, JSON-ready."""
    report = []
    found = resolve_roots([Path(r) for r in roots], protocol)
    if published and not any(get_protocol(name).kind == BASE2NOVEL for name in found):
        raise SubptError(
            f"--published adds the published base-to-novel averages (ViT-B/16, CoOp's 11 datasets); these folders "
            f"hold {', '.join(found)}, not base2novel: drop --published (no published numbers exist here for them)"
        )
    for name, proots in found.items():
        col = collect(name, proots)
        tables = build_tables(col, published=published and col.spec.kind == BASE2NOVEL)
        for t in tables:
            for row in t["rows"]:
                row["cells"] = [c.to_dict() for c in row["cells"]]
        notes = [
            "Cells: mean ± std over seeds of the last epoch, in percent; (n/N) marks cells with seeds missing."
        ]
        if col.spec.kind == BASE2NOVEL:
            notes.append(HM_RULE)
            if published:
                notes.append(
                    f"Published ({PUBLISHED_SOURCE}): each row names the paper that introduced the method; shown "
                    "apart, never part of a measured mean; comparable only with ViT-B/16 runs on the 11 datasets."
                )
        elif col.spec.kind == FEWSHOT:
            notes.append("Accuracy on the test images of all classes.")
        else:
            notes.append(
                "Source: accuracy on the source dataset's test set; targets: the learned context on each "
                "target's full test set with its own class names; Average: mean over the targets."
            )
        notes.append("Averages: mean of the per-dataset means; their std is that of the per-seed averages.")
        report.append(
            {
                "protocol": name,
                "title": col.spec.title,
                "roots": [str(p) for p in proots],
                "seeds": col.seeds,
                "methods": col.methods,
                "notes": notes,
                "tables": tables,
                "missing": missing_runs(col),
            }
        )
    return {"protocols": report}


# ----------------------------------------------------------------------------------------------------
# Output


def to_markdown(report: dict) -> str:
    """The tables as Markdown, one section per protocol, with the missing runs listed."""
    lines: list[str] = []
    for p in report["protocols"]:
        lines += [f"# {p['title']} ({p['protocol']})", ""]
        lines += [f"Runs: {', '.join(p['roots'])}; seeds {', '.join(map(str, p['seeds']))}.", ""]
        lines += [*p["notes"], ""]
        for t in p["tables"]:
            lines += [f"## {t['title']}", ""]
            lines.append("| Method | " + " | ".join(t["columns"]) + " |")
            lines.append("|---|" + "---:|" * len(t["columns"]))
            for row in t["rows"]:
                lines.append(f"| {row['label']} | " + " | ".join(c["text"] for c in row["cells"]) + " |")
            lines.append("")
            if t.get("unpublished"):
                lines += [unpublished_note(t), ""]
        miss = p["missing"]
        lines += [f"## Missing runs ({len(miss)})", ""]
        lines += [f"- {m['run']}: {m['reason']}" for m in miss] or ["None: every expected run is finished."]
        lines.append("")
    return "\n".join(lines)


def unpublished_note(table: dict) -> str:
    """The line under the published table naming the measured methods without a published row."""
    return (f"No published row in METHOD.md for {', '.join(table['unpublished'])}: none is shown (no number is "
            "made up for them).")


def write_csv(report: dict, path: Path) -> None:
    """One line per cell: protocol, table, dataset, shots, method, column, mean, std, seeds, status."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "protocol",
                "table",
                "dataset",
                "shots",
                "method",
                "column",
                "mean",
                "std",
                "n_seeds",
                "expected_seeds",
                "status",
                "text",
            ]
        )
        for p in report["protocols"]:
            for t in p["tables"]:
                for row in t["rows"]:
                    for column, c in zip(t["columns"], row["cells"]):
                        w.writerow(
                            [
                                p["protocol"],
                                t["title"],
                                t["dataset"] or AVERAGE,
                                t["shots"] or "",
                                row["label"],
                                column,
                                _csv_num(c["mean"]),
                                _csv_num(c["std"]),
                                c["n"],
                                c["expected"],
                                c["status"],
                                c["text"],
                            ]
                        )


def _csv_num(x: float | None) -> str:
    return "" if x is None else f"{x:.4f}"


def print_report(report: dict, console: Any = None) -> None:
    """The tables with rich, and the missing runs."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    for p in report["protocols"]:
        console.print(f"[bold]{p['title']} ({p['protocol']})[/bold]: {', '.join(p['roots'])}")
        for note in p["notes"]:
            console.print(note, style="dim")
        for t in p["tables"]:
            table = Table(title=t["title"])
            table.add_column("Method")
            for c in t["columns"]:
                table.add_column(c, justify="right")
            for row in t["rows"]:
                table.add_row(row["label"], *(_styled(c) for c in row["cells"]))
            console.print(table)
            if t.get("unpublished"):
                console.print(unpublished_note(t), markup=False)
        miss = p["missing"]
        if miss:
            console.print(f"[yellow]Missing runs ({len(miss)}):[/yellow]")
            for m in miss:
                console.print(f"  {m['run']}: {m['reason']}", markup=False)
        else:
            console.print("Every expected run is finished.")


def _styled(cell: dict) -> str:
    from rich.markup import escape

    text = escape(cell["text"])
    if cell["status"] == "missing":
        return f"[red]{text}[/red]"
    if cell["status"] == "partial":
        return f"[yellow]{text}[/yellow]"
    if cell["status"] == "published":
        return f"[dim]{text}[/dim]"
    return text
