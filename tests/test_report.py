"""The interpretability report: numbers against metrics.jsonl, figures rendered in headless Chromium,
partial runs (missing trajectory, gradients, chunks, metrics), the trajectory-only report and the CLI."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from subpt.errors import SubptError

CHROMIUM = Path("/usr/bin/chromium")
FIGURES = {"accuracy", "spectrum", "rank", "angles", "drift", "captured", "classes", "cue"}
EPOCHS = 6


# ---------------------------------------------------------------------------------------------- helpers
class _Parser(HTMLParser):
    """Collects the summary numbers, the missing notes, the figures and the embedded JSON."""

    def __init__(self):
        super().__init__()
        self.nums: list[dict] = []
        self.missing: list[dict] = []
        self.figures: list[str] = []
        self.imgs: list[dict] = []
        self.sections: list[str] = []
        self._num: dict | None = None
        self._miss: dict | None = None
        self._json = False
        self.json_text = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "span" and a.get("class") == "num":
            self._num = {
                "key": a["data-key"],
                "value": a["data-value"],
                "scale": float(a.get("data-scale", 1)),
                "text": "",
            }
        elif tag == "div" and a.get("class") == "missing":
            self._miss = {"section": a["data-section"], "run": a["data-run"], "text": ""}
        elif tag == "figure":
            self.figures.append(a["data-figure"])
        elif tag == "img":
            self.imgs.append(a)
        elif tag == "section":
            self.sections.append(a["id"])
        elif tag == "script" and a.get("id") == "report-data":
            self._json = True

    def handle_endtag(self, tag):
        if tag == "span" and self._num is not None:
            self.nums.append(self._num)
            self._num = None
        elif tag == "div" and self._miss is not None:
            self.missing.append(self._miss)
            self._miss = None
        elif tag == "script":
            self._json = False

    def handle_data(self, data):
        if self._num is not None:
            self._num["text"] += data
        if self._miss is not None:
            self._miss["text"] += data
        if self._json:
            self.json_text += data


def parse(path: Path) -> _Parser:
    p = _Parser()
    p.feed(path.read_text(encoding="utf-8"))
    p.data = json.loads(p.json_text)
    return p


def lookup(data, key: str):
    cur = data
    for part in key.split("."):
        cur = cur[int(part)] if isinstance(cur, list) else cur[part]
    return cur


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def notes(p: _Parser, section: str) -> str:
    return " | ".join(m["text"] for m in p.missing if m["section"] == section)


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny tensors: one torch thread is faster, and immune to oversubscription on a busy 2-core machine."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from subpt.config import TrainConfig
    from subpt.embedded import model as tiny
    from subpt.train import train

    pretrained = "embedded" if tiny.CHECKPOINT_PATH.is_file() else "random"
    cfg = TrainConfig(
        dataset="world-color-shape-36",
        shots=2,
        epochs=EPOCHS,
        n_ctx=4,
        record_grads=True,
        pretrained=pretrained,
        dataset_options={"test_per_class": 10},
        batch_size=8,
        seed=1,
    )
    out = tmp_path_factory.mktemp("report") / "coop"
    train(cfg, out, progress=False)
    return out


@pytest.fixture(scope="module")
def report(run_dir: Path) -> Path:
    from subpt.report.build import write_report

    return write_report([run_dir], run_dir.parent / "report.html", progress=False)


def _copy(run_dir: Path, name: str) -> Path:
    dst = run_dir.parent / name
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(run_dir, dst)
    return dst


# ---------------------------------------------------------------------------------------------- full run
def test_summary_numbers_match_metrics(run_dir: Path, report: Path) -> None:
    p = parse(report)
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    zs = json.loads((run_dir / "zeroshot.json").read_text())
    acc = p.data["runs"][0]["accuracy"]
    base = [m["base_acc"] for m in metrics]
    peak_i = int(np.argmax(base))
    assert acc["base_peak"] == pytest.approx(base[peak_i])
    assert acc["base_peak_epoch"] == metrics[peak_i]["epoch"]
    assert acc["base_final"] == pytest.approx(metrics[-1]["base_acc"])
    assert acc["novel_final"] == pytest.approx(metrics[-1]["novel_acc"])
    assert acc["hm_final"] == pytest.approx(metrics[-1]["hm"])
    assert acc["final_epoch"] == EPOCHS
    assert acc["zs_base"] == pytest.approx(zs["base_acc"])
    assert acc["zs_novel"] == pytest.approx(zs["novel_acc"])
    below = [m["epoch"] for m in metrics if m["novel_acc"] < zs["novel_acc"]]
    assert acc["novel_below_epoch"] == (below[0] if below else None)
    assert p.data["runs"][0]["metrics"] == metrics

    # every number quoted in the summary is the embedded value, shown as formatted
    assert len(p.nums) >= 15
    for n in p.nums:
        value = lookup(p.data, n["key"])
        if isinstance(value, str):
            assert n["text"] == value == n["value"]
        else:
            assert float(n["value"]) == pytest.approx(value, rel=1e-9, abs=1e-12), n
            shown = float(re.sub(r"[^0-9.+-]", "", n["text"]))
            assert shown == pytest.approx(value * n["scale"], abs=0.051), n
    # the sentences on base and novel accuracy quote these exact values
    keys = {n["key"]: n for n in p.nums}
    assert f"{acc['base_final']:.1f}%" == keys["runs.0.accuracy.base_final"]["text"]
    assert "runs.0.accuracy.zs_novel" in keys
    if acc["novel_below_epoch"] is not None:
        assert keys["runs.0.accuracy.novel_below_epoch"]["text"] == str(acc["novel_below_epoch"])
    texts = " ".join(s["text"] for s in p.data["summary"])
    assert f"{acc['zs_novel']:.1f}%" in texts
    # recomputed per-class accuracy of the final context agrees with metrics.jsonl
    groups = p.data["runs"][0]["classes"]["groups"]
    assert groups["base"]["final_acc"] == pytest.approx(metrics[-1]["base_acc"], abs=1e-3)
    assert groups["novel"]["final_acc"] == pytest.approx(metrics[-1]["novel_acc"], abs=1e-3)
    assert groups["base"]["zero_shot_acc"] == pytest.approx(zs["base_acc"], abs=1e-3)


def test_all_sections_and_figures(report: Path) -> None:
    p = parse(report)
    assert FIGURES <= set(p.figures), set(p.figures)
    assert not [m for m in p.missing if "random weights" not in m["text"]], p.missing
    for img in p.imgs:
        src = img["src"]
        assert src.startswith("data:image/png;base64,")
        im = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert im.size[0] >= 400 and im.size[1] >= 250
        assert img.get("alt")
    assert "http://" not in report.read_text() and "https://" not in report.read_text()  # offline
    t = p.data["runs"][0]["trajectory"]
    assert t["source"] == "grads" and t["rank"] >= 1
    assert all(0 <= a <= 90 for a in t["principal_angles_deg"])
    assert t["early"]["window"] == "epochs:1-2" and t["late"]["window"] == f"epochs:{EPOCHS - 1}-{EPOCHS}"
    cols = p.data["runs"][0]["context"]["columns"]
    assert [c["epoch"] for c in cols][0] == 1 and cols[-1]["epoch"] == EPOCHS
    assert all(len(pos) == 5 for pos in cols[0]["tokens"]) and len(cols[0]["tokens"]) == 4
    cue = p.data["runs"][0]["classes"]["cue"]
    assert set(cue["base"]["context"]) == {"test", "test_cue_fixed", "test_cue_flipped"}


def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip(
            "/usr/bin/chromium is absent: install Debian's chromium (apt-get install -y chromium) to run this"
        )
    probe = tmp_path / "probe.html"
    script = (
        "<script>window.addEventListener('load',()=>{for(const i of document.images){"
        "i.setAttribute('data-complete',String(i.complete));i.setAttribute('data-nw',String(i.naturalWidth));}"
        "document.body.setAttribute('data-loaded','1');});</script>"
    )
    probe.write_text(
        report.read_text(encoding="utf-8").replace("</body>", script + "</body>"), encoding="utf-8"
    )
    flags = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        flags + ["--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert 'data-loaded="1"' in dom
    imgs = re.findall(r"<img [^>]*>", dom)
    n_figs = len(parse(report).imgs)
    assert len(imgs) == n_figs >= len(FIGURES)
    for tag in imgs:
        assert 'data-complete="true"' in tag
        nw = int(re.search(r'data-nw="(\d+)"', tag).group(1))
        assert nw >= 400, tag[:200]
    shot = tmp_path / "shot.png"
    subprocess.run(
        flags + [f"--screenshot={shot}", "--window-size=1280,4000", report.as_uri()],
        capture_output=True,
        timeout=60,
        check=True,
    )
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (4000, 1280)
    assert pixels.std() > 20  # not a blank page
    assert (pixels < 100).mean() > 0.01  # text and plot lines are drawn


# ---------------------------------------------------------------------------------------------- partial runs
def test_truncated_chunk_and_missing_metrics(run_dir: Path) -> None:
    from subpt.report.build import write_report

    d = _copy(run_dir, "damaged")
    chunk = sorted((d / "trajectory" / "grads").glob("chunk_*[0-9].npy"))[-1]
    chunk.write_bytes(chunk.read_bytes()[:200])  # a copy cut short
    (d / "metrics.jsonl").unlink()
    out = write_report([d], d.parent / "damaged.html", progress=False, model=False)
    p = parse(out)
    assert chunk.name in notes(p, "spectrum") and "truncated" in notes(p, "spectrum")
    assert chunk.name in notes(p, "captured")
    assert "metrics.jsonl is missing" in notes(p, "accuracy")
    assert "accuracy" not in p.figures
    assert {"spectrum", "angles", "captured"} <= set(p.figures)  # the other chunks still render
    assert p.data["runs"][0]["accuracy"] is None


def test_no_trajectory_folder(run_dir: Path) -> None:
    from subpt.report.build import write_report

    d = _copy(run_dir, "no_traj")
    shutil.rmtree(d / "trajectory")
    shutil.rmtree(d / "ckpt")  # and no checkpoints: the decoded context has nothing to read
    out = write_report([d], d.parent / "no_traj.html", progress=False, model=True)
    p = parse(out)
    for sec in ("spectrum", "angles", "captured"):
        assert "trajectory is missing" in notes(p, sec)
    assert "ctx" in notes(p, "context")
    assert "accuracy" in p.figures and "spectrum" not in p.figures
    assert p.data["runs"][0]["accuracy"]["final_epoch"] == EPOCHS


def test_no_gradient_stream_uses_snapshots(run_dir: Path) -> None:
    from subpt.report.build import write_report

    d = _copy(run_dir, "no_grads")
    manifest = json.loads((d / "trajectory" / "manifest.json").read_text())
    for c in manifest["streams"]["grads"]["chunks"]:
        (d / "trajectory" / c["file"]).unlink()
    manifest["streams"]["grads"]["chunks"] = []
    (d / "trajectory" / "manifest.json").write_text(json.dumps(manifest))
    torn = '{"epoch": 7, "ste'  # an interrupted write
    (d / "metrics.jsonl").write_text((run_dir / "metrics.jsonl").read_text() + torn)
    out = write_report([d], d.parent / "no_grads.html", progress=False, model=False)
    p = parse(out)
    assert "no per-step gradients" in notes(p, "spectrum")
    assert "--record" in notes(p, "captured") and "captured" not in p.figures
    assert "spectrum" in p.figures and "angles" in p.figures
    assert "incomplete" in notes(p, "accuracy")
    assert p.data["runs"][0]["trajectory"]["source"] == "snapshots"
    assert "left out on request" in notes(p, "context")


# ---------------------------------------------------------------------------------------------- sentences
def test_sentences_follow_the_data() -> None:
    from subpt.report.rundata import RunData, accuracy_summary
    from subpt.report.sentences import accuracy_sentences

    base = [70.0, 78.0, 81.2, 80.0, 76.4]
    novel = [77.0, 76.0, 75.5, 74.0, 73.0]
    run = RunData(path=Path("x"), name="x", zeroshot={"base_acc": 72.0, "novel_acc": 75.0, "hm": 73.5})
    run.metrics = [
        {"epoch": i + 1, "base_acc": b, "novel_acc": n, "hm": 2 * b * n / (b + n), "train_acc": 90.0}
        for i, (b, n) in enumerate(zip(base, novel))
    ]
    acc = accuracy_summary(run)
    text = " ".join(s.plain() for s in accuracy_sentences(acc, "a", ""))
    assert "Base accuracy peaked at 81.2% at epoch 3 and ended at 76.4% at epoch 5 (4.8 points lower)" in text
    assert "novel accuracy fell below zero-shot (75.0%) at epoch 4" in text.lower()
    assert "and stayed below it through the last epoch (2 evaluated epochs)" in text
    assert "it peaked at 77.0% at epoch 1 and ended at 73.0%, below zero-shot" in text

    novel = [74.0, 76.0, 79.0, 77.0, 76.5]  # below at epoch 1, then above: peak 79.0 at epoch 3
    run.metrics = [dict(m, novel_acc=n) for m, n in zip(run.metrics, novel)]
    text = " ".join(s.plain() for s in accuracy_sentences(accuracy_summary(run), "a", ""))
    assert "below zero-shot (75.0%) at the first evaluated epoch (1) and was below it at 1 of the 5" in text
    assert "it peaked at 79.0% at epoch 3 and ended at 76.5%, above zero-shot" in text

    run.metrics = [dict(m, base_acc=60 + m["epoch"], novel_acc=80.0) for m in run.metrics]
    text = " ".join(s.plain() for s in accuracy_sentences(accuracy_summary(run), "a", ""))
    assert "highest at the last evaluated epoch, 5: 65.0%" in text
    assert "never fell below zero-shot (75.0%)" in text
    assert "peaked" not in text


# ---------------------------------------------------------------------------------------------- CLI and errors
def _apps():
    from subpt._cli.report_cmd import register

    a, b = typer.Typer(), typer.Typer()
    a.callback()(lambda: None)
    b.callback()(lambda: None)
    register(a, b)
    return a, b


def test_cli_two_runs_trajectory_report_and_one_line_errors(run_dir: Path, tmp_path: Path) -> None:
    from subpt.report.build import write_report

    a, b = _apps()
    other = _copy(run_dir, "other")
    two = tmp_path / "two.html"
    r = CliRunner().invoke(
        a, ["report", str(run_dir), str(other), "--no-model", "--rank", "3", "--json", "-o", str(two)]
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["report"] == str(two)
    p = parse(two)
    assert [x["name"] for x in p.data["runs"]] == ["coop", "other"]
    assert any(n["key"].startswith("runs.1.") for n in p.nums)
    assert p.data["runs"][0]["trajectory"]["rank"] == 3 and p.data["options"]["rank"] == 3
    assert p.figures.count("spectrum") == 2 and p.figures.count("accuracy") == 1

    traj = tmp_path / "traj.html"
    r = CliRunner().invoke(b, ["report", str(run_dir / "trajectory"), "-q", "-o", str(traj)])
    assert r.exit_code == 0, r.output
    q = parse(traj)
    assert {"spectrum", "rank", "angles", "drift", "captured"} <= set(q.figures)
    assert "accuracy" not in q.sections and "context" not in q.sections

    r = CliRunner().invoke(a, ["report", str(tmp_path), "-o", str(tmp_path / "r.html")])
    assert r.exit_code == 2 and "is not a run folder" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(a, ["report", str(run_dir), "--rank", "0", "-o", str(tmp_path / "r.html")])
    assert r.exit_code == 2 and "--rank must be at least 1" in r.output
    r = CliRunner().invoke(
        a, ["report", str(run_dir), "--early-window", "epochs:x", "-o", str(tmp_path / "r.html")]
    )
    assert r.exit_code == 2 and "is not understood" in r.output
    r = CliRunner().invoke(b, ["report", str(tmp_path), "-o", str(tmp_path / "r.html")])
    assert r.exit_code == 2 and "is not a trajectory store" in r.output
    with pytest.raises(SubptError, match="unknown report option"):
        write_report([run_dir], tmp_path / "x.html", colour="red")
