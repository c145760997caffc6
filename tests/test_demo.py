"""The README's main job end to end, at a tiny size: every method, the table, the curves and the report."""

from __future__ import annotations

import json

from rich.console import Console

from subpt.demo import METHODS, run_demo


def test_demo_runs_every_method_and_writes_its_outputs(tmp_path):
    console = Console(record=True, width=120)
    summary = run_demo(tmp_path / "demo", seeds=1, epochs=4, console=console)
    assert set(summary["table"]) == {"zero-shot", *METHODS}
    for cells in summary["table"].values():
        assert all(0 <= cells[k][0] <= 100 for k in ("base_acc", "novel_acc", "hm"))
    assert summary["t_early"] == 2 and summary["rank"] == 1
    curves = json.loads((tmp_path / "demo" / "curves.json").read_text())
    assert curves["CoOp"]["epoch"] == [1, 2, 3, 4]
    for name in ("curves.png", "report.html", "summary.json"):
        assert (tmp_path / "demo" / name).stat().st_size > 1000
    text = console.export_text()
    assert "SubPT+NFL" in text and "CoOp base accuracy peaks" in text
