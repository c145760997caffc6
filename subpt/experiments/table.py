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
import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from subpt.errors import SubptError
from subpt.evaluate import harmonic_mean
from subpt.experiments.protocols import (
    BASE2NOVEL,
    COOP_11,
    FEWSHOT,
    IMAGENET_VARIANTS,
    PROTOCOLS,
    PUBLISHED_BASE2NOVEL,
    ZEROSHOT,
    Protocol,
    get_protocol,
    transfer_path,
)
from subpt.experiments.sweep import MANIFEST, METHOD_LABELS, METHODS

HM_RULE = (
    "HM per dataset: mean ± std over seeds of each run's HM; HM of an average: 2BN/(B+N) of the averaged "
    "Base and Novel, as the papers compute it."
)
AVERAGE = "Average"
_SHOTS = re.compile(r"^shots(\d+)$")
_SEED = re.compile(r"^seed(\d+)$")

Key = tuple[str, int, int, str]  # dataset, shots, seed, method


@dataclass
class RunResult:
    """The numbers of one run by column, and the reason for every column it cannot fill."""

    path: Path
    values: dict[str, float] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)


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
# Finding and reading run folders


def resolve_roots(roots: list[Path], protocol: str | None = None) -> dict[str, list[Path]]:
    """Protocol folders by protocol: a root is OUT/<protocol> (or holds sweep.json) or an OUT with several."""
    if protocol is not None:
        get_protocol(protocol)
    found: dict[str, list[Path]] = {}
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            raise SubptError(f"{root}: no such folder")
        name = _protocol_of(root)
        if name is None:
            subs = [root / p for p in PROTOCOLS if (root / p).is_dir()]
            if subs:
                for sub in subs:
                    p = _protocol_of(sub) or sub.name
                    if protocol is None or p == protocol:
                        found.setdefault(p, []).append(sub)
                continue
            if protocol is None:
                raise SubptError(
                    f"{root} is not a sweep folder (no {MANIFEST}, not named after a protocol): pass OUT/<protocol> "
                    f"of `subpt sweep`, or --protocol ({', '.join(PROTOCOLS)})"
                )
            name = protocol
        if protocol is not None and name != protocol:
            raise SubptError(f"{root} holds protocol {name}, not {protocol}")
        found.setdefault(name, []).append(root)
    if not found:
        raise SubptError(f"no runs of protocol {protocol} under {', '.join(map(str, roots))}")
    return found


def _protocol_of(folder: Path) -> str | None:
    manifest = folder / MANIFEST
    if manifest.is_file():
        try:
            p = json.loads(manifest.read_text()).get("protocol")
        except json.JSONDecodeError as e:
            raise SubptError(f"{manifest} is not valid JSON ({e.msg} at line {e.lineno})") from e
        if p in PROTOCOLS:
            return p
    return folder.name if folder.name in PROTOCOLS else None


def _discover(root: Path) -> dict[Key, Path]:
    out: dict[Key, Path] = {}
    for dataset_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for shots_dir in sorted(p for p in dataset_dir.iterdir() if p.is_dir() and _SHOTS.match(p.name)):
            for seed_dir in sorted(p for p in shots_dir.iterdir() if p.is_dir() and _SEED.match(p.name)):
                for run in sorted(p for p in seed_dir.iterdir() if p.is_dir() and p.name in METHODS):
                    k = int(_SHOTS.match(shots_dir.name).group(1))  # type: ignore[union-attr]
                    s = int(_SEED.match(seed_dir.name).group(1))  # type: ignore[union-attr]
                    out[(dataset_dir.name, k, s, run.name)] = run
    return out


def read_run(spec: Protocol, path: Path, method: str, targets: list[str]) -> RunResult:
    """The columns one run fills, with the reason for each it cannot (missing, unfinished, not evaluated)."""
    from subpt import runs

    columns = spec.columns(targets)
    res = RunResult(path)

    def all_missing(reason: str) -> RunResult:
        res.missing = {c: reason for c in columns}
        return res

    if not path.is_dir():
        return all_missing("not run")
    if method == ZEROSHOT:
        if not runs.has_zeroshot(path):
            return all_missing("no zeroshot.json (unfinished)")
        try:
            m = runs.read_zeroshot(path)
        except json.JSONDecodeError:
            return all_missing("zeroshot.json is damaged")
    else:
        try:
            cfg = runs.load_config(path)
        except SubptError as e:
            return all_missing(f"unreadable config ({' '.join(str(e).split())})")
        metrics = runs.read_metrics(path)
        if not runs.is_finished(metrics, cfg.epochs):
            return all_missing(f"unfinished: {len(metrics)}/{cfg.epochs} epochs")
        m = metrics[-1]
    if spec.kind == BASE2NOVEL:
        res.values = {"Base": m["base_acc"], "Novel": m["novel_acc"], "HM": m["hm"]}
        for c, v in list(res.values.items()):
            if v is None or (isinstance(v, float) and math.isnan(v)):
                del res.values[c]
                res.missing[c] = "no value (was it trained with subsample 'all'?)"
        return res
    if spec.kind == FEWSHOT:
        res.values = {"Accuracy": m["base_acc"]}
        return res
    res.values = {"Source": m["base_acc"]}
    for t in targets:
        tp = transfer_path(path, t)
        try:
            res.values[t] = json.loads(tp.read_text())["acc"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            res.missing[t] = f"transfer to {t} not evaluated"
    return res


def _dataset_order(name: str) -> tuple[int, str]:
    known = [*COOP_11, *IMAGENET_VARIANTS]
    return (known.index(name) if name in known else len(known), name)


@dataclass
class Collected:
    """Every run of one protocol found under its roots, and the grid the table expects."""

    spec: Protocol
    roots: list[Path]
    runs: dict[Key, RunResult]
    datasets: list[str]
    shots: dict[str, list[int]]  # per dataset
    seeds: list[int]
    methods: list[str]
    targets: dict[str, list[str]]  # per source dataset


def collect(protocol: str, roots: list[Path]) -> Collected:
    """Read every run of `protocol` under `roots` and the grid of expected runs (manifests + folders)."""
    spec = get_protocol(protocol)
    found: dict[Key, Path] = {}
    planned: set[Key] = set()
    targets: dict[str, list[str]] = {}
    for root in roots:
        for key, path in _discover(root).items():
            if key in found:
                raise SubptError(f"run {'/'.join(map(str, key))} is in two roots: {found[key]} and {path}")
            found[key] = path
        manifest = root / MANIFEST
        if manifest.is_file():
            m = json.loads(manifest.read_text())
            planned |= {(d, int(k), int(s), meth) for d, k, s, meth in m.get("jobs", [])}
            for d, ts in m.get("targets", {}).items():
                targets[d] = list(dict.fromkeys([*targets.get(d, []), *ts]))
    keys = planned | set(found)
    if not keys:
        raise SubptError(
            f"no runs under {', '.join(map(str, roots))} (expected <dataset>/shots<K>/seed<S>/<method>/)"
        )
    datasets = sorted({k[0] for k in keys}, key=_dataset_order)
    shots = {d: sorted({k[1] for k in keys if k[0] == d}) for d in datasets}
    seeds = sorted({k[2] for k in keys})
    methods = [m for m in METHODS if any(k[3] == m for k in keys)]
    if spec.is_transfer:
        for (d, *_), path in found.items():
            extra = (
                sorted(p.stem for p in (path / "transfer").glob("*.json"))
                if (path / "transfer").is_dir()
                else []
            )
            targets[d] = list(dict.fromkeys([*targets.get(d, []), *extra]))
    runs: dict[Key, RunResult] = {}
    for d in datasets:
        for k in shots[d]:
            for s in seeds:
                for m in methods:
                    key = (d, k, s, m)
                    path = found.get(key, roots[0] / d / f"shots{k}" / f"seed{s}" / m)
                    runs[key] = read_run(spec, path, m, targets.get(d, []))
    return Collected(spec, list(roots), runs, datasets, shots, seeds, methods, targets)


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
    return {"method": method, "label": label or METHOD_LABELS.get(method, method), "cells": cells}


def build_tables(col: Collected, published: bool = False) -> list[dict]:
    """The protocol's tables (cells as Cell objects): averages first, then one per dataset."""
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
            if published:
                for name, vals in PUBLISHED_BASE2NOVEL.items():
                    cells = [Cell({}, 0, mean=v, std=None, status="published") for v in vals]
                    rows.append(_row(name, cells, f"{name} (published)"))
            title = f"Average over {len(ds)} dataset{'s' if len(ds) > 1 else ''} ({k} shots)"
            tables.append(_table(title, "average", None, k, ["Base", "Novel", "HM"], rows))
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
    for name, proots in resolve_roots([Path(r) for r in roots], protocol).items():
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
                    "(published): averages over CoOp's 11 datasets with ViT-B/16 and 16 shots, as reported."
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
        miss = p["missing"]
        lines += [f"## Missing runs ({len(miss)})", ""]
        lines += [f"- {m['run']}: {m['reason']}" for m in miss] or ["None: every expected run is finished."]
        lines.append("")
    return "\n".join(lines)


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
