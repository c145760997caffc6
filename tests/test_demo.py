"""The README's main job end to end: a tiny smoke run of every output, resume, and what the demo runs."""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import replace

from rich.console import Console

from subpt.experiments.demo import METHODS, demo_config, run_demo
from subpt.experiments.study import DEFAULT_GRID, study_config
from subpt.runs import read_metrics
from subpt.train import train

SMALL = {"test_per_class": 5}


def test_demo_runs_every_method_and_writes_its_outputs(tmp_path):
    console = Console(record=True, width=120)
    summary = run_demo(tmp_path / "demo", seeds=1, epochs=4, console=console, options={"test_per_class": 5})
    assert set(summary["table"]) == {"zero-shot", *METHODS}
    for cells in summary["table"].values():
        assert all(0 <= cells[k][0] <= 100 for k in ("base_acc", "novel_acc", "hm"))
    assert (summary["early_window"], summary["late_window"], summary["rank"]) == ("epochs:1-3", "epochs:2-4", 1)
    curves = json.loads((tmp_path / "demo" / "curves.json").read_text())
    assert curves["CoOp"]["epoch"] == [1, 2, 3, 4]
    for name in ("curves.png", "report.html", "summary.json"):
        assert (tmp_path / "demo" / name).stat().st_size > 1000
    text = console.export_text()
    assert "SubPT+NFL" in text and "CoOp base accuracy peaks" in text


def test_demo_is_the_studys_default_variant_with_its_one_method_setting():
    """The demo shows a typical member of the family, not one chosen because it shows the finding."""
    for seed in (1, 2, 3):
        assert demo_config(seed) == study_config(DEFAULT_GRID[0], seed)
    assert DEFAULT_GRID[0].options == {} and demo_config(1).dataset_options["cue"] == "none"


def test_demo_resume_keeps_finished_runs_and_finishes_the_others(tmp_path):
    out = tmp_path / "demo"
    quiet = Console(file=io.StringIO())
    first = run_demo(out, seeds=1, epochs=4, report=False, console=quiet, options=SMALL)
    names = ("coop", "coop_nfl", "subpt", "subpt_nfl", "subpt_late")
    stamps = {n: (out / "seed1" / n / "metrics.jsonl").stat().st_mtime_ns for n in names}

    def without_time(name: str) -> list[dict]:
        return [{k: v for k, v in m.items() if k != "seconds"} for m in read_metrics(out / "seed1" / name)]

    expected = {n: without_time(n) for n in ("subpt", "subpt_nfl")}
    shutil.rmtree(out / "seed1" / "subpt_nfl")  # never started
    d = out / "seed1"
    train(replace(demo_config(1, 4, SMALL), basis=str(d / "early.pt")), d / "subpt", overwrite=True, progress=False,
          stop_after=1)  # interrupted after its first epoch
    again = run_demo(out, seeds=1, epochs=4, report=False, console=quiet, resume=True, options=SMALL)
    for n in names:
        changed = (d / n / "metrics.jsonl").stat().st_mtime_ns != stamps[n]
        assert changed == (n in expected), n
    assert {n: without_time(n) for n in expected} == expected
    assert again["table"] == first["table"]


def test_demo_killed_at_a_commit_window_finishes_on_resume_with_the_same_table(tmp_path):
    """SUBPT_CRASH_AT=epoch-flushed@7 ends the demo in its second run (CoOp has 4 epochs), between a trajectory
    flush and the checkpoint, as SIGKILL would; a resumed demo gives the uninterrupted demo's table."""
    import os
    import subprocess
    import sys

    script = ("import io, json, sys; from pathlib import Path; from rich.console import Console; "
              "from subpt.experiments.demo import run_demo; "
              "s = run_demo(Path(sys.argv[1]), seeds=1, epochs=4, report=False, console=Console(file=io.StringIO()), "
              "resume=sys.argv[2] == 'resume', options={'test_per_class': 5}); print(json.dumps(s['table']))")
    env = {k: v for k, v in os.environ.items() if k != "SUBPT_CRASH_AT"}

    def demo(out, mode, **extra):
        return subprocess.run([sys.executable, "-c", script, str(out), mode], env={**env, **extra},
                              capture_output=True, text=True)

    full = demo(tmp_path / "full", "new")
    assert full.returncode == 0, full.stderr
    killed = demo(tmp_path / "killed", "new", SUBPT_CRASH_AT="epoch-flushed@7")
    assert killed.returncode == 137, killed.stderr
    resumed = demo(tmp_path / "killed", "resume")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout.splitlines()[-1]) == json.loads(full.stdout.splitlines()[-1])
