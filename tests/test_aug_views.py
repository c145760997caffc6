"""Augmented training views (--aug-views K): K views per training image encoded once and cached, one per epoch by
a rule of (seed, epoch, image index); the cache spares the image tower on a second run; resume stays bit-identical."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch
from kill_resume import train_full_and_killed
from typer.testing import CliRunner

from gradflow.trajectory import TrajectoryStore
from subpt import train as train_module
from subpt.config import AUG_VIEWS_DEFAULT, TrainConfig
from subpt.errors import SubptError
from subpt.features import epoch_views
from subpt.runs import read_metrics
from subpt.train import epoch_order, train

K = 4
SMALL = dict(dataset="world-color-shape-36", shots=2, n_ctx=4, dataset_options={"test_per_class": 4})


def small_config(**kw) -> TrainConfig:
    return TrainConfig(**{**SMALL, "epochs": 2, "aug_views": K, **kw})


def strip(metrics: list[dict]) -> list[dict]:
    """Metrics records without their wall-clock seconds."""
    return [{k: v for k, v in m.items() if k != "seconds"} for m in metrics]


class EncodeCounter:
    """Counts the images that pass through open_clip's image tower."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.images = 0
        original = open_clip.CLIP.encode_image

        def counting(model, image, *args, **kwargs):
            self.images += int(image.shape[0])
            return original(model, image, *args, **kwargs)

        monkeypatch.setattr(open_clip.CLIP, "encode_image", counting)


def test_two_epochs_see_different_views_of_every_training_image(tmp_path, monkeypatch):
    """What the trainer feeds: in each epoch every training image is one of its K augmented views (none is the test
    view), and epoch 2 shows every image in another view than epoch 1."""
    from subpt.backbone import load_backbone
    from subpt.data.base import subsample_task
    from subpt.data.catalogue import build_task
    from subpt.features import augmented_features, image_features

    seen: list[torch.Tensor] = []
    original = train_module.backward_step

    def spy(learner, x, y, *args, **kwargs):
        seen.append(x.detach().clone())
        return original(learner, x, y, *args, **kwargs)

    monkeypatch.setattr(train_module, "backward_step", spy)
    cfg = small_config(epochs=2)
    train(cfg, tmp_path / "run", progress=False)

    bb = load_backbone(cfg.model, cfg.pretrained)
    base = subsample_task(
        build_task(cfg.dataset, shots=cfg.shots, seed=cfg.seed, **cfg.dataset_options), "base"
    )
    views, _ = augmented_features(bb, base, K, cfg.seed, progress=False)  # from the cache the run filled
    test_view, _ = image_features(bb, base, "train", progress=False)
    n = views.shape[0]
    steps = -(-n // cfg.batch_size)
    assert len(seen) == 2 * steps
    shown = []
    for epoch in range(2):
        rows = torch.cat(seen[epoch * steps : (epoch + 1) * steps])
        per_image = torch.empty_like(rows)
        per_image[epoch_order(n, cfg.seed, epoch, torch.device("cpu"))] = rows  # back to image order
        shown.append(per_image)
        match = (per_image[:, None, :] == views).all(-1)  # (n, K): which cached view each image showed
        assert (match.sum(1) == 1).all(), (
            f"epoch {epoch + 1}: an image showed something other than one of its views"
        )
        assert not (per_image == test_view).all(-1).any(), "an image showed its test view"
    assert not (shown[0] == shown[1]).all(-1).any(), "an image showed the same view in epochs 1 and 2"
    assert not torch.allclose(views[:, 0], views[:, 1]), "the views of an image are not augmented"


def test_epoch_views_cycle_through_every_view():
    """Within each cycle of K epochs every image shows each of its K views once; the rule is a function of
    (seed, epoch, image index): the same for any number of images, another order for another seed."""
    n = 50
    for cycle in range(3):
        picks = torch.stack([epoch_views(n, K, seed=1, epoch=cycle * K + p) for p in range(K)], dim=1)
        assert (picks.sort(dim=1).values == torch.arange(K)).all()
        assert (picks[:, 1:] != picks[:, :-1]).all()  # consecutive epochs show different views
    assert torch.equal(epoch_views(n, K, 1, 5)[:20], epoch_views(20, K, 1, 5))
    assert not torch.equal(epoch_views(n, K, 1, 5), epoch_views(n, K, 2, 5))


def test_second_run_takes_the_views_from_the_cache(tmp_path, monkeypatch, capsys):
    """The first run encodes K views of every training image once (the cost printed first); a second run with the
    same model, items, K and seed passes nothing through the image tower."""
    monkeypatch.setenv("SUBPT_CACHE", str(tmp_path / "cache"))
    counter = EncodeCounter(monkeypatch)
    cfg = small_config(epochs=1)
    train(cfg, tmp_path / "first", progress=True)
    n_train = 18 * 2  # 18 base classes x 2 shots
    n_test = 36 * 4
    assert counter.images == K * n_train + n_test
    err = capsys.readouterr().err
    assert f"{K} augmented views x {n_train} training images = {K * n_train} image-tower passes" in err
    counter.images = 0
    train(cfg, tmp_path / "second", progress=False)
    assert counter.images == 0
    assert torch.equal(
        torch.load(tmp_path / "first" / "ckpt" / "last.pt", weights_only=True)["ctx"],
        torch.load(tmp_path / "second" / "ckpt" / "last.pt", weights_only=True)["ctx"],
    )
    train(small_config(epochs=1, aug_views=K + 1), tmp_path / "other-k", progress=False)
    assert counter.images == (K + 1) * n_train  # another K is another cache entry; the test views stay cached


def test_aug_views_setting_is_recorded_and_resolved(tmp_path):
    """config.json records the number; without --aug-views a real CLIP gets the default, the embedded one 0; a run
    saved before the option existed reads back as 0 with its old hash."""
    assert TrainConfig().aug_views == 0
    assert TrainConfig(model="ViT-B-16", pretrained="random").aug_views == AUG_VIEWS_DEFAULT
    train(small_config(epochs=1), tmp_path / "run", progress=False)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["aug_views"] == K
    old = {k: v for k, v in TrainConfig(**SMALL).to_dict().items() if k != "aug_views"}
    assert TrainConfig.from_dict(old).aug_views == 0
    assert TrainConfig.from_dict(old).hash() == TrainConfig(**SMALL, aug_views=0).hash()
    assert TrainConfig(**SMALL, aug_views=0).hash() != TrainConfig(**SMALL, aug_views=K).hash()
    with pytest.raises(SubptError, match="--aug-views must be 0"):
        TrainConfig(**SMALL, aug_views=-2).validate()


@pytest.mark.parametrize("command", ["train", "pipeline", "sweep", "study", "demo"])
def test_every_training_command_has_the_option(command):
    from subpt._cli.subpt_app import app

    result = CliRunner().invoke(app, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0 and "--aug-views" in result.output


def test_sweep_and_study_pass_the_option_to_their_runs(tmp_path):
    from subpt.experiments.study import DEFAULT_GRID, study_config
    from subpt.experiments.sweep import settings_from_options
    from subpt.experiments.sweep_plan import job_config, plan_jobs

    s = settings_from_options(
        "base2novel", "world-color-shape-36", "1", "zeroshot,coop", "2", str(tmp_path), aug_views=3
    )
    configs = {j.method: job_config(s, j) for j in plan_jobs(s)}
    assert configs["coop"].aug_views == 3 and configs["zeroshot"].aug_views == 0
    assert study_config(DEFAULT_GRID[0], 1, aug_views=5).aug_views == 5


def test_resume_after_stop_is_bit_identical_with_views(tmp_path):
    full = train(small_config(epochs=4, record_grads=True), tmp_path / "full", progress=False)
    train(small_config(epochs=4, record_grads=True), tmp_path / "part", progress=False, stop_after=2)
    resumed = train(small_config(epochs=4, record_grads=True), tmp_path / "part", resume=True, progress=False)
    assert strip(resumed) == strip(full)
    for e in range(1, 5):
        a = torch.load(tmp_path / "full" / "ckpt" / f"ctx_{e:03d}.pt", weights_only=True)["ctx"]
        b = torch.load(tmp_path / "part" / "ckpt" / f"ctx_{e:03d}.pt", weights_only=True)["ctx"]
        assert torch.equal(a, b)


def test_resume_after_sigkill_is_bit_identical_with_views(tmp_path):
    """A real process training on augmented views, killed mid-run with SIGKILL, resumes and ends exactly like an
    uninterrupted run (context, metrics, recorded gradients)."""
    args = [
        "--dataset",
        "world-color-shape-36",
        "--shots",
        "8",
        "--n-ctx",
        "4",
        "--epochs",
        "12",
        "--record",
        "--aug-views",
        str(K),
    ]
    train_full_and_killed(tmp_path, args, epochs=12)
    a = torch.load(tmp_path / "full" / "ckpt" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "killed" / "ckpt" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 12 and torch.equal(a["ctx"], b["ctx"])
    assert strip(read_metrics(tmp_path / "full")) == strip(read_metrics(tmp_path / "killed"))
    sa, sb = (TrajectoryStore.open(tmp_path / d / "trajectory") for d in ("full", "killed"))
    assert (sa.rows("grads") == sb.rows("grads")).all()
    assert json.loads((tmp_path / "killed" / "config.json").read_text())["aug_views"] == K


def test_evaluating_a_run_encodes_no_augmented_views(tmp_path, monkeypatch):
    """`subpt eval` of a run trained on augmented views evaluates on test views and never asks for training views."""
    from subpt import splits
    from subpt.runs import evaluate_saved_run

    train(small_config(epochs=1), tmp_path / "run", progress=False)

    def refuse(*args, **kwargs):
        raise AssertionError("evaluation asked for augmented training views")

    monkeypatch.setattr(splits, "augmented_features", refuse)
    result = evaluate_saved_run(tmp_path / "run", progress=False)
    assert result["base_acc"] == read_metrics(tmp_path / "run")[-1]["base_acc"]


def test_views_are_reproducible_and_the_first_k_of_more(tiny_backbone):
    """The views of an image are drawn from (seed, image index): computed again they are the same, and the first 2
    of 4 views are the 2 views of a 2-view cache; another seed draws other views."""
    from subpt.data.base import subsample_task
    from subpt.data.catalogue import build_task
    from subpt.features import augmented_features

    cfg = small_config()
    base = subsample_task(build_task(cfg.dataset, shots=cfg.shots, seed=1, **cfg.dataset_options), "base")
    two, _ = augmented_features(tiny_backbone, base, 2, seed=1, use_cache=False, progress=False)
    four, _ = augmented_features(tiny_backbone, base, 4, seed=1, use_cache=False, progress=False)
    other, _ = augmented_features(tiny_backbone, base, 2, seed=2, use_cache=False, progress=False)
    torch.testing.assert_close(four[:, :2], two, atol=1e-5, rtol=0)
    assert not torch.allclose(other, two, atol=1e-3)
