"""Prefix-shared prompted text encoder: the shared `[SOS] ctx_1 .. ctx_n` prefix is encoded once.

With the class token at the end and one shared context, every class prompt begins with the same tokens, and
CLIP's text transformer is causal: the hidden states (hence the keys and values) of that prefix are the same
for every class. So the prefix runs through the transformer once, keeping its keys and values at every layer
(`PrefixState`), and only the per-class suffixes (name tokens, '.', EOS, padding) run for all classes as one
batch, their queries attending to the prefix keys/values and, causally, to the suffix. Gradients of every
class reach the one prefix computation through autograd.

The layers are computed from the model's own modules and weights (open_clip's `ResidualAttentionBlock`:
`ln_1`, `attn` (an `nn.MultiheadAttention`, whose module is bypassed, so its `batch_first` does not matter),
`ls_1`, `ln_2`, `mlp`, `ls_2`; then `ln_final`, the EOS position and `text_projection`), mirroring
`subpt.prompts.encode_token_embeddings`. `prefix_sharing_blocker` names why a tower is not one this module
reproduces exactly; the prompt learner then falls back to the full-sequence encoder.

Per-image prompts (CoCoOp, `subpt.cocoop`) share their prefix per image: `encode_prefix` of B prefixes (B, P, width)
gives a batched state (keys (B, P, heads, dim)), and `encode_suffixes` then runs the same n class suffixes after each
of the B prefixes, B x n sequences, returning (B, n, dim) features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock
from torch import nn


@dataclass
class PrefixState:
    """Keys and values of the shared prompt prefix at every layer, each of shape (prefix length, heads, head dim),
    or (B, prefix length, heads, head dim) for B prefixes (one per image)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    @property
    def length(self) -> int:
        """Number of prefix tokens ([SOS] plus the context)."""
        return int(self.keys[0].shape[-3])

    @property
    def batched(self) -> bool:
        """Whether the state holds B prefixes (one per image) rather than one."""
        return self.keys[0].dim() == 4

    def detached(self) -> PrefixState:
        """The same keys and values as new autograd leaves, to collect the suffixes' gradients in `.grad`."""
        return PrefixState(
            [k.detach().requires_grad_(True) for k in self.keys],
            [v.detach().requires_grad_(True) for v in self.values],
        )

    def backward_from(self, leaf: PrefixState) -> None:
        """Backpropagate the gradients collected in `leaf` (made by `detached`) through this prefix computation."""
        pairs = [
            (t, g.grad)
            for t, g in zip(self.keys + self.values, leaf.keys + leaf.values)
            if g.grad is not None and t.requires_grad
        ]
        if pairs:
            torch.autograd.backward([t for t, _ in pairs], [g for _, g in pairs])


def pool_and_project(model: nn.Module, hidden: torch.Tensor, eos_idx: torch.Tensor) -> torch.Tensor:
    """The text tower's head: final LayerNorm, the hidden state at each sequence's EOS, text projection."""
    x = model.ln_final(hidden)
    x = x[torch.arange(x.shape[0], device=x.device), eos_idx]
    proj = model.text_projection
    if proj is None:
        return x
    return proj(x) if isinstance(proj, nn.Linear) else x @ proj


def _is_causal_mask(mask: torch.Tensor) -> bool:
    """Whether `mask` is open_clip's additive causal mask (-inf above the diagonal, 0 elsewhere)."""
    if mask.dim() != 2 or mask.shape[0] != mask.shape[1]:
        return False
    upper = torch.ones(mask.shape, dtype=torch.bool, device=mask.device).triu_(1)
    return bool(torch.isneginf(mask[upper]).all()) and bool((mask[~upper] == 0).all())


def prefix_sharing_blocker(model: nn.Module) -> str | None:
    """Why the text tower of `model` cannot be run prefix-shared exactly, or None when it can."""
    for name in ("transformer", "token_embedding", "positional_embedding", "ln_final", "attn_mask"):
        if getattr(model, name, None) is None:
            return f"the model has no {name} (not open_clip's causal CLIP text path)"
    if not _is_causal_mask(model.attn_mask):
        return "the text attention mask is not the standard causal mask"
    blocks = getattr(model.transformer, "resblocks", None)
    if not isinstance(blocks, nn.ModuleList) or len(blocks) == 0:
        return "the text transformer has no resblocks"
    for i, block in enumerate(blocks):
        kind = type(block)
        if (
            not isinstance(block, ResidualAttentionBlock)
            or kind.forward is not ResidualAttentionBlock.forward
            or (kind.attention is not ResidualAttentionBlock.attention)
        ):
            return f"text block {i} is a {kind.__name__}, not open_clip's ResidualAttentionBlock"
        if hasattr(block, "ln_1_kv"):
            return f"text block {i} is a cross-attention block"
        attn = block.attn
        if not isinstance(attn, nn.MultiheadAttention):
            return f"text block {i} attends with a {type(attn).__name__}, not nn.MultiheadAttention"
        if not attn._qkv_same_embed_dim:
            return f"text block {i} projects keys or values from another width"
        if attn.bias_k is not None or attn.bias_v is not None or attn.add_zero_attn:
            return f"text block {i} has extra key/value biases or zero attention"
        if attn.training and attn.dropout > 0:
            return f"text block {i} has attention dropout in training mode"
    return None


def _heads(attn: nn.MultiheadAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries, keys and values of x (..., L, width) as nn.MultiheadAttention projects them, (..., L, heads, dim)."""
    q, k, v = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    shape = (*x.shape[:-1], attn.num_heads, attn.head_dim)
    return q.reshape(shape), k.reshape(shape), v.reshape(shape)


def _causal(n: int, device: torch.device) -> torch.Tensor:
    """Boolean mask, True above the diagonal (the positions a query must not see)."""
    return torch.ones(n, n, dtype=torch.bool, device=device).triu_(1)


def _ffn(block: ResidualAttentionBlock, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
    """The rest of the residual block after attention: output projection, layer scale, MLP."""
    out = F.linear(attended.flatten(-2), block.attn.out_proj.weight, block.attn.out_proj.bias)
    x = x + block.ls_1(out)
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def encode_prefix(model: nn.Module, prefix: torch.Tensor) -> PrefixState:
    """Keys and values at every layer of the token-embedding prefix (P, width) shared by all class prompts, or of B
    prefixes (B, P, width), one per image."""
    cast_dtype = model.transformer.get_cast_dtype()
    length = prefix.shape[-2]
    x = prefix.to(cast_dtype) + model.positional_embedding[:length].to(cast_dtype)
    keys, values = [], []
    hidden = _causal(length, x.device)
    for block in model.transformer.resblocks:
        q, k, v = _heads(block.attn, block.ln_1(x))  # ([B,] P, H, d)
        keys.append(k)
        values.append(v)
        scores = torch.einsum("...qhd,...khd->...hqk", q * block.attn.head_dim**-0.5, k).masked_fill(
            hidden, float("-inf")
        )
        attended = torch.einsum("...hqk,...khd->...qhd", scores.softmax(dim=-1).to(v.dtype), v)
        x = _ffn(block, x, attended)
    return PrefixState(keys, values)


def encode_suffixes(
    model: nn.Module, state: PrefixState, suffix: torch.Tensor, eos_idx: torch.Tensor, truncate: bool = True
) -> torch.Tensor:
    """Text features (unnormalised) of suffixes (n, L', width) after the shared prefix, pooled at eos_idx (n,).

    `eos_idx` counts from the start of the suffix. With `truncate`, the suffixes run only up to the longest
    EOS: the causal mask keeps later positions, and the padding after each EOS, out of every pooled feature.
    A batched state (B prefixes) runs every suffix after each prefix and returns (B, n, dim).
    """
    cast_dtype = model.transformer.get_cast_dtype()
    start = state.length
    length = int(eos_idx.max().item()) + 1 if truncate else suffix.shape[1]
    x = suffix[:, :length].to(cast_dtype) + model.positional_embedding[start : start + length].to(cast_dtype)
    b = "b" if state.batched else ""  # the image axis of per-image prefixes
    if state.batched:
        x = x.unsqueeze(0).expand(state.keys[0].shape[0], *x.shape)
    hidden = _causal(length, x.device)
    for block, k_pre, v_pre in zip(model.transformer.resblocks, state.keys, state.values):
        q, k, v = _heads(block.attn, block.ln_1(x))  # ([B,] n, S, H, d)
        q = q * block.attn.head_dim**-0.5
        to_prefix = torch.einsum(f"{b}nqhd,{b}khd->{b}nhqk", q, k_pre)  # no copy of a prefix per class
        to_suffix = torch.einsum(f"{b}nqhd,{b}nkhd->{b}nhqk", q, k).masked_fill(hidden, float("-inf"))
        weights = torch.cat([to_prefix, to_suffix], dim=-1).softmax(dim=-1).to(v.dtype)
        attended = torch.einsum(f"{b}nhqk,{b}khd->{b}nqhd", weights[..., :start], v_pre) + torch.einsum(
            f"{b}nhqk,{b}nkhd->{b}nqhd", weights[..., start:], v
        )
        x = _ffn(block, x, attended)
    if not state.batched:
        return pool_and_project(model, x, eos_idx)
    images, n = x.shape[0], x.shape[1]
    pooled = pool_and_project(model, x.reshape(images * n, *x.shape[2:]), eos_idx.repeat(images))
    return pooled.reshape(images, n, -1)
