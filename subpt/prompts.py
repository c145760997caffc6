"""CoOp prompt learning: a learnable context spliced into class prompts, run through CLIP's own text path.

The prompted text encoder follows open_clip's `CLIP.encode_text` step for step (token embeddings + positional
embedding -> causal transformer -> final LayerNorm -> EOS position -> text projection), but takes token
embeddings instead of token ids and runs only up to the longest EOS position: the causal mask makes every
later position irrelevant to the pooled feature.

Where the prompts of all classes begin with the same tokens (class token at the end, one shared context) and
the text tower is one `subpt.prefix_share` reproduces, `PromptLearner.text_features` encodes that prefix once
and then only each class's suffix (`PromptLearner(..., prefix_share=False)` forces the full sequences).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from subpt.backbone import Backbone
from subpt.config import PromptConfig
from subpt.errors import SubptError
from subpt.prefix_share import (
    PrefixState,
    encode_prefix,
    encode_suffixes,
    pool_and_project,
    prefix_sharing_blocker,
)

PLACEHOLDER = "X"
def encode_token_embeddings(
    model: nn.Module, x: torch.Tensor, eos_idx: torch.Tensor, truncate: bool = True
) -> torch.Tensor:
    """Text features (unnormalised) of token-embedding sequences x (n, L, width) pooled at eos_idx (n,)."""
    cast_dtype = model.transformer.get_cast_dtype()
    length = int(eos_idx.max().item()) + 1 if truncate and model.attn_mask is not None else x.shape[1]
    x = x[:, :length].to(cast_dtype) + model.positional_embedding[:length].to(cast_dtype)
    mask = model.attn_mask[:length, :length] if model.attn_mask is not None else None
    return pool_and_project(model, model.transformer(x, attn_mask=mask), eos_idx)


def eos_positions(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Index of the pooled (EOS) token of each tokenised text, as open_clip's text pooling finds it."""
    if getattr(model, "text_pool_type", "argmax") == "eos":
        return (tokens == model.text_eos_id).int().argmax(dim=-1)
    return tokens.argmax(dim=-1)


def encode_tokens(model: nn.Module, tokens: torch.Tensor, truncate: bool = True) -> torch.Tensor:
    """Text features of token ids, as `model.encode_text` but truncated after the last EOS."""
    x = model.token_embedding(tokens)
    return encode_token_embeddings(model, x, eos_positions(model, tokens), truncate=truncate)


def name_token_counts(backbone: Backbone, names: Sequence[str]) -> list[int]:
    """How many tokens each class name takes."""
    tokens = backbone.tokenizer(list(names))
    return (eos_positions(backbone.model, tokens) - 1).tolist()


@dataclass
class ClassPrompts:
    """Fixed token embeddings of one set of class names around the context slots.

    Layout per class: end `[SOS][ctx][name][.][EOS]`, middle `[SOS][ctx/2][name][ctx/2][.][EOS]`,
    front `[SOS][name][ctx][.][EOS]`. `embeddings` holds the full sequences with placeholder tokens
    where the context goes; `ctx_index` (n, n_ctx) the positions the context fills; `prefix_len` the number of
    leading positions every class shares ([SOS] and the context, layout end), None when they share none.
    """

    names: list[str]
    embeddings: torch.Tensor  # (n, L, width), frozen
    ctx_index: torch.Tensor  # (n, n_ctx) long
    eos_idx: torch.Tensor  # (n,)
    prefix_len: int | None = None

    def to(self, device: torch.device | str) -> ClassPrompts:
        """The same prompts on `device`."""
        return ClassPrompts(
            self.names,
            self.embeddings.to(device),
            self.ctx_index.to(device),
            self.eos_idx.to(device),
            self.prefix_len,
        )


class PromptLearner(nn.Module):
    """The learnable context of CoOp and the prompted text encoder of a frozen CLIP.

    `prefix_share` (default on) encodes the prompt prefix shared by all classes once wherever that is exact
    (see `shares_prefix`); False always encodes every class's full sequence, as a reference.
    `conditional` is False: the text features depend on the context alone (CoCoOp's subclass conditions them on the
    image, `subpt.cocoop`).
    """

    conditional = False

    def __init__(
        self,
        backbone: Backbone,
        classnames: Sequence[str],
        cfg: PromptConfig,
        seed: int = 1,
        prefix_share: bool = True,
    ):
        super().__init__()
        cfg.validate()
        self.backbone = backbone
        self.cfg = cfg
        self.classnames = list(classnames)
        self.prefix_share = prefix_share
        self._tower_blocker: str | None = None  # why the text tower cannot be prefix-shared (checked once)
        self._tower_checked = False
        model = backbone.model
        device = backbone.device
        width = backbone.width
        if cfg.ctx_init:
            phrase = cfg.ctx_init.strip().replace("_", " ")
            tokens = backbone.tokenizer([phrase]).to(device)
            n_ctx = int(eos_positions(model, tokens)[0]) - 1
            with torch.no_grad():
                init = model.token_embedding(tokens)[0, 1 : 1 + n_ctx].float().clone()
            if cfg.csc:
                init = init.unsqueeze(0).repeat(len(self.classnames), 1, 1)
        else:
            n_ctx = cfg.n_ctx
            shape = (len(self.classnames), n_ctx, width) if cfg.csc else (n_ctx, width)
            gen = torch.Generator().manual_seed(int(seed))
            init = (torch.randn(*shape, generator=gen) * cfg.init_std).to(device)
        self.n_ctx = n_ctx
        self.ctx = nn.Parameter(init.to(device=device, dtype=torch.float32))
        self.class_prompts = self.build_prompts(self.classnames)
        self._cache: dict[tuple[str, ...], ClassPrompts] = {tuple(self.classnames): self.class_prompts}

    @property
    def width(self) -> int:
        """Width of one context vector."""
        return int(self.ctx.shape[-1])

    def extra_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """Named trained parameters besides ctx (none for CoOp; CoCoOp's meta-network)."""
        return []

    def build_prompts(self, names: Sequence[str]) -> ClassPrompts:
        """Tokenise and embed the fixed parts of the prompts for `names`."""
        model = self.backbone.model
        names = [n.replace("_", " ") for n in names]
        n_ctx = self.n_ctx
        pos = self.cfg.class_token_position
        ctx_words = " ".join([PLACEHOLDER] * n_ctx)
        if pos == "end":
            texts = [f"{ctx_words} {n}." for n in names]
        elif pos == "front":
            texts = [f"{n} {ctx_words}." for n in names]
        else:
            half = n_ctx // 2
            first = " ".join([PLACEHOLDER] * half)
            second = " ".join([PLACEHOLDER] * (n_ctx - half))
            texts = [" ".join(w for w in (first, n, second) if w) + "." for n in names]
        tokens = self.backbone.tokenizer(texts).to(self.backbone.device)
        eos = eos_positions(model, tokens)
        truncated = tokens[:, -1] != 0  # the tokenizer cut the text and put EOS in the last slot
        if bool(truncated.any()):
            longest = names[int(torch.nonzero(truncated)[0])]
            raise SubptError(
                f"prompt for class {longest!r} with {n_ctx} context tokens exceeds the text context length "
                f"{tokens.shape[1]}: use fewer --n-ctx or a shorter class name"
            )
        counts = (eos - 1 - n_ctx).tolist()  # name + '.' tokens per class
        index = []
        for c in counts:
            name_len = c - 1  # without the final '.'
            if pos == "end":
                idx = list(range(1, 1 + n_ctx))
            elif pos == "front":
                idx = list(range(1 + name_len, 1 + name_len + n_ctx))
            else:
                half = n_ctx // 2
                idx = list(range(1, 1 + half)) + list(range(1 + half + name_len, 1 + n_ctx + name_len))
            index.append(idx)
        with torch.no_grad():
            emb = model.token_embedding(tokens).float()
        index_t = torch.tensor(index, dtype=torch.long, device=tokens.device)
        return ClassPrompts(list(names), emb, index_t, eos, 1 + n_ctx if pos == "end" else None)

    def prompts_for(self, names: Sequence[str]) -> ClassPrompts:
        """Cached ClassPrompts for a list of names (e.g. novel classes or NFL names)."""
        key = tuple(names)
        if key not in self._cache:
            self._cache[key] = self.build_prompts(names)
        return self._cache[key]

    def assemble(
        self, prompts: ClassPrompts, class_ids: torch.Tensor | None = None, ctx: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Token-embedding sequences (n, L, width) with the context (default: the learned one) spliced in."""
        x = prompts.embeddings
        idx = prompts.ctx_index
        ctx = self.ctx if ctx is None else ctx
        if ctx.dim() == 3 and ctx.shape[0] != x.shape[0]:
            raise SubptError(
                f"class-specific context was learned for {ctx.shape[0]} classes and cannot prompt "
                f"{x.shape[0]} other classes; use a shared context (no --csc) to evaluate new classes"
            )
        if class_ids is not None:
            x, idx = x[class_ids], idx[class_ids]
            if ctx.dim() == 3:
                ctx = ctx[class_ids]
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(x.shape[0], -1, -1)
        ctx = ctx.to(x.dtype)
        out = x.clone()
        out.scatter_(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]), ctx)
        return out

    def shares_prefix(self, prompts: ClassPrompts | None = None) -> bool:
        """Whether `text_features` encodes these prompts (default: the training classes) prefix-shared.

        True when sharing is on, the context is shared (not --csc), the class token is at the end, and the
        model's text tower is one the prefix-shared encoder reproduces exactly.
        """
        prompts = prompts or self.class_prompts
        if not self.prefix_share or self.ctx.dim() != 2 or prompts.prefix_len != 1 + self.n_ctx:
            return False
        if prompts.embeddings.shape[0] == 0:
            return False
        if not self._tower_checked:
            self._tower_blocker = prefix_sharing_blocker(self.backbone.model)
            self._tower_checked = True
        return self._tower_blocker is None

    def prefix_state(self, prompts: ClassPrompts | None = None) -> PrefixState | None:
        """Per-layer keys and values of the shared `[SOS] ctx` prefix, or None where prompts do not share it.

        One state serves every set of names of this learner (training classes, novel classes, NFL names).
        """
        prompts = prompts or self.class_prompts
        if not self.shares_prefix(prompts):
            return None
        sos = prompts.embeddings[0, :1]
        return encode_prefix(self.backbone.model, torch.cat([sos, self.ctx.to(sos.dtype)]))

    def text_features(
        self,
        prompts: ClassPrompts | None = None,
        truncate: bool = True,
        chunk_size: int | None = None,
        class_ids: torch.Tensor | None = None,
        prefix: PrefixState | None = None,
    ) -> torch.Tensor:
        """L2-normalised text features of the prompted classes (default: the training classes).

        `class_ids` selects a subset of the classes; `chunk_size` encodes that many classes at a time
        (each chunk runs only up to its own longest EOS). Where the prompts share their prefix
        (`shares_prefix`), it is encoded once (or `prefix`, from `prefix_state`, is used) and each chunk
        runs only the class suffixes (a given `prefix` must come from the same autograd mode for ctx to get
        its gradient through it); elsewhere `prefix` is ignored.
        """
        prompts = prompts or self.class_prompts
        device = prompts.embeddings.device
        ids = torch.arange(prompts.embeddings.shape[0], device=device) if class_ids is None else class_ids
        step = ids.numel() if chunk_size is None else max(1, chunk_size)
        shared = self.shares_prefix(prompts)
        if shared:
            prefix = prefix if prefix is not None else self.prefix_state(prompts)
            if prefix.length != prompts.prefix_len:
                raise SubptError(
                    f"a prefix of {prefix.length} tokens cannot prompt classes sharing {prompts.prefix_len}"
                )
        model = self.backbone.model
        parts = []
        for start in range(0, ids.numel(), step):
            sub = ids[start : start + step]
            whole = class_ids is None and step >= ids.numel()
            if shared:
                emb = prompts.embeddings if whole else prompts.embeddings[sub]
                start_at = prompts.prefix_len
                eos = prompts.eos_idx[sub] - start_at
                parts.append(encode_suffixes(model, prefix, emb[:, start_at:], eos, truncate=truncate))
            else:
                x = self.assemble(prompts, None if whole else sub)
                parts.append(encode_token_embeddings(model, x, prompts.eos_idx[sub], truncate=truncate))
        feats = parts[0] if len(parts) == 1 else torch.cat(parts)
        return F.normalize(feats.float(), dim=-1)

    def joint_text_features(
        self, prompt_sets: Sequence[ClassPrompts | None], prefix: PrefixState | None = None
    ) -> list[torch.Tensor]:
        """`text_features` of several sets of names (None: the training classes), one tensor per set.

        Where every set shares the prefix, all their suffixes run through the text tower as one batch (one pass
        instead of one per set: the training classes and NFL's names in a step); elsewhere each set is encoded
        on its own. Equal to calling `text_features` per set.
        """
        sets = [p or self.class_prompts for p in prompt_sets]
        if len(sets) < 2 or not all(self.shares_prefix(p) for p in sets):
            return [self.text_features(p, prefix=prefix) for p in sets]
        prefix = prefix if prefix is not None else self.prefix_state(sets[0])
        start = sets[0].prefix_len
        if prefix.length != start or any(p.prefix_len != start for p in sets):
            raise SubptError(f"a prefix of {prefix.length} tokens cannot prompt classes sharing {start}")
        width = max(p.embeddings.shape[1] for p in sets)
        suffix = torch.cat([F.pad(p.embeddings[:, start:], (0, 0, 0, width - p.embeddings.shape[1])) for p in sets])
        eos = torch.cat([p.eos_idx for p in sets]) - start
        feats = F.normalize(encode_suffixes(self.backbone.model, prefix, suffix, eos).float(), dim=-1)
        return list(feats.split([p.embeddings.shape[0] for p in sets]))

