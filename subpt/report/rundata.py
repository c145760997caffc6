"""Run folders read back for the report (missing files become notes), the accuracy analysis of a run, and
what the report computes for each run (RunReport)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradflow.analysis import TrajectoryAnalysis
from gradflow.report import trajectory_notes
from subpt import runs
from subpt.config import TrainConfig
from subpt.errors import SubptError
from subpt.report.model import ClassAnalysis


def finite(x: Any) -> bool:
    """True for a real, finite number."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass
class RunData:
    """What a run folder holds, and notes (per report section) on what it lacks."""

    path: Path
    name: str
    config: TrainConfig | None = None
    metrics: list[dict] = field(default_factory=list)
    zeroshot: dict | None = None
    notes: dict[str, list[str]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # damaged files left out (also in the notes)

    def note(self, section: str, message: str) -> None:
        """Record what a section could not show, and why."""
        self.notes.setdefault(section, []).append(message)

    def skip(self, section: str, message: str) -> None:
        """Record a damaged file the report leaves out: a note of `section`, and a line of the report's warning."""
        self.note(section, message)
        self.skipped.append(message)

    @property
    def has_trajectory(self) -> bool:
        """Whether the folder has a trajectory/ folder (readable or not)."""
        return runs.trajectory_path(self.path).exists()


def load_run(path: str | Path, name: str | None = None) -> RunData:
    """Read a run folder of `subpt train`; missing files become notes, a folder that is no run an error."""
    p = Path(path)
    if not p.exists():
        raise SubptError(f"{p} does not exist: pass a run folder written by `subpt train --out RUN`")
    if not p.is_dir():
        raise SubptError(f"{p} is not a folder: pass a run folder written by `subpt train --out RUN`")
    if not any((p / f).exists() for f in runs.RUN_FILES):
        raise SubptError(
            f"{p} is not a run folder (none of {', '.join(runs.RUN_FILES)} is there): pass the --out folder of `subpt train`"
        )
    run = RunData(path=p, name=name or p.name)
    try:
        run.config = runs.load_config(p)
    except SubptError as e:
        run.skip(
            "config", f"{e}; the sections that need the model (decoded context, classes, cue) are left out"
        )
    mpath = p / runs.METRICS
    if not mpath.is_file():
        run.note("accuracy", f"{mpath} is missing: no accuracy curves (train the run with `subpt train`)")
    else:
        try:
            run.metrics = runs.read_metrics(p)
            lines = runs.metrics_lines(p)
        except SubptError as e:
            run.metrics, lines = [], 0
            run.skip("accuracy", f"no accuracy curves: {e}")
        if lines > len(run.metrics):
            run.note(
                "accuracy",
                f"{mpath} line {len(run.metrics) + 1} is incomplete (interrupted run?): "
                f"showing the {len(run.metrics)} complete epochs; `subpt train --resume` completes it",
            )
        if not run.metrics:
            run.note("accuracy", f"{mpath} holds no complete epoch yet")
    zpath = p / runs.ZEROSHOT
    try:
        run.zeroshot = runs.read_zeroshot(p)
    except FileNotFoundError:
        run.note("accuracy", f"{zpath} is missing: no zero-shot reference line")
    except (OSError, json.JSONDecodeError) as e:
        run.skip("accuracy", f"{zpath} is unreadable ({type(e).__name__}): no zero-shot reference line")
    return run


def run_names(paths: list[Path]) -> list[str]:
    """Short unique labels of run folders: the folder name, with parents added where names clash."""
    parts = [Path(p).resolve().parts for p in paths]
    depth = 1
    while True:
        names = ["/".join(pp[-depth:]) for pp in parts]
        if len(set(names)) == len(names) or depth >= max(len(pp) for pp in parts):
            return names
        depth += 1


# ---------------------------------------------------------------------------------------------- accuracy
def accuracy_summary(run: RunData) -> dict | None:
    """Peak, final and zero-shot numbers of one run, and where novel accuracy fell below zero-shot."""
    ev = [m for m in run.metrics if finite(m.get("base_acc"))]
    if not ev:
        return None
    zs = run.zeroshot or {}
    peak = max(ev, key=lambda m: m["base_acc"])  # first epoch reaching the maximum
    last = ev[-1]
    out: dict[str, Any] = {
        "epochs": [m["epoch"] for m in run.metrics],
        "evaluated_epochs": len(ev),
        "final_epoch": last["epoch"],
        "base_peak": peak["base_acc"],
        "base_peak_epoch": peak["epoch"],
        "base_final": last["base_acc"],
        "base_first": ev[0]["base_acc"],
        "first_epoch": ev[0]["epoch"],
        "base_drop": peak["base_acc"] - last["base_acc"],
        "novel_final": last.get("novel_acc") if finite(last.get("novel_acc")) else None,
        "hm_final": last.get("hm") if finite(last.get("hm")) else None,
        "train_final": last.get("train_acc") if finite(last.get("train_acc")) else None,
        "zs_base": zs.get("base_acc") if finite(zs.get("base_acc")) else None,
        "zs_novel": zs.get("novel_acc") if finite(zs.get("novel_acc")) else None,
        "zs_hm": zs.get("hm") if finite(zs.get("hm")) else None,
        "novel_below_epoch": None,
        "novel_below_count": 0,
        "novel_after_count": 0,
        "hm_peak": None,
        "hm_peak_epoch": None,
    }
    hm = [m for m in ev if finite(m.get("hm"))]
    if hm:
        best = max(hm, key=lambda m: m["hm"])
        out["hm_peak"], out["hm_peak_epoch"] = best["hm"], best["epoch"]
    nov = [m for m in ev if finite(m.get("novel_acc"))]
    if nov:
        out["novel_first"] = nov[0]["novel_acc"]
        best_n = max(nov, key=lambda m: m["novel_acc"])
        out["novel_peak"], out["novel_peak_epoch"] = best_n["novel_acc"], best_n["epoch"]
    if nov and out["zs_novel"] is not None:
        below = [m for m in nov if m["novel_acc"] < out["zs_novel"]]
        if below:
            k = below[0]["epoch"]
            after = [m for m in nov if m["epoch"] >= k]
            out["novel_below_epoch"] = k
            out["novel_after_count"] = len(after)
            out["novel_below_count"] = sum(m["novel_acc"] < out["zs_novel"] for m in after)
    return out


# ---------------------------------------------------------------------------------------------- sentences


@dataclass
class RunReport:
    """Everything computed for one run."""

    run: RunData
    accuracy: dict | None = None
    trajectory: TrajectoryAnalysis | None = None
    context: list[dict] = field(default_factory=list)
    context_shape: list[int] | None = None
    classes: ClassAnalysis | None = None
    notes: dict[str, list[str]] = field(default_factory=dict)

    def note(self, section: str, message: str) -> None:
        """Record what a section could not show, and why."""
        self.notes.setdefault(section, []).append(message)

    def skip(self, section: str, message: str) -> None:
        """Record a damaged file the report leaves out: a note of `section`, and a line of the report's warning."""
        self.note(section, message)
        self.run.skipped.append(message)

    def notes_for(self, section: str) -> list[str]:
        """Every note that concerns `section` (from the run folder, the trajectory and the model)."""
        out = list(self.run.notes.get(section, [])) + trajectory_notes(self.trajectory, section)
        if section in ("context", "classes", "cue"):
            out += self.run.notes.get("config", [])
        return out + self.notes.get(section, [])
