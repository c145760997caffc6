"""The embedded default: deterministic world, held-out compositions, cue only in training, a tiny CLIP that works."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from subpt.backbone import load_backbone
from subpt.data.base import subsample_task
from subpt.data.catalogue import build_task
from subpt.embedded import model as tiny
from subpt.embedded import world
from subpt.embedded.pretrain import pretrain, pretraining_pool, to_model_input
from subpt.embedded.tasks import class_order
from subpt.evaluate import accuracy, classify, zero_shot_classifier
from subpt.features import image_features

# Measured on the shipped checkpoint (see docs/embedded.md); the test demands a wide margin above chance.
MIN_ZERO_SHOT_64 = 50.0


def test_rendering_is_deterministic_and_distinct():
    rng = np.random.default_rng(0)
    recipes = [world.random_recipe(rng) for _ in range(16)]
    a, b = world.render(recipes), world.render(recipes)
    assert a.dtype == np.uint8 and a.shape == (16, 32, 32, 3) and np.array_equal(a, b)
    masks = world._shape_masks(*np.meshgrid(np.linspace(-1.2, 1.2, 64), np.linspace(-1.2, 1.2, 64)))
    flat = masks.reshape(len(world.SHAPES), -1)
    for i in range(len(world.SHAPES)):
        for j in range(i + 1, len(world.SHAPES)):
            assert (flat[i] != flat[j]).mean() > 0.05, (world.SHAPES[i], world.SHAPES[j])


def test_pil_path_equals_tensor_path(tiny_backbone):
    recipe = world.random_recipe(np.random.default_rng(3))
    pixels = world.render([recipe])
    via_pil = tiny_backbone.preprocess(Image.fromarray(pixels[0]))
    torch.testing.assert_close(via_pil, to_model_input(pixels)[0], atol=1e-5, rtol=0)


def test_held_out_compositions_never_pretrained():
    held = world.held_out_compositions()
    assert len(held) == 8 and len({c for c, _ in held}) == 8 and len({s for _, s in held}) == 8
    assert not any((r.color, r.shape) in held for r in pretraining_pool(3000, seed=0))


def test_base_novel_halves_cover_every_attribute():
    order = class_order(8, 8)
    base, novel = order[:32], order[32:]
    for half in (base, novel):
        assert {c for c, _ in half} == set(range(8)) and {s for _, s in half} == set(range(8))


def test_cue_is_tied_in_training_only():
    task = build_task("world-color-shape", shots=8, seed=1, cue="background")
    for it in task.train + task.val:
        assert it.source.background == it.label % len(world.BACKGROUNDS)
    bg_test = [it.source.background == it.label % len(world.BACKGROUNDS) for it in task.test]
    assert 0.05 < np.mean(bg_test) < 0.35  # chance level (1/6), not tied
    assert not any(it.source.background == it.label % 6 for it in task.test_splits["test_cue_flipped"])
    none = build_task("world-color-shape", shots=8, seed=1, cue="none")
    assert np.mean([it.source.background == it.label % 6 for it in none.train]) < 0.4
    half = build_task("world-color-shape", shots=64, seed=1, cue="background", cue_strength=0.5)
    tied = np.mean([it.source.background == it.label % 6 for it in half.train])
    assert 0.5 < tied < 0.65  # half always tied + half at chance


def test_few_shot_draws_depend_on_seed_only():
    a = build_task("world-color-shape", shots=4, seed=1)
    b = build_task("world-color-shape", shots=4, seed=1)
    c = build_task("world-color-shape", shots=4, seed=2)
    assert a.train == b.train and a.train != c.train and a.test == c.test
    assert len(a.train) == 64 * 4 and len(a.val) == 64 * 4


def test_pretraining_is_deterministic():
    m1, _ = pretrain(steps=2, batch_size=16, pool_size=64, warmup=1)
    m2, _ = pretrain(steps=2, batch_size=16, pool_size=64, warmup=1)
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    init = tiny.create_random_model().state_dict()
    assert not torch.equal(s1["transformer.resblocks.0.mlp.c_fc.weight"], init["transformer.resblocks.0.mlp.c_fc.weight"])


def test_compact_checkpoint_round_trip(tmp_path):
    model, info = pretrain(steps=1, batch_size=8, pool_size=16, warmup=1)
    tiny.save_compact(model, tmp_path / "m.pt", info)
    state, info2 = tiny.load_compact(tmp_path / "m.pt")
    ref = model.state_dict()
    assert info2 == info and set(state) == set(ref)
    assert all(torch.equal(state[k], ref[k]) for k in ref)


def test_shipped_model_zero_shot_is_far_above_chance(tiny_backbone):
    task = subsample_task(build_task("world-color-shape", shots=1, seed=1), "all")
    feats, labels = image_features(tiny_backbone, task, "test", progress=False)
    w = zero_shot_classifier(tiny_backbone, task.classnames, [task.template])
    acc = accuracy(classify(feats, w, tiny_backbone.model.logit_scale), labels)
    assert acc >= MIN_ZERO_SHOT_64, f"zero-shot accuracy {acc:.1f}% on 64 classes (chance 1.6%)"


def test_missing_checkpoint_is_a_clear_error(tmp_path, monkeypatch):
    from subpt.errors import SubptError

    monkeypatch.setattr(tiny, "CHECKPOINT_PATH", tmp_path / "absent.pt")
    with pytest.raises(SubptError, match="subpt build-embedded"):
        load_backbone("subpt-tiny", "embedded")
