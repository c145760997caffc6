"""`subpt study`: a small grid end to end (the CI smoke of the long study), its claims computed from the runs,
resuming after SIGKILL without redoing finished runs, and bad input as one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from subpt._cli.subpt_app import app
from typer.testing import CliRunner

from subpt.experiments.study import CLAIMS, DEFAULT_GRID, METHODS, RUN_NAMES, baseline_claims, summarise
from subpt.runs import read_metrics

runner = CliRunner()
# Two small variants: few classes and test images so that a run takes about a second.
GRID = {
    "small": {"dataset": "world-objects", "options": {"n_classes": 8, "test_per_class": 5}},
    "small-cue": {"dataset": "world-objects", "options": {"n_classes": 8, "test_per_class": 5, "cue": "mark",
                                                          "partition_seed": 1}},
}


def _grid(tmp_path):
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(GRID))
    return path


def test_default_grid_covers_the_family():
    opts = [v.options for v in DEFAULT_GRID]
    assert len(DEFAULT_GRID) >= 8
    assert sum("partition_seed" in o for o in opts) >= 2 and {o.get("cue") for o in opts} >= {None, "mark", "background"}
    assert len({o.get("noise") for o in opts}) >= 2 and len({o.get("n_classes") for o in opts}) >= 2


def test_study_smoke_writes_the_table_from_the_runs(tmp_path):
    out = tmp_path / "study"
    res = runner.invoke(app, ["study", "--grid", str(_grid(tmp_path)), "--seeds", "1", "--epochs", "4",
                              "--baselines", "kgcoop", "--out", str(out)])
    assert res.exit_code == 0, res.output
    result = json.loads((out / "study.json").read_text())
    assert result["pairs"] == 2 and result["bases"] == {"early": "epochs:1-3", "late": "epochs:2-4", "rank": 1}
    # the baselines with the study's setting, each in its own folder, the method in its config.json
    assert result["baselines"] == {"KgCoOp": {"method": "kgcoop", "lambda": 8.0}}
    baselines = {"KgCoOp": "kgcoop"}
    for rec in result["records"]:
        seed_dir = out / rec["variant"] / "seed1"
        for m, name in [*RUN_NAMES.items(), *baselines.items()]:
            last = read_metrics(seed_dir / name)[-1]
            assert last["epoch"] == 4 and rec[m]["hm"] == last["hm"]
        for name in baselines.values():
            cfg = json.loads((seed_dir / name / "config.json").read_text())
            assert cfg["prompt_method"] == name and cfg["lr"] == 0.02 and cfg["n_ctx"] == 4
        zs = json.loads((seed_dir / "coop" / "zeroshot.json").read_text())
        assert rec["zero-shot"]["novel_acc"] == zs["novel_acc"]
        coop = read_metrics(seed_dir / "coop")
        assert rec["coop_curve"]["base_peak"] == max(m["base_acc"] for m in coop)
    claims = {**CLAIMS, **baseline_claims(["KgCoOp"])}
    assert set(result["claims"]) == set(claims)
    for name, c in result["claims"].items():
        assert c["holds"] == sum(claims[name](r) for r in result["records"]) and c["of"] == 2
    text = (out / "study.md").read_text()
    assert "| claim | holds in |" in text and "| SubPT+NFL HM > KgCoOp HM |" in text
    kg = result["means"]["KgCoOp"]
    assert kg["base_acc"] == sum(r["KgCoOp"]["base_acc"] for r in result["records"]) / 2
    assert f"| KgCoOp | {kg['base_acc']:.2f} | {kg['novel_acc']:.2f} | {kg['hm']:.2f} |" in text  # one seed: no std


def test_claims_are_counted_from_the_records():
    def rec(coop_novel: float, subpt_hm: float) -> dict:
        cells = {m: {"base_acc": 80.0, "novel_acc": 70.0, "hm": 74.0} for m in ("zero-shot", *METHODS)}
        cells["CoOp"] = {"base_acc": 85.0, "novel_acc": coop_novel, "hm": 60.0}
        cells["SubPT"] = {"base_acc": 82.0, "novel_acc": 70.0, "hm": subpt_hm}
        return {**cells, "coop_curve": {"base_peak": 86.0, "base_final": 85.0}}

    s = summarise([rec(60.0, 75.0), rec(75.0, 50.0), rec(65.0, 61.0)])
    assert "SubPT+NFL HM > KgCoOp HM" not in s["claims"]  # baselines only when asked for
    assert s["claims"]["CoOp novel < zero-shot novel"] == {"holds": 2, "of": 3}
    assert s["claims"]["SubPT HM > CoOp HM"] == {"holds": 2, "of": 3}
    assert s["claims"]["CoOp base peak - final >= 1"] == {"holds": 3, "of": 3}
    assert s["claims"]["late basis HM < early basis HM"] == {"holds": 1, "of": 3}


def test_baselines_get_mean_and_std_over_seeds_on_the_family_and_a_claim_each():
    def rec(seed: int, kg: tuple[float, float], subpt_nfl_hm: float) -> dict:
        cells = {m: {"base_acc": 80.0, "novel_acc": 70.0, "hm": 74.0} for m in ("zero-shot", *METHODS)}
        cells["KgCoOp"] = {"base_acc": kg[0], "novel_acc": kg[1], "hm": 2 * kg[0] * kg[1] / (kg[0] + kg[1])}
        cells["SubPT+NFL"] = {"base_acc": 80.0, "novel_acc": 70.0, "hm": subpt_nfl_hm}
        return {**cells, "seed": seed, "coop_curve": {"base_peak": 86.0, "base_final": 85.0}}

    # two variants x two seeds: seed 1 averages (70, 60) over the variants, seed 2 (80, 70)
    s = summarise([rec(1, (60.0, 50.0), 90.0), rec(1, (80.0, 70.0), 10.0),
                   rec(2, (70.0, 60.0), 90.0), rec(2, (90.0, 80.0), 90.0)], ["KgCoOp"])
    kg = s["means"]["KgCoOp"]
    assert (kg["base_acc"], kg["novel_acc"], s["seeds"]) == (75.0, 65.0, 2)
    assert kg["base_std"] == pytest.approx(7.0710678) and kg["novel_std"] == pytest.approx(7.0710678)
    hm1, hm2 = 2 * 70 * 60 / 130, 2 * 80 * 70 / 150
    assert kg["hm"] == pytest.approx(2 * 75 * 65 / 140) and kg["hm_std"] == pytest.approx(abs(hm1 - hm2) / 2**0.5)
    assert s["claims"]["SubPT+NFL HM > KgCoOp HM"] == {"holds": 3, "of": 4}


def test_study_resumes_after_sigkill_without_redoing_finished_runs(tmp_path):
    out = tmp_path / "study"
    cmd = [sys.executable, "-m", "subpt._cli.subpt_app", "study", "--grid", str(_grid(tmp_path)), "--seeds", "1",
           "--epochs", "4", "--baselines", "none", "--out", str(out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = out / "small" / "seed1" / "subpt" / "ckpt" / "ctx_002.pt"
    deadline = time.time() + 300
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {n: (out / "small" / "seed1" / n / "metrics.jsonl").stat().st_mtime_ns for n in ("coop", "coop_nfl")}
    assert len(read_metrics(out / "small" / "seed1" / "subpt")) < 4, "the kill came too late to test anything"
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    for n, stamp in finished.items():
        assert (out / "small" / "seed1" / n / "metrics.jsonl").stat().st_mtime_ns == stamp, n
    epochs = [m["epoch"] for m in read_metrics(out / "small" / "seed1" / "subpt")]
    assert epochs == [1, 2, 3, 4]
    assert json.loads((out / "study.json").read_text())["pairs"] == 2


def test_bad_study_input_is_one_line(tmp_path):
    bad = runner.invoke(app, ["study", "--variants", "nope", "--out", str(tmp_path / "s")])
    assert bad.exit_code == 2 and "unknown study variant" in bad.stderr
    (tmp_path / "g.json").write_text("[1, 2]")
    bad = runner.invoke(app, ["study", "--grid", str(tmp_path / "g.json"), "--out", str(tmp_path / "s")])
    assert bad.exit_code == 2 and "must map variant names" in bad.stderr
    bad = runner.invoke(app, ["study", "--seeds", "1,x", "--out", str(tmp_path / "s")])
    assert bad.exit_code == 2 and "--seeds" in bad.stderr
    bad = runner.invoke(app, ["study", "--epochs", "3", "--variants", "default", "--out", str(tmp_path / "s")])
    assert bad.exit_code == 2 and "at least 4 epochs" in bad.stderr
    for arg, needle in (("coop", "unknown baseline 'coop'"), ("none,kgcoop", "stand alone"), ("", "is empty")):
        bad = runner.invoke(app, ["study", "--baselines", arg, "--variants", "default", "--out", str(tmp_path / "s")])
        assert bad.exit_code == 2 and needle in bad.stderr, bad.stderr
    assert not (tmp_path / "s").exists()
