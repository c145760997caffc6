"""NFL: teacher features are the cached template ensemble, the loss is mean(1 - cos), no novel image is used."""

from __future__ import annotations

import torch

import subpt.nfl as nfl_mod
import subpt.splits as splits_mod
from gradflow.trajectory import TrajectoryStore
from subpt.config import PromptConfig, TrainConfig
from subpt.data.catalogue import build_task
from subpt.evaluate import zero_shot_classifier
from subpt.nfl import NovelFeatureLearner, resolve_names, teacher_templates
from subpt.prompts import PromptLearner
from subpt.train import train

SMALL = dict(dataset="world-color-shape-36", shots=2, epochs=2, n_ctx=4, nfl=True, dataset_options={"test_per_class": 4})


def test_names_templates_and_loss(tiny_backbone, monkeypatch):
    task = build_task("world-color-shape-36", shots=1, seed=1)
    names = resolve_names("novel", task)
    assert names == task.classnames[18:]
    templates = teacher_templates(task)
    assert templates == task.templates and "a photo of a {}." in templates
    learner = PromptLearner(tiny_backbone, task.classnames[:18], PromptConfig(n_ctx=4), seed=1)
    nfl = NovelFeatureLearner(learner, names, templates)
    torch.testing.assert_close(nfl.teacher, zero_shot_classifier(tiny_backbone, names, templates))
    student = learner.text_features(learner.prompts_for(names))
    expected = (1 - torch.nn.functional.cosine_similarity(student, nfl.teacher, dim=-1)).mean()
    torch.testing.assert_close(nfl.loss(learner), expected, atol=1e-6, rtol=1e-5)

    calls = []
    monkeypatch.setattr(nfl_mod, "zero_shot_classifier", lambda *a: calls.append(a) or torch.zeros(1))
    again = NovelFeatureLearner(learner, names, templates)  # from the cache, not recomputed
    assert not calls and torch.equal(again.teacher, nfl.teacher)


def test_name_sources(tmp_path):
    task = build_task("world-color-shape-36", shots=1, seed=1)
    assert len(resolve_names("imagenet100", task)) == 100
    f = tmp_path / "names.txt"
    f.write_text("# extra names\nzebra\n\nfire truck\n")
    assert resolve_names(str(f), task) == ["zebra", "fire truck"]


def test_no_novel_image_is_ever_used(tmp_path, monkeypatch):
    """Training sees base images only; novel images reach evaluation alone and cannot change the context."""
    seen = []
    real = splits_mod.image_features

    def spy(backbone, task, split, **kw):
        seen.append((task.name, split, {it.classname for it in task.split(split)}))
        feats, labels = real(backbone, task, split, **kw)
        if set(task.classnames) & novel_names:
            feats = torch.nn.functional.normalize(torch.randn(feats.shape, generator=gen), dim=-1)
        return feats, labels

    task = build_task("world-color-shape-36", shots=1, seed=1)
    novel_names = set(resolve_names("novel", task))
    monkeypatch.setattr(splits_mod, "image_features", spy)
    runs = []
    for i in range(2):  # novel test images replaced by two different noise draws
        gen = torch.Generator().manual_seed(i)
        train(TrainConfig(**SMALL), tmp_path / f"run{i}", progress=False)
        runs.append(TrajectoryStore.open(tmp_path / f"run{i}" / "trajectory").rows("snapshots"))
    assert (runs[0] == runs[1]).all() and not (runs[0][0] == runs[0][-1]).all()
    train_classes = set().union(*(c for _, split, c in seen if split == "train"))
    assert train_classes and not train_classes & novel_names


def test_real_datasets_use_clips_80_templates_plus_their_own(tmp_path):
    from fake_datasets import make_fake_dataset

    from subpt.resources import imagenet_templates

    make_fake_dataset(tmp_path, "oxford_pets", n_classes=4, n_per_class=2)
    task = build_task("oxford_pets", root=tmp_path, shots=1, seed=1)
    templates = teacher_templates(task)
    assert len(imagenet_templates()) == 80
    assert templates == imagenet_templates() + [task.template] and "pet" in task.template
