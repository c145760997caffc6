"""`subpt eval`: evaluate again any folder `subpt train` or `subpt sweep` wrote, from its files alone.

A run folder gives its Base / Novel / HM (a sweep's zero-shot folder: zero-shot CLIP with the templates it records);
a run of a transfer protocol also gives each target it was transferred to (RUN/transfer/<target>.json names them),
computed afresh from the final context. A folder above runs (a sweep's OUT/<protocol>, a dataset's, a seed's)
gives every run below it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from subpt import runs
from subpt.config import read_config_file
from subpt.experiments.protocols import cached_transfer, transfer_eval


def run_folders(folder: Path) -> list[Path]:
    """The folder itself when it holds a run, else every run folder below it (sorted); none is a SubptError."""
    folder = Path(folder)
    if folder.is_dir() and not runs.holds_run(folder):
        found = sorted(p.parent for p in folder.rglob(runs.CONFIG) if p.is_file())
        if found:
            return found
    return [folder]  # a run folder, or one whose missing config.json runs.read_run_config reports


def transfer_targets(run_dir: Path) -> list[str]:
    """The targets a run was transferred to by a sweep (RUN/transfer/<target>.json), sorted."""
    folder = Path(run_dir) / "transfer"
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def evaluate_run_folder(
    run_dir: Path, epoch: int | None = None, device: str = "cpu", progress: bool = True
) -> dict:
    """One run folder evaluated again: Base / Novel / HM, and {target: accuracy} under "transfer" for a run of a
    transfer protocol (final context only: with --epoch the targets are left out)."""
    result = runs.evaluate_saved_run(run_dir, epoch, device, progress=progress)
    targets = transfer_targets(run_dir) if epoch is None else []
    if targets:
        accs = {}
        for target in targets:
            options = (cached_transfer(run_dir, target) or {}).get("options") or {}
            res = transfer_eval(run_dir, target, None, device, options=options, use_cache=False, save=False)
            accs[target] = res["acc"]
        result["transfer"] = accs
    return result


def evaluate_folder(
    folder: Path,
    epoch: int | None = None,
    device: str = "cpu",
    progress: bool = True,
    echo: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Every run in `folder` (itself, or all runs below it) evaluated again, in path order; `echo` sees each result
    as it is computed. --epoch applies to trained runs; zero-shot folders below a sweep folder ignore it."""
    folders = run_folders(folder)
    tree = len(folders) > 1 or folders[0] != Path(folder)
    out = []
    for run in folders:
        zeroshot = tree and read_config_file(runs.config_path(run)).get("method") == runs.ZEROSHOT_METHOD
        result = evaluate_run_folder(run, None if zeroshot else epoch, device, progress=progress)
        if echo is not None:
            echo(result)
        out.append(result)
    return out
