"""The training loop of CoOp, SubPT and NFL on cached image features, read top to bottom.

A run folder holds:
  config.json      every setting, with a hash
  zeroshot.json    zero-shot CLIP (dataset template) on the same base/novel test sets
  metrics.jsonl    one line per epoch: loss, lr, train acc, base / novel / HM test accuracy, seconds
  ckpt/ctx_EEE.pt  the context after each epoch; ckpt/last.pt adds the optimiser state (for --resume)
  trajectory/      gradflow store: ctx snapshots after every epoch (and at init), per-step gradients if recorded

Weight decay is applied by adding `weight_decay * ctx` to the gradient before any projection (the optimiser
itself gets weight_decay=0). For plain SGD this is exactly SGD's own weight decay; for SubPT it keeps every
update inside span(U). Data order per epoch comes from a generator seeded by (seed, epoch), so a resumed run
is bit-identical to an uninterrupted one on the CPU.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from gradflow.recorder import GradientRecorder
from gradflow.trajectory import TrajectoryStore
from subpt.backbone import Backbone, load_backbone
from subpt.config import TrainConfig
from subpt.data.base import TaskData, subsample_task
from subpt.data.registry import build_task
from subpt.errors import SubptError
from subpt.evaluate import accuracy, classify, harmonic_mean, zero_shot_classifier
from subpt.features import image_features
from subpt.nfl import NovelFeatureLearner, resolve_names, teacher_templates
from subpt.projection import GradientProjector
from subpt.prompts import PromptLearner

CTX_NAME = "ctx"


def lr_at(cfg: TrainConfig, epoch: int) -> float:
    """CoOp's schedule: constant warm-up lr for the first epochs, then cosine over all epochs."""
    if epoch < cfg.warmup_epochs:
        return cfg.warmup_lr
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * (epoch - cfg.warmup_epochs) / cfg.epochs))


def epoch_order(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    """The sample order of one epoch, a function of (seed, epoch) alone."""
    gen = torch.Generator().manual_seed(1_000_003 * int(seed) + int(epoch))
    return torch.randperm(n, generator=gen).to(device)


@dataclass
class Splits:
    """Cached features of everything a run trains and evaluates on."""

    task: TaskData
    base: TaskData
    novel: TaskData | None
    train: tuple[torch.Tensor, torch.Tensor]
    base_test: tuple[torch.Tensor, torch.Tensor]
    novel_test: tuple[torch.Tensor, torch.Tensor] | None


def prepare_data(cfg: TrainConfig, backbone: Backbone, progress: bool = True) -> Splits:
    """Build the task, split base/novel by CoOp's rule, and load (or compute) cached image features."""
    task = build_task(cfg.dataset, root=cfg.root, shots=cfg.shots, seed=cfg.seed, **cfg.dataset_options)
    base = subsample_task(task, cfg.subsample)
    novel = subsample_task(task, "novel") if cfg.subsample == "base" else None
    train = image_features(backbone, base, "train", progress=progress)
    base_test = image_features(backbone, base, "test", progress=progress)
    novel_test = image_features(backbone, novel, "test", progress=progress) if novel is not None else None
    return Splits(task, base, novel, train, base_test, novel_test)


def run_metadata(cfg: TrainConfig, learner: PromptLearner) -> dict:
    """What a basis built from this run must match: model, context shape and where it came from."""
    return {
        "model": cfg.model,
        "pretrained": cfg.pretrained,
        "n_ctx": learner.n_ctx,
        "width": learner.width,
        "csc": cfg.csc,
        "n_cls": len(learner.classnames) if cfg.csc else 0,
        "dataset": cfg.dataset,
        "seed": cfg.seed,
        "shots": cfg.shots,
        "method": cfg.method,
    }


def basis_expectation(cfg: TrainConfig, learner: PromptLearner) -> dict:
    """The metadata fields a basis must agree on to be applied to this model."""
    meta = run_metadata(cfg, learner)
    return {k: meta[k] for k in ("model", "n_ctx", "width", "csc", "n_cls")}


def _atomic_torch_save(obj: object, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _append_line(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_metrics(run_dir: Path) -> list[dict]:
    """The per-epoch records of a run (complete lines only)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a torn last line from a crash
    return out


def _autocast(cfg: TrainConfig, device: torch.device):
    if cfg.precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if cfg.precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def evaluate_run(learner: PromptLearner, splits: Splits, chunk: int | None = None) -> dict:
    """Base and novel test accuracy (percent) and their HM with the current context."""
    scale = learner.backbone.model.logit_scale
    base_acc = accuracy(classify(splits.base_test[0], learner.text_features(chunk_size=chunk), scale), splits.base_test[1])
    novel_acc = float("nan")
    if splits.novel_test is not None and learner.ctx.dim() == 2:
        prompts = learner.prompts_for(splits.novel.classnames)
        novel_acc = accuracy(
            classify(splits.novel_test[0], learner.text_features(prompts, chunk_size=chunk), scale), splits.novel_test[1]
        )
    return {"base_acc": base_acc, "novel_acc": novel_acc, "hm": harmonic_mean(base_acc, novel_acc)}


@torch.no_grad()
def zero_shot_metrics(backbone: Backbone, splits: Splits, templates: list[str]) -> dict:
    """Zero-shot CLIP accuracy on the run's base and novel test sets."""
    scale = backbone.model.logit_scale
    base = accuracy(
        classify(splits.base_test[0], zero_shot_classifier(backbone, splits.base.classnames, templates), scale),
        splits.base_test[1],
    )
    novel = float("nan")
    if splits.novel_test is not None:
        w = zero_shot_classifier(backbone, splits.novel.classnames, templates)
        novel = accuracy(classify(splits.novel_test[0], w, scale), splits.novel_test[1])
    return {"base_acc": base, "novel_acc": novel, "hm": harmonic_mean(base, novel), "templates": templates}


def _check_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise SubptError(f"output {run_dir} exists and is not a folder; choose another --out")
    has_run = (run_dir / "config.json").exists()
    if has_run and not (resume or overwrite):
        raise SubptError(f"run folder {run_dir} already holds a run: pass --resume to continue it or --overwrite")
    if resume and not has_run:
        raise SubptError(f"--resume: {run_dir} holds no run (config.json missing); start it without --resume")
    parent = run_dir if run_dir.exists() else run_dir.parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise SubptError(f"output folder {run_dir} is not writable ({parent} denies writing); choose another --out")


def _load_last(run_dir: Path) -> dict | None:
    path = run_dir / "ckpt" / "last.pt"
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise SubptError(f"checkpoint {path} is corrupt ({type(e).__name__}); delete it to restart the run from scratch") from e


def train(
    cfg: TrainConfig,
    run_dir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    on_epoch: Callable[[dict], None] | None = None,
    stop_after: int | None = None,
) -> list[dict]:
    """Train (or resume) one run into `run_dir`; returns the per-epoch metrics.

    `stop_after` ends the process' work after that many epochs in total (to test resuming).
    """
    run_dir = Path(run_dir)
    cfg.validate()
    _check_run_dir(run_dir, resume, overwrite)
    if resume:
        saved = TrainConfig.load(run_dir / "config.json")
        if saved.hash() != cfg.hash():
            raise SubptError(f"--resume: the settings differ from {run_dir / 'config.json'}; resume with the same settings")
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SubptError("--device cuda: no CUDA GPU is visible; use --device cpu")

    # Everything that can fail on bad input happens before the run folder is touched.
    backbone = load_backbone(cfg.model, cfg.pretrained, device)
    splits = prepare_data(cfg, backbone, progress=progress)
    learner = PromptLearner(backbone, splits.base.classnames, cfg.prompt_config(), seed=cfg.seed)
    ctx = learner.ctx
    projector = None
    if cfg.basis:
        projector = GradientProjector.from_file(cfg.basis, basis_expectation(cfg, learner), ctx.numel(), device)
    nfl = None
    if cfg.nfl:
        nfl = NovelFeatureLearner(learner, resolve_names(cfg.nfl_names, splits.task), teacher_templates(splits.task))
    last = _load_last(run_dir) if resume else None

    if overwrite and run_dir.exists() and not resume:
        shutil.rmtree(run_dir)
    (run_dir / "ckpt").mkdir(parents=True, exist_ok=True)
    optimizer = torch.optim.SGD([ctx], lr=cfg.lr, momentum=cfg.momentum, weight_decay=0.0)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
    start_epoch, step = 0, 0
    if last is not None:
        with torch.no_grad():
            ctx.copy_(last["ctx"].to(device))
        optimizer.load_state_dict(last["optimizer"])
        start_epoch, step = int(last["epoch"]), int(last["step"])
    else:
        cfg.save(run_dir / "config.json")
        (run_dir / "metrics.jsonl").write_text("")
        zs = zero_shot_metrics(backbone, splits, [splits.task.template])
        (run_dir / "zeroshot.json").write_text(json.dumps(zs, indent=2) + "\n")
    metrics = [m for m in read_metrics(run_dir) if m["epoch"] <= start_epoch]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))

    store_path = run_dir / "trajectory"
    if (store_path / "manifest.json").exists():
        store = TrajectoryStore.open(store_path, mode="a")
        for stream in ("grads", "snapshots"):
            store.truncate(stream, step)
    else:
        store = TrajectoryStore.create(
            store_path, [(CTX_NAME, tuple(ctx.shape))], dtype=cfg.record_dtype, metadata=run_metadata(cfg, learner)
        )
    recorder = GradientRecorder([(CTX_NAME, ctx)], store, record_grads=cfg.record_grads, every=cfg.record_every)
    if last is None:
        recorder.snapshot(step=0, epoch=0)

    feats, labels = splits.train
    n = feats.shape[0]
    scale = backbone.model.logit_scale
    end_epoch = cfg.epochs if stop_after is None else min(cfg.epochs, stop_after)
    bar = tqdm(range(start_epoch, end_epoch), desc=f"{cfg.method} {cfg.dataset} seed {cfg.seed}", disable=not progress or None,
               initial=start_epoch, total=cfg.epochs)
    try:
        for epoch in bar:
            t0 = time.time()
            lr = lr_at(cfg, epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            order = epoch_order(n, cfg.seed, epoch, device)
            loss_sum, correct = 0.0, 0
            for start in range(0, n, cfg.batch_size):
                idx = order[start : start + cfg.batch_size]
                with _autocast(cfg, device):
                    text = learner.text_features(chunk_size=cfg.text_chunk)
                    logits = classify(feats[idx], text, scale)
                    loss = F.cross_entropy(logits, labels[idx])
                    if nfl is not None:
                        loss = loss + cfg.nfl_lambda * nfl.loss(learner, chunk_size=cfg.text_chunk)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                with torch.no_grad():
                    ctx.grad = ctx.grad.float().add_(ctx.detach(), alpha=cfg.weight_decay)
                step += 1
                recorder.record(step=step, epoch=epoch + 1, loss=loss.item(), lr=lr)
                if projector is not None:
                    projector.project_(ctx)
                scaler.step(optimizer)
                scaler.update()
                loss_sum += loss.item() * idx.numel()
                correct += int((logits.argmax(-1) == labels[idx]).sum())
            record = {
                "epoch": epoch + 1,
                "step": step,
                "loss": loss_sum / n,
                "lr": lr,
                "train_acc": 100.0 * correct / n,
            }
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
                record.update(evaluate_run(learner, splits, cfg.text_chunk))
            record["seconds"] = round(time.time() - t0, 4)
            recorder.snapshot(step=step, epoch=epoch + 1)
            recorder.flush()
            _atomic_torch_save({"ctx": ctx.detach().cpu().clone(), "epoch": epoch + 1}, run_dir / "ckpt" / f"ctx_{epoch + 1:03d}.pt")
            _atomic_torch_save(
                {"ctx": ctx.detach().cpu().clone(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1, "step": step,
                 "config_hash": cfg.hash()},
                run_dir / "ckpt" / "last.pt",
            )
            _append_line(run_dir / "metrics.jsonl", record)
            metrics.append(record)
            if on_epoch:
                on_epoch(record)
            bar.set_postfix(base=f"{record.get('base_acc', float('nan')):.1f}", novel=f"{record.get('novel_acc', float('nan')):.1f}")
    finally:
        recorder.close()
    return metrics

