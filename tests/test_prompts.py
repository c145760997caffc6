"""The prompted text encoder reproduces open_clip's encode_text, and truncation changes nothing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from subpt.backbone import load_backbone
from subpt.config import PromptConfig
from subpt.errors import SubptError
from subpt.prompts import PromptLearner

NAMES = ["red circle", "blue square", "sea lion", "golden retriever", "a"]
MODELS = [("subpt-tiny", "embedded"), ("subpt-tiny", "random"), ("ViT-B-16", "random")]


@pytest.fixture(scope="module", params=MODELS, ids=lambda m: f"{m[0]}-{m[1]}")
def backbone(request):
    torch.manual_seed(0)
    return load_backbone(*request.param)


def reference(backbone, texts):
    return F.normalize(backbone.model.encode_text(backbone.tokenizer(texts)).float(), dim=-1)


def test_phrase_init_equals_encode_text(backbone):
    learner = PromptLearner(backbone, NAMES, PromptConfig(ctx_init="a photo of a"))
    assert learner.n_ctx == 4
    ours = learner.text_features()
    ref = reference(backbone, [f"a photo of a {n}." for n in NAMES])
    torch.testing.assert_close(ours, ref, atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("position", ["end", "middle", "front"])
def test_positions_place_context_where_the_text_says(backbone, position):
    learner = PromptLearner(backbone, NAMES, PromptConfig(ctx_init="a photo of a", class_token_position=position))
    words = ["a", "photo", "of", "a"]
    if position == "end":
        texts = [" ".join(words) + f" {n}." for n in NAMES]
    elif position == "front":
        texts = [f"{n} " + " ".join(words) + "." for n in NAMES]
    else:
        texts = [f"{words[0]} {words[1]} {n} {words[2]} {words[3]}." for n in NAMES]
    torch.testing.assert_close(learner.text_features(), reference(backbone, texts), atol=2e-6, rtol=1e-5)


def test_truncation_changes_nothing(backbone):
    learner = PromptLearner(backbone, NAMES, PromptConfig(n_ctx=8), seed=3)
    assert int(learner.class_prompts.eos_idx.max()) + 1 < backbone.model.context_length
    full = learner.text_features(truncate=False)
    short = learner.text_features(truncate=True)
    torch.testing.assert_close(short, full, atol=1e-6, rtol=1e-5)


def test_chunked_encoding_matches_one_batch(backbone):
    learner = PromptLearner(backbone, NAMES, PromptConfig(n_ctx=4), seed=2)
    torch.testing.assert_close(learner.text_features(chunk_size=2), learner.text_features(), atol=1e-6, rtol=1e-5)


def test_random_init_is_seeded_and_csc_shaped(tiny_backbone):
    a = PromptLearner(tiny_backbone, NAMES, PromptConfig(n_ctx=16), seed=1)
    b = PromptLearner(tiny_backbone, NAMES, PromptConfig(n_ctx=16), seed=1)
    c = PromptLearner(tiny_backbone, NAMES, PromptConfig(n_ctx=16), seed=2)
    assert torch.equal(a.ctx, b.ctx) and not torch.equal(a.ctx, c.ctx)
    assert a.ctx.shape == (16, tiny_backbone.width)
    assert abs(a.ctx.std().item() - 0.02) < 0.002
    csc = PromptLearner(tiny_backbone, NAMES, PromptConfig(n_ctx=4, csc=True))
    assert csc.ctx.shape == (len(NAMES), 4, tiny_backbone.width)
    assert csc.text_features().shape == (len(NAMES), tiny_backbone.embed_dim)
    with pytest.raises(SubptError, match="class-specific"):
        csc.text_features(csc.prompts_for(["green star"]))


def test_gradient_reaches_context_only(tiny_backbone):
    learner = PromptLearner(tiny_backbone, NAMES, PromptConfig(n_ctx=4))
    learner.text_features().sum().backward()
    assert learner.ctx.grad is not None and learner.ctx.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny_backbone.model.parameters())


def test_bad_prompt_settings_are_clear(tiny_backbone):
    with pytest.raises(SubptError, match="--n-ctx must be at least 1"):
        PromptLearner(tiny_backbone, NAMES, PromptConfig(n_ctx=0))
    with pytest.raises(SubptError, match="class-token-position"):
        PromptLearner(tiny_backbone, NAMES, PromptConfig(class_token_position="side"))
    with pytest.raises(SubptError, match="exceeds the text context length"):
        PromptLearner(tiny_backbone, ["very " * 80 + "long name"], PromptConfig(n_ctx=16))
