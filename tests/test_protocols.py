"""Protocols on tiny fake copies of CoOp's 15 datasets with a random-init tiny open_clip model: one training
epoch on each few-shot dataset, transfer of a learned context to other datasets and to the ImageNet variants
(cached), and a domain-generalisation sweep aggregated into its table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from fake_datasets import ALL_DATASETS, expected_classnames, make_fake_dataset
from subpt._cli.sweep_cmd import sweep, table
from typer.testing import CliRunner

import subpt.experiments.protocols as protocols
from subpt.config import TrainConfig
from subpt.errors import SubptError
from subpt.experiments.protocols import PROTOCOLS, get_protocol, transfer_eval
from subpt.prompts import PromptLearner
from subpt.runs import read_metrics
from subpt.train import train

TRAINABLE = ALL_DATASETS[:11]
VARIANTS = ALL_DATASETS[11:]
TINY = dict(model="subpt-tiny", pretrained="random", shots=1, epochs=1, n_ctx=4, batch_size=8)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    for name in ALL_DATASETS:
        make_fake_dataset(root, name, n_classes=4, n_per_class=2)
    return root


def test_protocol_registry():
    assert list(PROTOCOLS) == ["base2novel", "fewshot", "crossdataset", "domaingen"]
    b2n, fs, xd, dg = (PROTOCOLS[n] for n in PROTOCOLS)
    assert b2n.subsample == "base" and b2n.nfl_names == "novel" and len(b2n.datasets) == 11
    assert fs.subsample == "all" and fs.shots == (1, 2, 4, 8, 16) and fs.nfl_names == "imagenet100"
    assert xd.datasets == ("imagenet",) and set(xd.targets) == set(TRAINABLE) - {"imagenet"}
    assert dg.targets == ("imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r")
    assert [fs.default_epochs("dtd", k) for k in (1, 2, 4, 8, 16)] == [50, 100, 100, 200, 200]
    assert fs.default_epochs("imagenet", 16) == 50 and b2n.default_epochs("dtd", 16) == 100
    with pytest.raises(SubptError, match="unknown protocol"):
        get_protocol("zero")


@pytest.mark.parametrize("name", TRAINABLE)
def test_one_epoch_on_each_fake_dataset(data_root, tmp_path, name):
    run = tmp_path / "run"
    metrics = train(
        TrainConfig(dataset=name, root=str(data_root), subsample="base", **TINY), run, progress=False
    )
    assert len(metrics) == 1 and read_metrics(run) == metrics
    m = metrics[0]
    assert 0 <= m["base_acc"] <= 100 and 0 <= m["novel_acc"] <= 100 and m["hm"] == m["hm"]
    assert (run / "ckpt" / "ctx_001.pt").is_file() and (run / "zeroshot.json").is_file()


@pytest.fixture(scope="module")
def imagenet_run(data_root, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("src") / "imagenet-coop"
    train(TrainConfig(dataset="imagenet", root=str(data_root), subsample="all", **TINY), run, progress=False)
    return run


def test_transfer_to_another_dataset_is_cached(data_root, tmp_path, monkeypatch):
    run = tmp_path / "caltech"
    train(
        TrainConfig(dataset="caltech101", root=str(data_root), subsample="all", **TINY), run, progress=False
    )
    before = sorted(data_root.rglob("*"))
    res = transfer_eval(run, "oxford_pets", data_root, "cpu")
    assert 0 <= res["acc"] <= 100 and res["n_classes"] == 4 and res["n_test"] == 8 and res["epoch"] == 1
    cache = run / "transfer" / "oxford_pets.json"
    assert json.loads(cache.read_text())["acc"] == res["acc"]
    assert sorted(data_root.rglob("*")) == before  # nothing written under the data root
    monkeypatch.setattr(
        "subpt.backbone.load_backbone", lambda *a, **k: pytest.fail("recomputed a cached result")
    )
    assert transfer_eval(run, "oxford_pets", data_root, "cpu") == res


def test_transfer_to_the_imagenet_variants_prompts_their_own_names(data_root, imagenet_run, monkeypatch):
    prompted: list[list[str]] = []
    real = PromptLearner.prompts_for

    def spy(self, names):
        prompted.append(list(names))
        return real(self, names)

    monkeypatch.setattr(PromptLearner, "prompts_for", spy)
    for target in VARIANTS:
        res = transfer_eval(imagenet_run, target, None, "cpu")  # the run's own data root
        assert 0 <= res["acc"] <= 100 and res["target"] == target and res["source"] == "imagenet"
        assert prompted[-1] == expected_classnames(target, 4)
    assert prompted[2] != expected_classnames("imagenet", 4)  # -A has its own label space
    assert sorted(p.stem for p in (imagenet_run / "transfer").iterdir()) == sorted(VARIANTS)


def test_transfer_of_a_folder_that_is_no_run(tmp_path, data_root):
    with pytest.raises(SubptError, match="config.json is missing"):
        transfer_eval(tmp_path, "dtd", data_root, "cpu")


def test_domaingen_sweep_and_table(data_root, tmp_path, monkeypatch):
    app = typer.Typer()
    app.command("sweep")(sweep)
    app.command("table")(table)
    runner = CliRunner()
    out = tmp_path / "runs"
    args = [
        "sweep",
        "--protocol",
        "domaingen",
        "--root",
        str(data_root),
        "--model",
        "subpt-tiny",
        "--pretrained",
        "random",
        "--shots",
        "1",
        "--epochs",
        "2",
        "--seeds",
        "1",
        "--methods",
        "zeroshot,coop",
        "--n-ctx",
        "4",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--targets",
        "imagenet_v2,imagenet_a",
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "2 target(s) evaluated" in res.stdout
    evaluated = []
    monkeypatch.setattr(protocols, "atomic_write_json", lambda *a, **k: evaluated.append(a))
    assert "0 done, 0 resumed, 2 skipped" in runner.invoke(app, args).stdout and evaluated == []
    res = runner.invoke(app, ["table", str(out / "domaingen"), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)["protocols"][0]
    (t,) = report["tables"]
    assert t["columns"] == ["imagenet (source)", "imagenet_v2", "imagenet_a", "Average of 2 targets"]
    run = out / "domaingen" / "imagenet" / "shots1" / "seed1" / "coop"
    coop = next(r for r in t["rows"] if r["method"] == "coop")["cells"]
    accs = [
        json.loads((run / "transfer" / f"{x}.json").read_text())["acc"] for x in ("imagenet_v2", "imagenet_a")
    ]
    assert coop[0]["mean"] == pytest.approx(read_metrics(run)[-1]["base_acc"])
    assert [c["mean"] for c in coop[1:3]] == pytest.approx(accs)
    assert coop[3]["mean"] == pytest.approx(sum(accs) / 2)
    assert report["missing"] == []


TARGETS = "dtd,imagenet_v2"  # one of each transfer protocol's defaults, for both


def _transfer_sweep(protocol: str, data_root: Path, out: Path, targets: str) -> list[str]:
    return [
        "sweep", "--protocol", protocol, "--root", str(data_root), "--model", "subpt-tiny", "--pretrained", "random",
        "--shots", "1", "--epochs", "3", "--seeds", "1", "--methods", "zeroshot,coop,subpt", "--n-ctx", "4",
        "--device", "cpu", "--out", str(out), "--targets", targets,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def both_transfer_sweeps(data_root, tmp_path_factory):
    """One sweep over the cross-dataset and the domain-generalisation protocols, with the training loop counted:
    (out, the runs trained, its output)."""
    import subpt.train

    app = typer.Typer()
    app.command("sweep")(sweep)
    app.command("table")(table)
    out = tmp_path_factory.mktemp("both")
    real, trainings = subpt.train.train, []

    def counting(cfg, run_dir, **kw):
        trainings.append(Path(run_dir))
        return real(cfg, run_dir, **kw)

    mp = pytest.MonkeyPatch()
    mp.setattr(subpt.train, "train", counting)
    try:
        res = CliRunner().invoke(app, _transfer_sweep("crossdataset,domaingen", data_root, out, TARGETS))
    finally:
        mp.undo()
    assert res.exit_code == 0, res.output
    return out, trainings, res.stdout


def test_one_imagenet_training_serves_both_transfer_protocols(both_transfer_sweeps):
    out, trainings, output = both_transfer_sweeps
    seed = Path("imagenet") / "shots1" / "seed1"
    assert sorted(trainings) == [out / "crossdataset" / seed / m for m in ("coop", "subpt")]  # trained once
    first, second = output.split("== domaingen")
    assert "== crossdataset" in first and "3 reused from another protocol's folder" in second
    seed = Path("imagenet") / "shots1" / "seed1"
    xd, dg = out / "crossdataset" / seed, out / "domaingen" / seed
    for method in ("coop", "subpt"):
        assert read_metrics(dg / method) == read_metrics(xd / method)
        assert TrainConfig.load(dg / method / "config.json").basis in (None, str(dg / "basis_coop.pt"))
        assert sorted(p.stem for p in (dg / method / "transfer").iterdir()) == sorted(TARGETS.split(","))
    assert (dg / "basis_coop.pt").read_bytes() == (xd / "basis_coop.pt").read_bytes()
    assert (dg / "zeroshot" / "zeroshot.json").read_bytes() == (
        xd / "zeroshot" / "zeroshot.json"
    ).read_bytes()


def test_reused_runs_are_finished_runs_of_their_own_folder(both_transfer_sweeps, data_root, monkeypatch):
    """A third sweep over the domain-generalisation folder skips every job: the copies are that folder's runs."""
    import subpt.train

    out, _, _ = both_transfer_sweeps
    monkeypatch.setattr(subpt.train, "train", lambda *a, **k: pytest.fail("trained again"))
    app = typer.Typer()
    app.command("sweep")(sweep)
    app.command("table")(table)
    res = CliRunner().invoke(app, _transfer_sweep("domaingen", data_root, out, TARGETS))
    assert res.exit_code == 0, res.output
    assert "0 done, 0 resumed, 3 skipped." in res.stdout


def test_a_run_with_other_settings_is_not_reused(both_transfer_sweeps, data_root, tmp_path):
    import shutil

    out, _, _ = both_transfer_sweeps
    copy = tmp_path / "out"
    shutil.copytree(out / "crossdataset", copy / "crossdataset")
    app = typer.Typer()
    app.command("sweep")(sweep)
    app.command("table")(table)
    args = _transfer_sweep("domaingen", data_root, copy, TARGETS)
    args[args.index("--epochs") + 1] = "4"
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "2 done, 0 resumed, 0 skipped, 1 reused" in res.stdout  # zero-shot has no epochs: reused


@pytest.mark.parametrize("method", ["zeroshot", "coop", "subpt"])
def test_eval_of_each_transfer_run_folder_reproduces_the_sweep(both_transfer_sweeps, method):
    from subpt._cli.subpt_app import app

    out, _, _ = both_transfer_sweeps
    for protocol in ("crossdataset", "domaingen"):
        run = out / protocol / "imagenet" / "shots1" / "seed1" / method
        res = CliRunner().invoke(app, ["eval", str(run), "--json"])
        assert res.exit_code == 0, res.output
        ev = json.loads(res.stdout)
        recorded = (
            json.loads((run / "zeroshot.json").read_text()) if method == "zeroshot" else read_metrics(run)[-1]
        )
        assert ev["base_acc"] == recorded["base_acc"]
        assert ev["transfer"] == {
            t: json.loads((run / "transfer" / f"{t}.json").read_text())["acc"] for t in TARGETS.split(",")
        }
    printed = CliRunner().invoke(app, ["eval", str(out / "domaingen")])
    assert printed.exit_code == 0, printed.output
    lines = printed.stdout.strip().splitlines()
    assert len(lines) == 3 and all("imagenet_v2" in ln and ": acc " in ln for ln in lines), lines
