"""CoCoOp (Zhou et al., CVPR 2022) as `subpt train --method cocoop`: CoOp's context shifted per image.

A meta-network Linear(d, d/16) -> ReLU -> Linear(d/16, width) maps each image's normalised feature x to a shift
pi(x) added to every context vector, so image b has its own prompts `[SOS] (ctx + pi(x_b)) [name] . [EOS]`, its own
class text features text_{b,c}, and logits scale * <x_b, text_{b,c}>. With pi = 0 this is CoOp.

Per-image text passes are the cost. They are batched (several images' prompts in one text pass) and, with
`--text-chunk K`, cut into pieces of at most K (image, class) sequences: groups of K // C images with all C classes,
or, when C > K, one image with K classes at a time (`pieces`). Where CoOp's prompts share their `[SOS] ctx` prefix,
each image's prefix `[SOS] ctx + pi(x_b)` is encoded once and the class suffixes run after it (B prefixes,
B x C suffixes, `subpt.prefix_share`). The meta-network's parameters are one flat tensor, so that the checkpoint,
the optimiser, the DDP all-reduce and the gradient recorder see it as one named entry (`META_NAME`) next to ctx.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

import torch
import torch.nn.functional as F
from torch import nn

from subpt.backbone import Backbone
from subpt.config import PromptConfig, TrainConfig
from subpt.prefix_share import encode_prefix, encode_suffixes
from subpt.prompts import ClassPrompts, PromptLearner, encode_token_embeddings

META_NAME = "meta_net"  # the meta-network's entry in checkpoints and in the run's trajectory store
EVAL_SEQUENCES = 4096  # (image, class) sequences per text pass at evaluation when --text-chunk is not given


class MetaNet(nn.Module):
    """CoCoOp's meta-network Linear(in_dim, in_dim // 16) -> ReLU -> Linear(in_dim // 16, width), its weights and
    biases held in one flat parameter `flat` and initialised as torch's nn.Linear does, from a generator of `seed`."""

    def __init__(self, in_dim: int, width: int, seed: int, device: torch.device | str):
        super().__init__()
        hidden = max(1, in_dim // 16)
        self.shapes = [(hidden, in_dim), (hidden,), (width, hidden), (width,)]
        gen = torch.Generator().manual_seed(1_000_033 * int(seed) + 16)
        parts = []
        for shape, fan_in in zip(self.shapes, (in_dim, in_dim, hidden, hidden)):
            bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
            parts.append((torch.rand(math.prod(shape), generator=gen) * 2 - 1) * bound)
        self.flat = nn.Parameter(torch.cat(parts).to(device))

    def weights(self) -> list[torch.Tensor]:
        """Views of `flat` as (W1, b1, W2, b2)."""
        sizes = [math.prod(s) for s in self.shapes]
        return [p.view(s) for p, s in zip(self.flat.split(sizes), self.shapes)]

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        """The shift pi(x) (B, width) of each image feature (B, in_dim)."""
        w1, b1, w2, b2 = self.weights()
        return F.linear(F.relu(F.linear(image_features, w1, b1)), w2, b2)


def pieces(images: int, classes: int, chunk: int | None) -> list[tuple[slice, slice]]:
    """(images, classes) slices covering the grid, each at most `chunk` sequences (None: one piece)."""
    if chunk is None or chunk >= images * classes:
        return [(slice(0, images), slice(0, classes))]
    if classes <= chunk:
        group = chunk // classes
        return [(slice(i, min(images, i + group)), slice(0, classes)) for i in range(0, images, group)]
    return [
        (slice(i, i + 1), slice(s, min(classes, s + chunk)))
        for i in range(images)
        for s in range(0, classes, chunk)
    ]


def per_image_classify(
    image_features: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Logits (B, C) of normalised image features (B, D) against their own normalised text features (B, C, D)."""
    return logit_scale.exp().float() * torch.einsum("bd,bcd->bc", image_features.float(), text.float())


class CoCoOpLearner(PromptLearner):
    """CoOp's shared context plus CoCoOp's meta-network; the text features are per image."""

    conditional = True

    def __init__(
        self,
        backbone: Backbone,
        classnames: Sequence[str],
        cfg: PromptConfig,
        seed: int = 1,
        prefix_share: bool = True,
    ):
        super().__init__(backbone, classnames, cfg, seed=seed, prefix_share=prefix_share)
        self.meta = MetaNet(backbone.embed_dim, self.width, seed, backbone.device)

    def extra_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """The trained parameters besides ctx: the meta-network."""
        return [(META_NAME, self.meta.flat)]

    def image_contexts(self, image_features: torch.Tensor) -> torch.Tensor:
        """Each image's context ctx + pi(x) (B, n_ctx, width) for normalised image features (B, d)."""
        shift = self.meta(image_features.to(self.meta.flat.dtype))
        return self.ctx.unsqueeze(0) + shift.unsqueeze(1)

    def image_text_features(
        self, ctxs: torch.Tensor, prompts: ClassPrompts | None = None, class_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Normalised text features (B, n, D) of the classes (default: all training classes) prompted with each
        image's context `ctxs` (B, n_ctx, width), in one text pass; prefix-shared per image where CoOp's is."""
        prompts = prompts or self.class_prompts
        device = prompts.embeddings.device
        ids = torch.arange(prompts.embeddings.shape[0], device=device) if class_ids is None else class_ids
        model = self.backbone.model
        images = ctxs.shape[0]
        if self.shares_prefix(prompts):
            sos = prompts.embeddings[0, :1]
            prefix = torch.cat([sos.expand(images, 1, sos.shape[-1]), ctxs.to(sos.dtype)], dim=1)
            start = prompts.prefix_len
            emb = prompts.embeddings[ids, start:]
            feats = encode_suffixes(model, encode_prefix(model, prefix), emb, prompts.eos_idx[ids] - start)
        else:
            seqs = torch.cat([self.assemble(prompts, ids, ctx=c) for c in ctxs])
            feats = encode_token_embeddings(model, seqs, prompts.eos_idx[ids].repeat(images)).reshape(
                images, ids.numel(), -1
            )
        return F.normalize(feats.float(), dim=-1)

    def chunked_text_features(
        self, ctxs: torch.Tensor, prompts: ClassPrompts | None = None, chunk: int | None = None
    ) -> torch.Tensor:
        """`image_text_features` of every class, computed in `pieces` of at most `chunk` sequences."""
        prompts = prompts or self.class_prompts
        n_cls = prompts.embeddings.shape[0]
        parts = pieces(ctxs.shape[0], n_cls, chunk)
        if len(parts) == 1:
            return self.image_text_features(ctxs, prompts)
        out = torch.empty(ctxs.shape[0], n_cls, self.backbone.embed_dim, device=ctxs.device)
        for imgs, cls in parts:
            ids = torch.arange(cls.start, cls.stop, device=ctxs.device)
            out[imgs, cls] = self.image_text_features(ctxs[imgs], prompts, ids)
        return out

    @torch.no_grad()
    def per_image_logits(
        self, image_features: torch.Tensor, prompts: ClassPrompts | None = None, chunk: int | None = None
    ) -> torch.Tensor:
        """Logits (N, C) of images against their own prompted classes, in text passes of at most `chunk`
        (default EVAL_SEQUENCES) sequences."""
        prompts = prompts or self.class_prompts
        n_cls = prompts.embeddings.shape[0]
        scale = self.backbone.model.logit_scale
        group = max(1, (chunk or EVAL_SEQUENCES) // max(1, n_cls))  # images per pass (one when C > chunk)
        out = []
        for s in range(0, image_features.shape[0], group):
            x = image_features[s : s + group]
            out.append(
                per_image_classify(
                    x, self.chunked_text_features(self.image_contexts(x), prompts, chunk), scale
                )
            )
        if not out:
            return torch.empty(0, n_cls, device=image_features.device)
        return torch.cat(out)


def learner_for(backbone: Backbone, classnames: Sequence[str], cfg: TrainConfig) -> PromptLearner:
    """The prompt learner of a run's method: CoCoOp's (with its meta-network) or CoOp's (every other method)."""
    kind = CoCoOpLearner if cfg.prompt_method == "cocoop" else PromptLearner
    return kind(backbone, classnames, cfg.prompt_config(), seed=cfg.seed)


def backward_step(
    learner: CoCoOpLearner,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_total: int,
    chunk: int | None,
    scaler: torch.amp.GradScaler,
    autocast: Callable[[], AbstractContextManager],
) -> tuple[float, int]:
    """Backpropagate this process' share of one batch's CoCoOp loss into ctx.grad and the meta-network's grad;
    returns (loss share, correct).

    The share is the summed cross-entropy over this process' images divided by the full batch size, as for CoOp.
    With `chunk`, the per-image text features are first computed without autograd in pieces, the loss is
    differentiated with respect to them, and each piece is re-encoded and backpropagated into a detached copy of the
    per-image contexts, whose summed gradient then runs through ctx + pi(x) once: the same gradient, with memory
    bounded by one piece.
    """
    if (
        x.shape[0] == 0
    ):  # a process without an image of this batch (DDP): it adds nothing to the summed gradient
        for _, p in [("ctx", learner.ctx), *learner.extra_parameters()]:
            p.grad = torch.zeros_like(p)
        return 0.0, 0
    scale = learner.backbone.model.logit_scale
    with autocast():
        ctxs = learner.image_contexts(x)
    if chunk is None:
        with autocast():
            logits = per_image_classify(x, learner.image_text_features(ctxs), scale)
        loss = F.cross_entropy(logits, y, reduction="sum") / batch_total
        scaler.scale(loss).backward()
    else:
        leaf = ctxs.detach().requires_grad_(True)
        with torch.no_grad(), autocast():
            text = learner.chunked_text_features(leaf, chunk=chunk)
        text.requires_grad_(True)
        logits = per_image_classify(x, text, scale)
        loss = F.cross_entropy(logits, y, reduction="sum") / batch_total
        scaler.scale(loss).backward()
        for imgs, cls in pieces(x.shape[0], text.shape[1], chunk):
            ids = torch.arange(cls.start, cls.stop, device=x.device)
            with autocast():
                part = learner.image_text_features(leaf[imgs], class_ids=ids)
            part.backward(text.grad[imgs, cls])
        ctxs.backward(leaf.grad)
    return loss.item(), int((logits.argmax(-1) == y).sum())
