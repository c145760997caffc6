"""The embedded world as a family of tasks: every option is validated, named in full in config.json, round-trips
through `subpt train` and `subpt eval`, and random partitions keep zero-shot base and novel close."""

from __future__ import annotations

import json
import statistics

import pytest
from subpt._cli.subpt_app import app
from typer.testing import CliRunner

from subpt.config import TrainConfig
from subpt.data.base import subsample_task
from subpt.data.catalogue import build_task
from subpt.embedded import world
from subpt.embedded.tasks import class_order
from subpt.errors import SubptError
from subpt.evaluate import accuracy, classify, zero_shot_classifier
from subpt.features import image_features

runner = CliRunner()


def test_object_kinds_have_unique_single_word_names_apart_from_the_attribute_words():
    names = [k.name for k in world.OBJECT_KINDS]
    attributes = {*world.COLOR_NAMES, *world.SHAPES, *world.PATTERNS, *world.SIZE_NAMES, *world.BACKGROUND_NAMES}
    assert len(names) == len(set(names)) == len(world.COLORS) * len(world.SHAPES) * len(world.PATTERNS)
    assert all(" " not in n and n not in attributes for n in names)


def test_a_kind_varies_its_look_and_mostly_shows_its_main_one():
    kind = world.OBJECT_KINDS[5]
    import numpy as np

    looks = [kind.sample(np.random.default_rng(i)) for i in range(400)]
    main = sum(c == kind.color for c, _, _ in looks) / len(looks)
    assert abs(main - world.MAIN_LOOK["color"]) < 0.05 and {c for c, _, _ in looks} == {kind.color, kind.color2}


def test_default_partition_is_coops_rule_on_sorted_names_and_a_seed_draws_another():
    task = build_task("world-objects", shots=1, seed=1)
    assert task.classnames == sorted(task.classnames) and task.num_classes == 64
    other = build_task("world-objects", shots=1, seed=1, partition_seed=3)
    assert sorted(other.classnames) == task.classnames and other.classnames != task.classnames
    base, novel = subsample_task(other, "base"), subsample_task(other, "novel")
    assert not set(base.classnames) & set(novel.classnames)


def test_class_set_size_and_held_out_kinds():
    held = world.held_out_compositions()
    by_name = {k.name: k for k in world.OBJECT_KINDS}
    a = build_task("world-objects", shots=1, seed=1, n_classes=20, class_seed=4)
    assert a.num_classes == 20 and a.classnames != build_task("world-objects", shots=1, seed=1, n_classes=20).classnames
    assert all((by_name[n].color, by_name[n].shape) not in held for n in a.classnames)
    every = build_task("world-objects", shots=1, seed=1, n_classes=192, held_out=True)
    assert sum((by_name[n].color, by_name[n].shape) in held for n in every.classnames) == 24


def test_world_color_shape_spreads_held_out_compositions_over_both_halves():
    order = class_order(8, 8)
    held = world.held_out_compositions()
    assert sum(cs in held for cs in order[:32]) == 4 and sum(cs in held for cs in order[32:]) == 4
    for half in (order[:32], order[32:]):
        assert {c for c, _ in half} == set(range(8)) and {s for _, s in half} == set(range(8))


@pytest.mark.parametrize(
    "options, needle",
    [
        ({"n_classes": 1}, "--n-classes"),
        ({"n_classes": 500}, "--n-classes"),
        ({"class_seed": -1}, "--class-seed"),
        ({"partition_seed": -2}, "--partition-seed"),
        ({"noise": float("nan")}, "--noise"),
        ({"cue": "smell"}, "--cue"),
        ({"scene": 1.5}, "--scene"),
        ({"colour": "red"}, "no option(s) colour"),
    ],
)
def test_bad_task_options_are_one_clear_error(options, needle):
    with pytest.raises(SubptError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        build_task("world-objects", shots=2, seed=1, **options)


def test_config_names_the_task_in_full():
    cfg = TrainConfig(dataset="world-objects", dataset_options={"noise": 20.0})
    assert cfg.dataset_options == {"n_classes": 64, "class_seed": 0, "partition_seed": None, "held_out": False,
                                   "scene": 0.5, "main_color": 0.5, "cue": "none", "cue_strength": 1.0, "noise": 20.0,
                                   "test_per_class": 50}
    assert cfg.hash() == TrainConfig(dataset="world-objects", dataset_options=dict(cfg.dataset_options)).hash()


def test_every_world_option_round_trips_through_train_and_eval(tmp_path):
    run = tmp_path / "run"
    args = ["train", "--dataset", "world-objects", "--n-classes", "12", "--class-seed", "2", "--partition-seed", "5",
            "--scene", "0.3", "--cue", "mark", "--cue-strength", "0.5", "--noise", "16", "--shots", "2", "--n-ctx", "4", "--epochs", "2",
            "--out", str(run), "--json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    saved = json.loads((run / "config.json").read_text())["dataset_options"]
    assert saved == {"n_classes": 12, "class_seed": 2, "partition_seed": 5, "held_out": False, "scene": 0.3,
                     "main_color": 0.5, "cue": "mark", "cue_strength": 0.5, "noise": 16.0, "test_per_class": 50}
    final = json.loads(res.stdout)["final"]
    again = runner.invoke(app, ["eval", str(run), "--json"])
    assert again.exit_code == 0, again.output
    ev = json.loads(again.stdout)
    assert (ev["base_acc"], ev["novel_acc"]) == (final["base_acc"], final["novel_acc"])
    bad = runner.invoke(app, ["train", "--n-classes", "1", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "--n-classes" in bad.stderr and not (tmp_path / "bad").exists()


def test_zero_shot_base_and_novel_are_close_over_random_partitions(tiny_backbone):
    """As on real data: a random half of the classes is as well known to the model as the other half."""
    gaps, accs = [], []
    for partition in (None, 1, 2, 3):
        task = build_task("world-objects", shots=1, seed=1, partition_seed=partition)
        result = []
        for half in ("base", "novel"):
            part = subsample_task(task, half)
            feats, labels = image_features(tiny_backbone, part, "test", progress=False)
            w = zero_shot_classifier(tiny_backbone, part.classnames, [part.template])
            result.append(accuracy(classify(feats, w, tiny_backbone.model.logit_scale), labels))
        gaps.append(result[0] - result[1])
        accs += result
    assert abs(statistics.fmean(gaps)) < 5.0
    assert 40.0 < statistics.fmean(accs) < 97.0  # well above chance (3 %), yet with room to learn
