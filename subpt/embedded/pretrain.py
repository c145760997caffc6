"""Contrastive pretraining of the tiny CLIP on the procedural world (`subpt build-embedded`).

Deterministic for a given seed, step count, torch version and thread count. Colour-shape compositions in
`world.held_out_compositions()` never appear in pretraining images.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from subpt.embedded import model as tiny
from subpt.embedded import world
from subpt.prompts import encode_tokens

IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)


def to_model_input(images: np.ndarray) -> torch.Tensor:
    """uint8 images (n, H, W, 3) to the normalised float tensor (n, 3, H, W) the model expects."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def pretraining_pool(n: int, seed: int) -> list[world.Recipe]:
    """`n` random recipes, each an instance of a named object kind, avoiding the held-out colour-shape
    compositions (in the kinds' main looks and in every instance), with pixel noise drawn from
    `world.PRETRAIN_NOISE`."""
    rng = np.random.default_rng(seed)
    held = world.held_out_compositions()
    kinds = [k for k in world.OBJECT_KINDS if (k.color, k.shape) not in held]
    out: list[world.Recipe] = []
    while len(out) < n:
        kind = kinds[int(rng.integers(len(kinds)))]
        color, shape, pattern = kind.sample(rng)
        noise = float(rng.uniform(*world.PRETRAIN_NOISE))
        parts = kind.sample_parts(rng)
        r = world.random_recipe(rng, color, shape, pattern=pattern, noise=noise, kind=kind.index, parts=parts)
        if (r.color, r.shape) not in held:
            out.append(r)
    return out


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        skip = p.ndim < 2 or "token_embedding" in name or "positional_embedding" in name or "logit_scale" in name
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def pretrain(
    steps: int = 2000,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.05,
    warmup: int = 50,
    seed: int = 0,
    pool_size: int = 60_000,
    log: Callable[[str], None] | None = None,
) -> tuple[torch.nn.Module, dict]:
    """Pretrain a tiny CLIP from scratch; returns the model and a dict describing the build."""
    torch.manual_seed(seed)
    model = tiny.create_random_model().train()
    tokenizer = tiny_tokenizer()
    t0 = time.time()
    pool = pretraining_pool(pool_size, seed)
    images = np.concatenate(
        [world.render(pool[i : i + 1024], noise_rng=np.random.default_rng([seed, i])) for i in range(0, pool_size, 1024)]
    )
    opt = torch.optim.AdamW(_param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.98), eps=1e-6)
    rng = np.random.default_rng(seed + 1)
    losses = []
    for step in range(steps):
        scale = (step + 1) / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * (step - warmup) / (steps - warmup)))
        for g in opt.param_groups:
            g["lr"] = lr * scale
        idx = rng.integers(pool_size, size=batch_size)
        captions = [world.caption(pool[i], rng) for i in idx]
        x = to_model_input(images[idx])
        tokens = tokenizer(captions)
        img = F.normalize(model.encode_image(x), dim=-1)
        txt = F.normalize(encode_tokens(model, tokens), dim=-1)
        logits = model.logit_scale.exp() * img @ txt.t()
        target = torch.arange(batch_size)
        loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.detach().item())
        if log and (step % 100 == 0 or step == steps - 1):
            log(f"step {step + 1}/{steps} loss {np.mean(losses[-100:]):.3f} ({time.time() - t0:.0f} s)")
    model.eval()
    info = {
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "warmup": warmup,
        "seed": seed,
        "pool_size": pool_size,
        "final_loss": float(np.mean(losses[-50:])),
        "seconds": round(time.time() - t0, 1),
        "torch": str(torch.__version__),
        "threads": torch.get_num_threads(),
    }
    return model, info


def tiny_tokenizer() -> Callable:
    """open_clip's tokenizer for the tiny model (the real CLIP BPE vocabulary, offline)."""
    import open_clip

    tiny.register()
    return open_clip.get_tokenizer(tiny.MODEL_NAME)


def build(out: Path = tiny.CHECKPOINT_PATH, log: Callable[[str], None] | None = print, **kwargs: object) -> dict:
    """Pretrain and write the compact checkpoint; returns the build info."""
    model, info = pretrain(log=log, **kwargs)  # type: ignore[arg-type]
    tiny.save_compact(model, Path(out), info)
    return info
