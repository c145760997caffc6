"""Dense evaluation end to end with the embedded tiny CLIP: zero-shot above chance, the feature cache, a run's
learned context transferred to the scenes' seen and unseen classes, and the `subpt dense eval` command."""

from __future__ import annotations

import json
import math

import pytest
import torch
from subpt._cli.subpt_app import app
from typer.testing import CliRunner

from gradflow.atomic import atomic_torch_save
from subpt.config import TrainConfig
from subpt.data.base import subsample_task
from subpt.dense.run_eval import TEMPLATE, dense_eval, run_text_features, template_text_features
from subpt.embedded.scenes import scene_classes
from subpt.embedded.tasks import objects_task
from subpt.errors import SubptError
from subpt.features import cache_dir
from subpt.runs import ckpt_path, save_config

N = 10  # scenes per evaluation: about 35 objects
METRICS = ("ap50_seen", "ap50_unseen", "ap50_hm", "miou_seen", "miou_unseen", "hiou")


def make_run(folder, ctx: torch.Tensor, **overrides) -> None:
    options = overrides.pop("dataset_options", {"n_classes": 12, "class_seed": 2})
    cfg = TrainConfig(dataset_options=options, n_ctx=ctx.shape[-2], epochs=1, **overrides)
    folder.mkdir(parents=True, exist_ok=True)
    save_config(folder, cfg)
    atomic_torch_save({"ctx": ctx, "epoch": 1}, ckpt_path(folder, 1), mkdir=True)


def template_ctx(backbone) -> torch.Tensor:
    """The token embeddings of 'a photo of a': spliced before a name, the prompt is the zero-shot template's."""
    tokens = backbone.tokenizer(["a photo of a"])
    with torch.no_grad():
        return backbone.model.token_embedding(tokens)[0, 1:5].float().clone()


@pytest.fixture(scope="module")
def zero_shot():
    return dense_eval(seed=1, n_scenes=N, progress=False)


def test_zero_shot_names_unseen_objects_far_above_chance(zero_shot):
    chance = dense_eval(seed=1, n_scenes=N, chance=True, progress=False)
    assert all(math.isfinite(zero_shot[k]) for k in METRICS)
    assert zero_shot["mode"] == "zeroshot" and zero_shot["template"] == TEMPLATE
    assert zero_shot["ap50_unseen"] > 20 and zero_shot["ap50_unseen"] > 5 * max(chance["ap50_unseen"], 1.0)
    assert zero_shot["miou_unseen"] > 3 * max(chance["miou_unseen"], 1.0)
    assert chance["proposals_per_scene"] == zero_shot["proposals_per_scene"]  # same regions, random names


def test_region_features_are_cached_and_a_damaged_entry_is_recomputed(zero_shot):
    files = sorted((cache_dir() / "dense").glob("regions-*.pt"))
    assert files
    again = dense_eval(seed=1, n_scenes=N, progress=False)
    assert {k: again[k] for k in METRICS} == {k: zero_shot[k] for k in METRICS}
    for f in files:
        f.write_bytes(b"broken")
    fresh = dense_eval(seed=1, n_scenes=N, progress=False)
    assert {k: fresh[k] for k in METRICS} == pytest.approx({k: zero_shot[k] for k in METRICS})


def test_oracle_proposals_use_the_ground_truth_regions():
    out = dense_eval(seed=1, n_scenes=4, oracle=True, progress=False)
    assert out["proposals"] == "oracle" and out["proposals_per_scene"] == out["objects"] / 4


def test_a_runs_context_is_spliced_like_the_template(tiny_backbone, tmp_path):
    names = list(scene_classes(n_classes=12, class_seed=2).names)
    make_run(tmp_path / "run", template_ctx(tiny_backbone))
    text, info = run_text_features(tmp_path / "run", tiny_backbone, names)
    assert info["epoch"] == 1 and info["method"] == "CoOp"
    assert torch.allclose(text, template_text_features(tiny_backbone, names), atol=1e-5)


def test_transfer_from_a_run_uses_its_class_set_and_matches_zero_shot_for_the_template_context(
    tiny_backbone, tmp_path
):
    make_run(tmp_path / "run", template_ctx(tiny_backbone))
    out = dense_eval(seed=2, n_scenes=4, run=tmp_path / "run", progress=False)
    assert out["mode"] == "run" and out["world"]["n_classes"] == 12 and out["world"]["class_seed"] == 2
    base = subsample_task(objects_task(shots=1, seed=0, n_classes=12, class_seed=2), "base")
    assert out["seen"] == base.classnames  # the run's base classes are the scenes' seen classes
    zs = dense_eval(seed=2, n_scenes=4, world={"n_classes": 12, "class_seed": 2}, progress=False)
    assert {k: out[k] for k in METRICS} == pytest.approx({k: zs[k] for k in METRICS}, nan_ok=True)


def test_a_random_context_changes_the_names(tiny_backbone, tmp_path):
    make_run(
        tmp_path / "run", torch.randn(4, tiny_backbone.width, generator=torch.Generator().manual_seed(0))
    )
    names = list(scene_classes(n_classes=12, class_seed=2).names)
    text, _ = run_text_features(tmp_path / "run", tiny_backbone, names)
    assert not torch.allclose(text, template_text_features(tiny_backbone, names), atol=1e-3)


def test_bad_runs_and_options_are_one_line_errors(tiny_backbone, tmp_path):
    ctx = template_ctx(tiny_backbone)
    make_run(tmp_path / "run", ctx)
    with pytest.raises(SubptError, match="--n-classes 20 contradicts"):
        dense_eval(seed=1, n_scenes=1, run=tmp_path / "run", world={"n_classes": 20}, progress=False)
    make_run(tmp_path / "csc", ctx.unsqueeze(0).repeat(6, 1, 1), csc=True)
    with pytest.raises(SubptError, match="class-specific"):
        dense_eval(seed=1, n_scenes=1, run=tmp_path / "csc", progress=False)
    make_run(tmp_path / "other", ctx, dataset="world-color-shape-36", dataset_options={})
    with pytest.raises(SubptError, match="world-objects"):
        dense_eval(seed=1, n_scenes=1, run=tmp_path / "other", progress=False)
    with pytest.raises(SubptError, match="--epoch needs --run"):
        dense_eval(seed=1, n_scenes=1, epoch=3, progress=False)
    with pytest.raises(SubptError, match="not a folder"):
        dense_eval(seed=1, n_scenes=1, run=tmp_path / "missing", progress=False)
    with pytest.raises(SubptError, match="--threshold"):
        dense_eval(seed=1, n_scenes=1, threshold=1.5, progress=False)


def test_command_prints_and_writes_json(tmp_path):
    runner = CliRunner()
    out = tmp_path / "res.json"
    args = ["dense", "eval", "--scenes", "2", "--n-classes", "8", "--seed", "3", "--out", str(out), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    printed, written = json.loads(result.stdout), json.loads(out.read_text())
    assert printed["ap50_unseen"] == written["ap50_unseen"] and written["world"]["n_classes"] == 8
    table = runner.invoke(app, ["dense", "eval", "--scenes", "2", "--n-classes", "8", "--out", str(out)])
    assert table.exit_code == 0 and "box AP50" in table.stdout and "mIoU" in table.stdout
    bad = runner.invoke(app, ["dense", "eval", "--scenes", "0", "--out", str(out)])
    assert bad.exit_code == 2 and bad.stderr.strip().startswith("error: --scenes")
    assert len(bad.stderr.strip().splitlines()) == 1


def test_the_command_layer_does_not_import_the_dense_libraries():
    import subprocess
    import sys

    code = (
        "import sys, subpt._cli.subpt_app; "
        "print(sorted(m for m in ('skimage', 'torchmetrics', 'pycocotools') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"  # every `subpt` command would otherwise pay for them at start-up


def test_scenes_without_proposals_score_zero_and_everything_is_background(tiny_backbone):
    import numpy as np

    from subpt.dense.evaluate import evaluate_scenes
    from subpt.dense.proposals import Proposals
    from subpt.embedded.scenes import make_scenes

    classes = scene_classes(n_classes=8)
    scenes = make_scenes(classes, 1, 2)
    text = template_text_features(tiny_backbone, list(classes.names))

    def nothing(image: np.ndarray) -> Proposals:
        return Proposals(np.zeros((0, 4), np.float32), np.zeros((0, *image.shape[:2]), bool))

    out = evaluate_scenes(tiny_backbone, classes, scenes, text, None, proposer=nothing, progress=False)
    assert out["proposals_per_scene"] == 0.0
    present = {int(c) for s in scenes for c in s.labels}
    assert set(out["ap50_per_class"]) == present and all(v == 0.0 for v in out["ap50_per_class"].values())
    for part, labels in (("seen", classes.seen), ("unseen", classes.unseen)):
        value = out[f"miou_{part}"]
        assert value == 0.0 if present & set(labels) else np.isnan(value)
    # every pixel predicted background: its IoU is the share of background pixels in the ground truth
    background = sum(int((s.instances < 0).sum()) for s in scenes) / sum(s.instances.size for s in scenes)
    assert out["iou_background"] == pytest.approx(100 * background)
