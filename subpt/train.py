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
from subpt.backbone import Backbone, load_backbone
from subpt.config import TrainConfig
from subpt.data.base import TaskData, subsample_task
from subpt.data.registry import build_task
from subpt.distributed import init_from_env
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
    """What a basis built from this run must match: model, context shape and where it came from.

    The dataset options are one canonical JSON string (sorted keys, no spaces): basis metadata is primitive.
    """
    return {
        "model": cfg.model,
        "pretrained": cfg.pretrained,
        "n_ctx": learner.n_ctx,
        "width": learner.width,
        "csc": cfg.csc,
        "n_cls": len(learner.classnames) if cfg.csc else 0,
        "dataset": cfg.dataset,
        "dataset_options": json.dumps(cfg.dataset_options or {}, sort_keys=True, separators=(",", ":"), default=str),
        "seed": cfg.seed,
        "shots": cfg.shots,
        "method": cfg.method,
    }


def basis_expectation(cfg: TrainConfig, learner: PromptLearner) -> dict:
    """The metadata fields a basis must agree on to be applied to this model and run.

    The model and context shape, then where the basis came from (METHOD.md section 3: one basis per seed
    and task): seed, dataset and dataset options, which the CoOp run's trajectory carries into the basis.
    """
    meta = run_metadata(cfg, learner)
    return {k: meta[k] for k in ("model", "n_ctx", "width", "csc", "n_cls", "seed", "dataset", "dataset_options")}


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
    parent = run_dir
    while not parent.exists():
        parent = parent.parent
    try:
        if not parent.is_dir():
            raise NotADirectoryError(f"{parent} is a file")
        probe = tempfile.mkdtemp(dir=parent, prefix=".subpt-write-probe-")
        os.rmdir(probe)
    except OSError as e:
        raise SubptError(f"output folder {run_dir} is not writable ({e}); choose another --out") from e


def _load_last(run_dir: Path) -> dict | None:
    path = run_dir / "ckpt" / "last.pt"
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise SubptError(f"checkpoint {path} is corrupt ({type(e).__name__}); delete it to restart the run from scratch") from e


def backward_step(
    learner: PromptLearner,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_total: int,
    nfl: NovelFeatureLearner | None,
    cfg: TrainConfig,
    scaler: torch.amp.GradScaler,
    world: int = 1,
) -> tuple[float, int]:
    """Backpropagate this process' share of one batch's loss into ctx.grad; returns (loss share, correct).

    The share is the summed cross-entropy over this process' images divided by the full batch size (plus
    NFL / world), so summing gradients over processes gives the one-process gradient. With
    `cfg.text_chunk`, the text features are first computed without autograd, the loss is differentiated
    with respect to them, and each chunk of classes is then re-encoded and backpropagated on its own:
    the same gradient, with memory bounded by one chunk of classes.
    """
    device = x.device
    scale = learner.backbone.model.logit_scale
    chunk = cfg.text_chunk
    nfl_prompts = nfl.prompts if nfl is not None else None

    def objective(text: torch.Tensor, student: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        logits = classify(x, text, scale)
        loss = F.cross_entropy(logits, y, reduction="sum") / batch_total
        if nfl is not None:
            loss = loss + cfg.nfl_lambda * nfl.loss_from_features(student) / world
        return loss, logits

    if chunk is None:
        with _autocast(cfg, device):
            student = learner.text_features(nfl_prompts) if nfl is not None else None
            loss, logits = objective(learner.text_features(), student)
        scaler.scale(loss).backward()
    else:
        with torch.no_grad(), _autocast(cfg, device):
            text = learner.text_features(chunk_size=chunk).requires_grad_(True)
            student = learner.text_features(nfl_prompts, chunk_size=chunk) if nfl is not None else None
        if student is not None:
            student.requires_grad_(True)
        with _autocast(cfg, device):
            loss, logits = objective(text, student)
        scaler.scale(loss).backward()
        for feats, prompts in ((text, None), (student, nfl_prompts)):
            if feats is None:
                continue
            for s in range(0, feats.shape[0], chunk):
                ids = torch.arange(s, min(feats.shape[0], s + chunk), device=device)
                with _autocast(cfg, device):
                    part = learner.text_features(prompts, class_ids=ids)
                part.backward(feats.grad[ids])
    return loss.item(), int((logits.argmax(-1) == y).sum())


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

    Under torchrun (WORLD_SIZE > 1) every process takes its share of each batch; rank 0 writes.
    `stop_after` ends the process' work after that many epochs in total (to test resuming).
    """
    run_dir = Path(run_dir)
    cfg.validate()
    dctx, device_name = init_from_env(cfg.device)
    device = torch.device(device_name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SubptError("--device cuda: no CUDA GPU is visible; use --device cpu")
    _check_run_dir(run_dir, resume, overwrite)
    if resume:
        TrainConfig.load(run_dir / "config.json")  # a clear error when it is unreadable
        stamp = TrainConfig.saved_stamp(run_dir / "config.json")
        if cfg.basis and stamp.get("basis_sha256") != cfg.basis_sha256():
            raise SubptError(f"--resume: the basis file {cfg.basis} has changed since {run_dir} started; resume with "
                             "the basis it was trained with, or start the run again with --overwrite")
        if stamp.get("hash") != cfg.hash():
            raise SubptError(f"--resume: the settings differ from {run_dir / 'config.json'}; resume with the same settings")

    # Everything that can fail on bad input happens before the run folder is touched.
    backbone = load_backbone(cfg.model, cfg.pretrained, device)
    splits = prepare_data(cfg, backbone, progress=progress and dctx.is_main)
    if splits.train[0].shape[0] == 0:
        raise SubptError(f"dataset {cfg.dataset!r} has no training images (a test-only set?): train on another "
                         "dataset and evaluate on this one with the cross-dataset protocol")
    learner = PromptLearner(backbone, splits.base.classnames, cfg.prompt_config(), seed=cfg.seed)
    ctx = learner.ctx
    projector = None
    if cfg.basis:
        projector = GradientProjector.from_file(cfg.basis, basis_expectation(cfg, learner), ctx.numel(), device)
    nfl = None
    if cfg.nfl:
        nfl = NovelFeatureLearner(learner, resolve_names(cfg.nfl_names, splits.task), teacher_templates(splits.task))
    last = _load_last(run_dir) if resume else None

    optimizer = torch.optim.SGD([ctx], lr=cfg.lr, momentum=cfg.momentum, weight_decay=0.0)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
    start_epoch, step = 0, 0
    if last is not None:
        with torch.no_grad():
            ctx.copy_(last["ctx"].to(device))
        optimizer.load_state_dict(last["optimizer"])
        start_epoch, step = int(last["epoch"]), int(last["step"])
    main = dctx.is_main
    if main:
        if overwrite and run_dir.exists() and not resume:
            shutil.rmtree(run_dir)
        (run_dir / "ckpt").mkdir(parents=True, exist_ok=True)
        if last is None:
            cfg.save(run_dir / "config.json")
            zs = zero_shot_metrics(backbone, splits, [splits.task.template])
            (run_dir / "zeroshot.json").write_text(json.dumps(zs, indent=2) + "\n")
        metrics = [m for m in read_metrics(run_dir) if m["epoch"] <= start_epoch]
        if last is not None and "record" in last and (not metrics or metrics[-1]["epoch"] < start_epoch):
            metrics.append(dict(last["record"]))  # killed after the checkpoint, before its metrics line
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    else:
        metrics = []
    dctx.barrier()
    recorder = GradientRecorder(
        [(CTX_NAME, ctx)], run_dir / "trajectory", record_grads=cfg.record_grads, every=cfg.record_every,
        dtype=cfg.record_dtype, metadata=run_metadata(cfg, learner),
    )
    recorder.truncate(step)
    if last is None:
        recorder.snapshot(step=0, epoch=0)

    feats, labels = splits.train
    n = feats.shape[0]
    end_epoch = cfg.epochs if stop_after is None else min(cfg.epochs, stop_after)
    bar = tqdm(range(start_epoch, end_epoch), desc=f"{cfg.method} {cfg.dataset} seed {cfg.seed}",
               disable=not (progress and main) or None, initial=start_epoch, total=cfg.epochs)
    try:
        for epoch in bar:
            t0 = time.time()
            lr = lr_at(cfg, epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            order = epoch_order(n, cfg.seed, epoch, device)
            totals = torch.zeros(2, dtype=torch.float64, device=device)  # summed loss, correct
            for start in range(0, n, cfg.batch_size):
                idx = order[start : start + cfg.batch_size]
                mine = idx[dctx.rank :: dctx.world]
                optimizer.zero_grad(set_to_none=True)
                loss, correct = backward_step(learner, feats[mine], labels[mine], idx.numel(), nfl, cfg, scaler, dctx.world)
                dctx.all_reduce_(ctx.grad)
                batch_stats = dctx.all_reduce_(torch.tensor([loss, correct], dtype=torch.float64, device=device))
                totals += batch_stats * torch.tensor([idx.numel(), 1.0], dtype=torch.float64, device=device)
                scaler.unscale_(optimizer)
                with torch.no_grad():
                    ctx.grad = ctx.grad.float().add_(ctx.detach(), alpha=cfg.weight_decay)
                step += 1
                recorder.record(step=step, epoch=epoch + 1, loss=float(batch_stats[0]), lr=lr)
                if projector is not None:
                    projector.project_(ctx)
                scaler.step(optimizer)
                scaler.update()
            record = {"epoch": epoch + 1, "step": step, "loss": float(totals[0]) / n, "lr": lr,
                      "train_acc": 100.0 * float(totals[1]) / n}
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
                record.update(evaluate_run(learner, splits, cfg.text_chunk))
            record["seconds"] = round(time.time() - t0, 4)
            recorder.snapshot(step=step, epoch=epoch + 1)
            recorder.flush()
            if main:
                _save_epoch(run_dir, ctx, optimizer, epoch + 1, step, cfg, record)
            metrics.append(record)
            if on_epoch:
                on_epoch(record)
            bar.set_postfix(base=f"{record.get('base_acc', float('nan')):.1f}", novel=f"{record.get('novel_acc', float('nan')):.1f}")
    finally:
        recorder.close()
    return metrics


def _save_epoch(run_dir: Path, ctx: torch.Tensor, optimizer: torch.optim.Optimizer, epoch: int, step: int,
                cfg: TrainConfig, record: dict) -> None:
    """Checkpoint first, then the metrics line. The checkpoint also holds the epoch's metrics record, so a crash
    between the two loses nothing: resume restores the line from the checkpoint."""
    value = ctx.detach().cpu().clone()
    _atomic_torch_save({"ctx": value, "epoch": epoch}, run_dir / "ckpt" / f"ctx_{epoch:03d}.pt")
    _atomic_torch_save(
        {"ctx": value, "optimizer": optimizer.state_dict(), "epoch": epoch, "step": step, "config_hash": cfg.hash(),
         "record": record},
        run_dir / "ckpt" / "last.pt",
    )
    _append_line(run_dir / "metrics.jsonl", record)
