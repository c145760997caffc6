"""The prefix-shared text encoder gives the full-sequence encoder's features and ctx gradient, and is used.

Tolerances: fp32 relative error (norm of the difference over the norm of the reference) at most 1e-5 for the
features and for ctx.grad; bf16 (autocast, or bf16 weights) at most 2e-2 for the features and 5e-2 for
ctx.grad, since bf16 keeps 8 bits of mantissa and the two paths round in different places.
"""

from __future__ import annotations

import open_clip
import pytest
import torch
import torch.nn.functional as F
from open_clip.transformer import Transformer

from subpt.backbone import Backbone, load_backbone
from subpt.config import PromptConfig, TrainConfig
from subpt.nfl import NovelFeatureLearner
from subpt.prefix_share import prefix_sharing_blocker
from subpt.prompts import PromptLearner
from subpt.train import backward_step

# name lengths differ within one batch: 1 to 8 name tokens, so the EOS positions differ
NAMES = [
    "red circle",
    "a",
    "golden retriever",
    "sea lion",
    "the great crested grebe of the northern lakes",
    "x-ray",
]
TINY_VISION = {"image_size": 32, "layers": [1, 1, 1, 1], "width": 16}
FP32_REL = 1e-5


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative error of a against the reference b."""
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).norm() / b.norm())


def config_backbone(
    name: str, embed_dim: int, text_cfg: dict, quick_gelu: bool = False, batch_first: bool = True
) -> Backbone:
    """A random open_clip CLIP with a tiny image tower and the given text tower, frozen, in eval mode."""
    torch.manual_seed(0)
    model = open_clip.CLIP(embed_dim, TINY_VISION, text_cfg, quick_gelu=quick_gelu)
    if not batch_first:  # open_clip 2.x ran its transformers sequence-first: the same weights, (L, N, D)
        t = model.transformer
        block = t.resblocks[0]
        seq_first = Transformer(
            t.width,
            t.layers,
            block.attn.num_heads,
            block.mlp.c_fc.out_features / t.width,
            ls_init_value=text_cfg.get("ls_init_value"),
            act_layer=type(block.mlp.gelu),
            batch_first=False,
        )
        seq_first.load_state_dict(t.state_dict())
        model.transformer = seq_first
    model.eval().requires_grad_(False)
    return Backbone(model, None, open_clip.get_tokenizer("ViT-B-16"), name, "random", f"test:{name}")


def vit_b16_text(layers: int = 2, **extra) -> dict:
    """ViT-B-16's text tower (width 512, 8 heads), with fewer layers to keep the tests fast."""
    return {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": layers, **extra}


BUILDERS = {
    "embedded": lambda: load_backbone("subpt-tiny", "embedded"),
    "vit-b16-text-2l": lambda: config_backbone("ViT-B-16", 512, vit_b16_text()),
    "rn50-text": lambda: config_backbone("RN50", 1024, vit_b16_text(layers=12), quick_gelu=True),
    "layerscale-seqfirst": lambda: config_backbone(
        "ViT-B-16", 512, vit_b16_text(ls_init_value=0.5), batch_first=False
    ),
}


@pytest.fixture(scope="module", params=list(BUILDERS))
def backbone(request) -> Backbone:
    return BUILDERS[request.param]()


def pair(backbone: Backbone, n_ctx: int = 4, names=NAMES, **cfg) -> tuple[PromptLearner, PromptLearner]:
    """The same learner twice: prefix-shared, and forced onto full sequences."""
    shared = PromptLearner(backbone, names, PromptConfig(n_ctx=n_ctx, **cfg), seed=3)
    full = PromptLearner(backbone, names, PromptConfig(n_ctx=n_ctx, **cfg), seed=3, prefix_share=False)
    return shared, full


def features_and_grad(
    learner: PromptLearner, weights: torch.Tensor, **kw
) -> tuple[torch.Tensor, torch.Tensor]:
    """Text features and the ctx gradient of a fixed linear function of them."""
    learner.ctx.grad = None
    feats = learner.text_features(**kw)
    (feats * weights[: feats.shape[0]]).sum().backward()
    return feats.detach(), learner.ctx.grad.clone()


class Counter:
    """Counts calls of the whole text transformer and tokens through the first block's MLP."""

    def __init__(self, model: torch.nn.Module):
        self.transformer_calls = 0
        self.mlp_tokens = 0
        self.handles = [
            model.transformer.register_forward_hook(lambda *_: self._call()),
            model.transformer.resblocks[0].mlp.register_forward_hook(lambda m, i, o: self._tokens(i[0])),
        ]

    def _call(self) -> None:
        self.transformer_calls += 1

    def _tokens(self, x: torch.Tensor) -> None:
        self.mlp_tokens += x.numel() // x.shape[-1]

    def __enter__(self) -> Counter:
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()


@pytest.mark.parametrize("n_ctx", [1, 4, 16])
def test_features_and_gradient_match_full_sequences(backbone, n_ctx):
    shared, full = pair(backbone, n_ctx)
    assert shared.shares_prefix() and not full.shares_prefix()
    w = torch.randn(len(NAMES), backbone.embed_dim, generator=torch.Generator().manual_seed(n_ctx))
    f_s, g_s = features_and_grad(shared, w)
    f_f, g_f = features_and_grad(full, w)
    assert rel(f_s, f_f) < FP32_REL
    assert rel(g_s, g_f) < FP32_REL


@pytest.mark.parametrize("chunk", [1, 2, 4, None])
@pytest.mark.parametrize("subset", [None, [4, 1], [0, 2, 3, 5]])
def test_chunks_and_class_subsets_match(backbone, chunk, subset):
    shared, full = pair(backbone, 4)
    ids = None if subset is None else torch.tensor(subset)
    w = torch.randn(len(NAMES), backbone.embed_dim, generator=torch.Generator().manual_seed(1))
    f_s, g_s = features_and_grad(shared, w, chunk_size=chunk, class_ids=ids)
    f_f, g_f = features_and_grad(full, w, class_ids=ids)
    assert rel(f_s, f_f) < FP32_REL
    assert rel(g_s, g_f) < FP32_REL


def test_truncation_and_other_name_sets_share_the_same_prefix(backbone):
    shared, full = pair(backbone, 4)
    other = ["novel thing", "b", "another much longer novel class name"]
    prefix = shared.prefix_state()
    assert prefix.length == 5
    got = shared.text_features(shared.prompts_for(other), prefix=prefix)
    assert rel(got, full.text_features(full.prompts_for(other))) < FP32_REL
    assert rel(shared.text_features(truncate=False), full.text_features(truncate=True)) < FP32_REL


def test_shared_path_is_the_one_used(backbone):
    """Fails if text_features silently falls back to full sequences where the prefix could be shared."""
    shared, full = pair(backbone, 16)
    n, prefix_len = len(NAMES), 17
    longest_suffix = int(shared.class_prompts.eos_idx.max()) + 1 - prefix_len
    with Counter(backbone.model) as c:
        shared.text_features()
    assert c.transformer_calls == 0
    assert c.mlp_tokens == prefix_len + n * longest_suffix
    with Counter(backbone.model) as c:
        shared.text_features(chunk_size=2)
    assert (
        c.mlp_tokens
        == prefix_len
        + sum(  # the prefix once, each chunk up to its own longest EOS
            int(shared.class_prompts.eos_idx[s : s + 2].max()) + 1 - prefix_len for s in range(0, n, 2)
        )
        * 2
    )
    with Counter(backbone.model) as c:
        full.text_features()
    assert c.transformer_calls == 1
    assert c.mlp_tokens == n * (longest_suffix + prefix_len)


@pytest.mark.parametrize(
    "setting", [{"csc": True}, {"class_token_position": "middle"}, {"class_token_position": "front"}]
)
def test_fallback_for_csc_and_class_token_not_at_the_end(tiny_backbone, setting):
    shared, full = pair(tiny_backbone, 4, **setting)
    assert not shared.shares_prefix()
    assert shared.prefix_state() is None
    with Counter(tiny_backbone.model) as c:
        got = shared.text_features()
    assert c.transformer_calls == 1
    torch.testing.assert_close(got, full.text_features(), rtol=0, atol=0)


@pytest.mark.parametrize(
    "extra",
    [{"qk_norm": True}, {"no_causal_mask": True}],
    ids=["custom-attention-block", "no-causal-mask"],
)
def test_fallback_for_towers_it_does_not_reproduce(extra):
    bb = config_backbone("ViT-B-16", 512, vit_b16_text(**extra))
    assert prefix_sharing_blocker(bb.model) is not None
    shared, full = pair(bb, 4)
    assert not shared.shares_prefix()
    torch.testing.assert_close(shared.text_features(), full.text_features(), rtol=0, atol=0)


def test_standard_towers_are_understood(tiny_backbone):
    assert prefix_sharing_blocker(tiny_backbone.model) is None
    for builder in ("vit-b16-text-2l", "layerscale-seqfirst"):
        assert prefix_sharing_blocker(BUILDERS[builder]().model) is None


@pytest.mark.parametrize("mode", ["autocast", "weights"])
def test_bf16_matches_within_bf16_rounding(tiny_backbone, mode):
    bb = tiny_backbone
    if mode == "weights":  # a text tower whose cast dtype is bf16
        bb = load_backbone("subpt-tiny", "embedded")
        bb.model.to(torch.bfloat16)
    shared, full = pair(bb, 16)
    w = torch.randn(len(NAMES), bb.embed_dim, generator=torch.Generator().manual_seed(2))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "autocast"):
        f_s, g_s = features_and_grad(shared, w)
        f_f, g_f = features_and_grad(full, w)
    assert f_s.dtype == f_f.dtype == torch.float32 and g_s.dtype == torch.float32
    assert rel(f_s, f_f) < 2e-2
    assert rel(g_s, g_f) < 5e-2


@pytest.mark.parametrize("chunk", [None, 2])
@pytest.mark.parametrize("nfl", [False, True])
def test_training_step_gradient_matches(tiny_backbone, chunk, nfl):
    """backward_step (CE + NFL, whole or in chunks) gives the full-sequence gradient."""
    cfg = TrainConfig(text_chunk=chunk, nfl=nfl)
    gen = torch.Generator().manual_seed(5)
    x = F.normalize(torch.randn(8, tiny_backbone.embed_dim, generator=gen), dim=-1)
    y = torch.randint(len(NAMES), (8,), generator=gen)
    grads, losses = [], []
    for learner in pair(tiny_backbone, 16):
        teacher = None
        if nfl:
            teacher = NovelFeatureLearner(
                learner, ["blue star", "green striped square"], ["a photo of a {}."]
            )
        scaler = torch.amp.GradScaler("cpu", enabled=False)
        learner.ctx.grad = None
        loss, _ = backward_step(learner, x, y, 8, teacher, cfg, scaler)
        grads.append(learner.ctx.grad.clone())
        losses.append(loss)
    assert abs(losses[0] - losses[1]) < 1e-5 * abs(losses[1])
    assert rel(grads[0], grads[1]) < FP32_REL


def test_chunked_training_step_runs_the_prefix_once_with_autograd(tiny_backbone):
    shared, _ = pair(tiny_backbone, 16)
    cfg = TrainConfig(text_chunk=2)
    x = F.normalize(torch.randn(4, tiny_backbone.embed_dim), dim=-1)
    with Counter(tiny_backbone.model) as c:
        backward_step(
            shared, x, torch.tensor([0, 1, 2, 3]), 4, None, cfg, torch.amp.GradScaler("cpu", enabled=False)
        )
    n, prefix_len = len(NAMES), 17
    suffix_tokens = sum(
        int(shared.class_prompts.eos_idx[s : s + 2].max()) + 1 - prefix_len for s in range(0, n, 2)
    )
    # no-grad pass: prefix + chunks; backward pass: prefix once + the same chunks
    assert c.transformer_calls == 0
    assert c.mlp_tokens == 2 * (prefix_len + 2 * suffix_tokens)


def test_joint_pass_equals_one_pass_per_name_set(backbone):
    """The classes and other names (NFL's) encoded in one joint pass: the same features and ctx gradient as
    separate passes and as full sequences, with the prefix once and one batch of suffixes through the tower."""
    shared, full = pair(backbone, 4)
    other = ["novel thing", "b", "another much longer novel class name than any class"]
    w = torch.randn(len(NAMES) + len(other), backbone.embed_dim, generator=torch.Generator().manual_seed(2))
    with Counter(backbone.model) as c:
        text, student = shared.joint_text_features([None, shared.prompts_for(other)])
    torch.cat([text, student]).mul(w).sum().backward()
    ends = torch.cat([shared.class_prompts.eos_idx, shared.prompts_for(other).eos_idx])
    assert c.mlp_tokens == 5 + (len(NAMES) + len(other)) * (int(ends.max()) + 1 - 5)
    f_full = [full.text_features(), full.text_features(full.prompts_for(other))]
    torch.cat(f_full).mul(w).sum().backward()
    assert rel(text, f_full[0]) < FP32_REL and rel(student, f_full[1]) < FP32_REL
    assert rel(shared.ctx.grad, full.ctx.grad) < FP32_REL


def test_joint_pass_falls_back_to_one_pass_per_set_without_a_shared_prefix(tiny_backbone):
    shared, full = pair(tiny_backbone, 4, class_token_position="front")
    other = full.prompts_for(["blue star"])
    got = shared.joint_text_features([None, shared.prompts_for(["blue star"])])
    torch.testing.assert_close(got[0], full.text_features(), rtol=0, atol=0)
    torch.testing.assert_close(got[1], full.text_features(other), rtol=0, atol=0)
