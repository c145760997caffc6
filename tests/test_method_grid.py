"""The prompt-learning method (`--method`) in `subpt pipeline`, `subpt sweep` and `subpt table`: each method's runs
in their own folders with the method in config.json, skipped when finished, tabulated side by side; the published
averages apart from the measured ones; run folders from before `--method` still tabulate."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import typer
from subpt._cli.subpt_app import app as subpt_app
from subpt._cli.sweep_cmd import sweep, table
from typer.testing import CliRunner

from subpt.config import TrainConfig
from subpt.errors import SubptError
from subpt.experiments.protocols import PUBLISHED_BASE2NOVEL
from subpt.experiments.sweep import run_sweep
from subpt.experiments.sweep_plan import SweepSettings
from subpt.report.rundata import RunReport, load_run
from subpt.report.sections import runs_table
from subpt.runs import read_metrics

app = typer.Typer()
app.command("sweep")(sweep)
app.command("table")(table)
runner = CliRunner()
DATASET = "world-objects"
OPTIONS = {"n_classes": 8, "test_per_class": 4}  # a run takes about a second
PROMPTS = ["coop", "kgcoop"]


def settings(out, **kw) -> SweepSettings:
    base = dict(
        protocol="base2novel",
        datasets=[DATASET],
        seeds=[1],
        methods=["zeroshot", "subpt"],
        shots=[1],
        out=str(out),
        epochs=3,
        n_ctx=4,
        embedded_options=OPTIONS,
        device="cpu",
        prompt_methods=PROMPTS,
    )
    return SweepSettings(**{**base, **kw})


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("methods")
    lines: list[str] = []
    result = run_sweep(settings(out), echo=lines.append)
    return out, lines, result


def seed_dir(out):
    return out / "base2novel" / DATASET / "shots1" / "seed1"


def test_every_method_runs_in_its_own_folders(swept):
    out, lines, result = swept
    d = seed_dir(out)
    runs = {"coop": "coop", "subpt": "coop", "kgcoop": "kgcoop", "subpt_kgcoop": "kgcoop"}
    assert sorted(p.name for p in d.iterdir() if p.is_dir()) == sorted([*runs, "zeroshot"])
    for name, prompt in runs.items():
        cfg = json.loads((d / name / "config.json").read_text())
        assert cfg["prompt_method"] == prompt and cfg["method_lambda"] is None, name
        assert len(read_metrics(d / name)) == 3
    assert json.loads((d / "subpt_kgcoop" / "config.json").read_text())["basis"].endswith(
        "seed1/basis_kgcoop.pt"
    )
    assert json.loads((d / "subpt" / "config.json").read_text())["basis"].endswith("seed1/basis_coop.pt")
    assert result["done"] == 5


def test_dry_run_plans_every_method_and_leaves_out_what_the_trainer_refuses(tmp_path):
    lines: list[str] = []
    s = settings(tmp_path, methods=["coop", "subpt_nfl"], prompt_methods=["kgcoop", "prograd"])
    run_sweep(s, dry_run=True, echo=lines.append)
    jobs = [ln.split(": ")[0].rsplit("/", 1)[1] for ln in lines if ln.startswith("[")]
    assert jobs == ["kgcoop", "kgcoop_nfl", "subpt_kgcoop_nfl", "prograd"]
    assert "basis of kgcoop_nfl" in next(ln for ln in lines if "subpt_kgcoop_nfl: run" in ln)
    # ProGrad+NFL is the trainer's refusal, printed with the trainer's own reason, not a second copy of the rule
    with pytest.raises(SubptError) as refusal:
        TrainConfig(prompt_method="prograd", nfl=True).validate_method()
    assert f"note: prograd_nfl left out: {refusal.value}" in lines
    assert f"note: subpt_prograd_nfl left out: {refusal.value}" in lines
    assert not (tmp_path / "base2novel").exists()


def test_a_second_sweep_of_the_methods_skips_every_run(swept):
    out, _, _ = swept
    lines: list[str] = []
    result = run_sweep(settings(out), echo=lines.append)
    assert result["skipped"] == 5 and result["done"] == 0


def test_table_shows_every_method_with_its_runs_numbers(swept, tmp_path):
    out, _, _ = swept
    res = runner.invoke(app, ["table", str(out / "base2novel"), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)["protocols"][0]
    per = next(t for t in report["tables"] if t["kind"] == "dataset")
    labels = [r["label"] for r in per["rows"]]
    assert labels == ["Zero-shot CLIP", "CoOp", "SubPT", "KgCoOp", "SubPT(KgCoOp)"]
    for row in per["rows"][1:]:
        last = read_metrics(seed_dir(out) / row["method"])[-1]
        assert [c["mean"] for c in row["cells"]] == [last["base_acc"], last["novel_acc"], last["hm"]]
    assert report["missing"] == []


def test_published_rows_stand_apart_with_their_source(swept):
    out, _, _ = swept
    res = runner.invoke(app, ["table", str(out / "base2novel"), "--json", "--published"])
    assert res.exit_code == 0, res.output
    tables = json.loads(res.stdout)["protocols"][0]["tables"]
    assert [t["kind"] for t in tables[:3]] == ["average", "published", "dataset"]
    average, published = tables[0], tables[1]
    assert all(c["status"] != "published" for r in average["rows"] for c in r["cells"])  # never mixed in
    assert [[c["mean"] for c in r["cells"]] for r in published["rows"]] == [
        list(v) for v in PUBLISHED_BASE2NOVEL.values()
    ]
    assert (
        "METHOD.md section 5" in published["title"]
        and published["rows"][4]["paper"] == "Yao et al., CVPR 2023"
    )
    assert published["unpublished"] == ["SubPT", "SubPT(KgCoOp)"]
    text = runner.invoke(app, ["table", str(out / "base2novel"), "--published"], terminal_width=200).stdout
    assert (
        "KgCoOp (published; method: Yao et al., CVPR 2023)" in text
        and "No published row in METHOD.md for SubPT" in text
    )


def test_published_is_refused_where_no_published_numbers_exist(tmp_path):
    fewshot = tmp_path / "fewshot"
    fewshot.mkdir()
    res = runner.invoke(app, ["table", str(fewshot), "--published"])
    assert res.exit_code == 2 and "--published" in res.stderr and "not base2novel" in res.stderr


def test_run_folders_without_the_method_field_still_tabulate(swept, tmp_path):
    out, _, _ = swept
    copy = tmp_path / "base2novel"
    shutil.copytree(out / "base2novel", copy)
    d = seed_dir(tmp_path)
    for name in ("coop", "subpt"):  # as written before --method existed
        cfg = json.loads((d / name / "config.json").read_text())
        del cfg["prompt_method"], cfg["method_lambda"]
        (d / name / "config.json").write_text(json.dumps(cfg))
    cfg = json.loads((d / "kgcoop" / "config.json").read_text())  # a folder whose config says another method
    (d / "kgcoop" / "config.json").write_text(json.dumps({**cfg, "prompt_method": "prograd"}))
    report = json.loads(runner.invoke(app, ["table", str(copy), "--json"]).stdout)["protocols"][0]
    per = {r["label"]: r for r in next(t for t in report["tables"] if t["kind"] == "dataset")["rows"]}
    assert per["CoOp"]["cells"][0]["mean"] == read_metrics(d / "coop")[-1]["base_acc"]
    assert per["SubPT"]["cells"][2]["status"] == "ok"
    assert [m["run"] for m in report["missing"]] == [str(d / "kgcoop")]
    assert "holds a ProGrad run" in report["missing"][0]["reason"]
    lines: list[str] = []
    assert (
        run_sweep(settings(tmp_path, prompt_methods=["coop"]), echo=lines.append)["skipped"] == 3
    )  # no retraining


def test_report_names_each_runs_method(swept):
    out, _, _ = swept
    html = runs_table([RunReport(load_run(seed_dir(out) / n)) for n in ("kgcoop", "subpt_kgcoop", "coop")])
    assert ">KgCoOp<" in html and "SubPT(KgCoOp)" in html and ">CoOp<" in html


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--method", "magic"], "--method: unknown method 'magic'"),
        (["--method", "kgcoop,kgcoop"], "lists a method twice"),
        (["--method", "coop,kgcoop", "--method-lambda", "2"], "exactly one --method other than coop"),
        (["--method", "kgcoop", "--method-lambda", "-1"], "--method-lambda must be a finite non-negative"),
        (["--method", "prograd", "--methods", "nfl"], "cannot be combined with --nfl"),
    ],
)
def test_bad_method_options_are_one_line(tmp_path, args, needle):
    base = ["sweep", "--datasets", DATASET, "--shots", "1", "--device", "cpu", "--out", str(tmp_path / "o")]
    res = runner.invoke(app, [*base, *args])
    assert res.exit_code == 2, res.output
    err = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and needle in err[0], res.stderr
    assert not (tmp_path / "o").exists()


def test_pipeline_trains_the_method_into_its_own_folders(tmp_path, monkeypatch):
    import subpt.experiments.pipeline as pipeline

    real = pipeline.run_pipeline

    def small(cfg, out, **kw):  # the CLI has no --test-per-class: fewer test images keep the runs at a second
        return real(
            dataclasses.replace(cfg, dataset_options={**cfg.dataset_options, "test_per_class": 4}), out, **kw
        )

    monkeypatch.setattr(pipeline, "run_pipeline", small)
    out = tmp_path / "ref"
    fast = [
        "--dataset",
        DATASET,
        "--n-classes",
        "8",
        "--shots",
        "1",
        "--n-ctx",
        "4",
        "--epochs",
        "3",
        "--t-early",
        "3",
        "--rank",
        "1",
    ]
    res = runner.invoke(
        subpt_app, ["pipeline", *fast, "--method", "kgcoop", "--method-lambda", "2", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    for name in ("kgcoop", "subpt_kgcoop"):
        cfg = json.loads((out / name / "config.json").read_text())
        assert cfg["prompt_method"] == "kgcoop" and cfg["method_lambda"] == 2.0
    assert json.loads((out / "subpt_kgcoop" / "config.json").read_text())["basis"] == str(
        out / "early_kgcoop.pt"
    )
    bad = runner.invoke(
        subpt_app, ["pipeline", *fast, "--method", "prograd", "--nfl", "--out", str(tmp_path / "x")]
    )
    assert (
        bad.exit_code == 2 and "cannot be combined with --nfl" in bad.stderr and not (tmp_path / "x").exists()
    )
