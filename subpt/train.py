"""The training loop of CoOp, KgCoOp, ProGrad, CoCoOp, SubPT and NFL on cached image features, read top to bottom.

The run folder it writes is described (and read back) by `subpt.runs`. Nothing in the library imports
this module: the commands (cli/) and the experiments (subpt.experiments) call `train`.

Weight decay is applied by adding `weight_decay * ctx` to the gradient before any projection (the optimiser
itself gets weight_decay=0). For plain SGD this is exactly SGD's own weight decay; for SubPT it keeps every
update inside span(U). Data order per epoch comes from a generator seeded by (seed, epoch), and so does the
augmented view each training image shows (--aug-views), so a resumed run is bit-identical to an uninterrupted one
on the CPU.

The trained parameters are `TrainingRun.params`: ctx first (the only one SubPT projects), then the method's own
(CoCoOp's meta-network, `learner.extra_parameters()`); the optimiser, the all-reduce, weight decay, the recorder
and the checkpoint all act on that one list.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from gradflow.recorder import GradientRecorder
from subpt import cocoop, runs
from subpt.backbone import Backbone, load_backbone
from subpt.baselines import KgCoOpTerm, ProGradRule, kl_from_zero_shot, method_terms
from subpt.config import TrainConfig
from subpt.crashpoints import crash_point
from subpt.distributed import DistContext, init_from_env
from subpt.errors import SubptError
from subpt.evaluate import classify, evaluate_run, zero_shot_metrics
from subpt.nfl import NovelFeatureLearner, resolve_names, teacher_templates
from subpt.projection import GradientProjector
from subpt.prompts import PromptLearner
from subpt.splits import Splits, prepare_data


def lr_at(cfg: TrainConfig, epoch: int) -> float:
    """CoOp's schedule: constant warm-up lr for the first epochs, then cosine over all epochs."""
    if epoch < cfg.warmup_epochs:
        return cfg.warmup_lr
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * (epoch - cfg.warmup_epochs) / cfg.epochs))


def epoch_order(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    """The sample order of one epoch, a function of (seed, epoch) alone."""
    gen = torch.Generator().manual_seed(1_000_003 * int(seed) + int(epoch))
    return torch.randperm(n, generator=gen).to(device)


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


def _autocast(cfg: TrainConfig, device: torch.device):
    if cfg.precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if cfg.precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def backward_step(
    learner: PromptLearner,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_total: int,
    nfl: NovelFeatureLearner | None,
    cfg: TrainConfig,
    scaler: torch.amp.GradScaler,
    world: int = 1,
    kg: KgCoOpTerm | None = None,
    kl_to: torch.Tensor | None = None,
) -> tuple[float, int]:
    """Backpropagate this process' share of one batch's loss into ctx.grad; returns (loss share, correct).

    The share is the summed cross-entropy over this process' images divided by the full batch size (plus
    NFL / world), so summing gradients over processes gives the one-process gradient. With
    `cfg.text_chunk`, the text features are first computed without autograd, the loss is differentiated
    with respect to them, and each chunk of classes is then re-encoded and backpropagated on its own:
    the same gradient, with memory bounded by one chunk of classes. Where the prompts share their
    `[SOS] ctx` prefix (`PromptLearner.shares_prefix`), it is encoded once per pass, for the classes and the
    NFL names alike.

    KgCoOp (`kg`) adds `cfg.method_weight * kg.loss_from_features(text) / world`, as NFL adds its term. With `kl_to`
    (ProGrad's zero-shot text features) the loss is instead the KL divergence from the zero-shot predictions, the
    share of this process' images, and nothing else: its gradient is ProGrad's g_kl.
    """
    device = x.device
    scale = learner.backbone.model.logit_scale
    chunk = cfg.text_chunk
    nfl_prompts = nfl.prompts if nfl is not None else None

    def objective(text: torch.Tensor, student: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        logits = classify(x, text, scale)
        if kl_to is not None:
            return kl_from_zero_shot(logits, classify(x, kl_to, scale), batch_total), logits
        loss = F.cross_entropy(logits, y, reduction="sum") / batch_total
        if nfl is not None:
            loss = loss + cfg.nfl_lambda * nfl.loss_from_features(student) / world
        if kg is not None:
            loss = loss + cfg.method_weight * kg.loss_from_features(text) / world
        return loss, logits

    if chunk is None:
        with _autocast(cfg, device):
            prefix = learner.prefix_state()  # the [SOS] ctx prefix, once for the classes and the NFL names
            if nfl is None:
                loss, logits = objective(learner.text_features(prefix=prefix), None)
            else:  # the classes' and the NFL names' suffixes in one pass where they share the prefix
                text, student = learner.joint_text_features([None, nfl_prompts], prefix=prefix)
                loss, logits = objective(text, student)
        scaler.scale(loss).backward()
    else:
        with torch.no_grad(), _autocast(cfg, device):
            prefix = learner.prefix_state()
            text = learner.text_features(chunk_size=chunk, prefix=prefix).requires_grad_(True)
            student = None
            if nfl is not None:
                student = learner.text_features(nfl_prompts, chunk_size=chunk, prefix=prefix)
        if student is not None:
            student.requires_grad_(True)
        with _autocast(cfg, device):
            loss, logits = objective(text, student)
        scaler.scale(loss).backward()
        # A shared prefix is encoded once with autograd; the chunks backpropagate into detached copies of its
        # keys and values, whose summed gradients then run through the prefix once.
        with _autocast(cfg, device):
            prefix = learner.prefix_state()
        leaf = prefix.detached() if prefix is not None else None
        for feats, prompts in ((text, None), (student, nfl_prompts)):
            if feats is None:
                continue
            for s in range(0, feats.shape[0], chunk):
                ids = torch.arange(s, min(feats.shape[0], s + chunk), device=device)
                with _autocast(cfg, device):
                    part = learner.text_features(prompts, class_ids=ids, prefix=leaf)
                part.backward(feats.grad[ids])
        if prefix is not None:
            prefix.backward_from(leaf)
    return loss.item(), int((logits.argmax(-1) == y).sum())


@dataclass
class TrainingRun:
    """Everything one training process holds between epochs: model, data, optimiser, recorder and progress."""

    cfg: TrainConfig
    run_dir: Path
    dctx: DistContext
    device: torch.device
    splits: Splits
    learner: PromptLearner
    projector: GradientProjector | None
    nfl: NovelFeatureLearner | None
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    recorder: GradientRecorder
    start_epoch: int
    step: int
    metrics: list[dict]
    lock: runs.RunLock | None = None  # rank 0's hold on the run folder's writer lock
    kg: KgCoOpTerm | None = None  # --method kgcoop
    prograd: ProGradRule | None = None  # --method prograd
    params: list[tuple[str, torch.nn.Parameter]] | None = None  # trained: (runs.CTX_NAME, ctx) first, then the method's


def start_run(cfg: TrainConfig, run_dir: Path, resume: bool, overwrite: bool, progress: bool) -> TrainingRun:
    """Set up a run: check the settings and folder, load model and data, restore a checkpoint, write the start.

    Everything that can fail on bad input happens before the run folder is touched.
    """
    cfg.validate()
    dctx, device_name = init_from_env(cfg.device)
    device = torch.device(device_name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SubptError("--device cuda: no CUDA GPU is visible; use --device cpu")
    runs.check_run_dir(run_dir, resume, overwrite)
    if resume:
        runs.check_resume(run_dir, cfg)

    backbone = load_backbone(cfg.model, cfg.pretrained, device, seed=cfg.seed)
    splits = prepare_data(cfg, backbone, progress=progress and dctx.is_main)
    if splits.train[0].shape[0] == 0:
        raise SubptError(f"dataset {cfg.dataset!r} has no training images (a test-only set?): train on another "
                         "dataset and evaluate on this one with the cross-dataset protocol")
    learner = cocoop.learner_for(backbone, splits.base.classnames, cfg)
    ctx = learner.ctx
    params = [(runs.CTX_NAME, ctx), *learner.extra_parameters()]
    projector = None
    if cfg.basis:
        projector = GradientProjector.from_file(cfg.basis, basis_expectation(cfg, learner), ctx.numel(), device)
    nfl = None
    if cfg.nfl:
        nfl = NovelFeatureLearner(learner, resolve_names(cfg.nfl_names, splits.task), teacher_templates(splits.task))
    kg, prograd = method_terms(cfg, learner, splits.task.template)
    lock = runs.lock_run_dir(run_dir) if dctx.is_main else None  # held until train() ends
    try:
        if lock is not None:  # again, under the lock: another writer may have finished in the meantime
            runs.check_run_dir(run_dir, resume, overwrite)
            if resume:
                runs.check_resume(run_dir, cfg)
        last = runs.load_last(run_dir) if resume else None
        if resume:
            runs.check_trajectory(run_dir)  # a damaged chunk fails here, before anything in the folder is rewritten
        optimizer = torch.optim.SGD([p for _, p in params], lr=cfg.lr, momentum=cfg.momentum, weight_decay=0.0)
        scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
        start_epoch, step = 0, 0
        if last is not None:
            with torch.no_grad():
                for name, p in params:
                    p.copy_(runs.checkpoint_tensor(last, name, run_dir).to(device))
            optimizer.load_state_dict(last["optimizer"])
            start_epoch, step = int(last["epoch"]), int(last["step"])
        metrics = _write_start(cfg, run_dir, backbone, splits, last, start_epoch, resume, overwrite) if dctx.is_main else []
        dctx.barrier()
        recorder = GradientRecorder(
            params, runs.trajectory_path(run_dir), record_grads=cfg.record_grads, every=cfg.record_every,
            dtype=cfg.record_dtype, metadata=run_metadata(cfg, learner),
        )
        # Back to the checkpoint: rows recorded after it (a kill between an epoch's trajectory flush and its
        # checkpoint) are dropped; without a checkpoint that is every row, the initial snapshot included.
        recorder.truncate(step if last is not None else -1)
        if last is None:
            recorder.snapshot(step=0, epoch=0)
        return TrainingRun(cfg, run_dir, dctx, device, splits, learner, projector, nfl, optimizer, scaler, recorder,
                           start_epoch, step, metrics, lock, kg, prograd, params)
    except BaseException:
        if lock is not None:
            lock.close()
        raise


def _write_start(cfg: TrainConfig, run_dir: Path, backbone: Backbone, splits: Splits, last: dict | None,
                 start_epoch: int, resume: bool, overwrite: bool) -> list[dict]:
    """Rank 0: a new run's config.json and zeroshot.json, or a resumed run's metrics cut back to its checkpoint."""
    if overwrite and not resume:
        runs.clear_run(run_dir)
    (run_dir / runs.CKPT).mkdir(parents=True, exist_ok=True)
    if last is None:
        runs.save_config(run_dir, cfg)
        runs.write_zeroshot(run_dir, zero_shot_metrics(backbone, splits, [splits.task.template]))
    metrics = [m for m in runs.read_metrics(run_dir) if m["epoch"] <= start_epoch]
    if last is not None and "record" in last and (not metrics or metrics[-1]["epoch"] < start_epoch):
        metrics.append(dict(last["record"]))  # killed after the checkpoint, before its metrics line
    runs.write_metrics(run_dir, metrics)
    return metrics


def optimizer_step(run: TrainingRun, epoch: int, lr: float, loss: float, g_kl: torch.Tensor | None = None) -> None:
    """Turn the all-reduced gradients of the trained parameters into one optimiser step, recording them on the way.

    The order is the method: (1) unscale the fp16 loss scaling, so the gradient is the true one; (2) add the
    weight decay to the gradient (the optimiser has none), so that SubPT's projection confines it too;
    (3) record the gradient (gradflow analyses the raw gradient flow, before any projection); (4) project it
    onto span(U) (SubPT; ctx only: CoCoOp's meta-network trains unprojected); (5) step. ProGrad's rule (1b) acts
    on the all-reduced CE gradient and `g_kl` before (2): it is defined on the loss gradients, the optimiser's
    weight decay comes after it, as in its reference.
    """
    ctx = run.learner.ctx
    run.scaler.unscale_(run.optimizer)  # (1)
    if run.prograd is not None and g_kl is not None:  # (1b)
        with torch.no_grad():
            ctx.grad = run.prograd.apply(ctx.grad, g_kl)
    with torch.no_grad():
        for _, p in run.params:
            p.grad = p.grad.float().add_(p.detach(), alpha=run.cfg.weight_decay)  # (2)
    run.step += 1
    run.recorder.record(step=run.step, epoch=epoch + 1, loss=loss, lr=lr)  # (3)
    if run.projector is not None:
        run.projector.project_(ctx)  # (4)
    run.scaler.step(run.optimizer)  # (5)
    run.scaler.update()


def train_epoch(run: TrainingRun, epoch: int) -> dict:
    """One epoch (0-based `epoch`) of `run`: every batch, evaluation, snapshot, checkpoint; returns its record."""
    cfg, dctx, device, ctx = run.cfg, run.dctx, run.device, run.learner.ctx
    t0 = time.time()
    lr = lr_at(cfg, epoch)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    feats, labels = run.splits.epoch_train(cfg.seed, epoch)
    n = feats.shape[0]
    order = epoch_order(n, cfg.seed, epoch, device)
    totals = torch.zeros(2, dtype=torch.float64, device=device)  # summed loss, correct
    for start in range(0, n, cfg.batch_size):
        idx = order[start : start + cfg.batch_size]
        mine = idx[dctx.rank :: dctx.world]
        run.optimizer.zero_grad(set_to_none=True)
        g_kl = None
        if run.prograd is not None:  # ProGrad's g_kl first, all-reduced apart: its rule needs both whole gradients
            backward_step(run.learner, feats[mine], labels[mine], idx.numel(), None, cfg, run.scaler, dctx.world,
                          kl_to=run.prograd.zero_shot)
            g_kl, ctx.grad = dctx.all_reduce_(ctx.grad), None
        if run.learner.conditional:  # CoCoOp: per-image prompts
            loss, correct = cocoop.backward_step(run.learner, feats[mine], labels[mine], idx.numel(), cfg.text_chunk,
                                                 run.scaler, lambda: _autocast(cfg, device))
        else:
            loss, correct = backward_step(run.learner, feats[mine], labels[mine], idx.numel(), run.nfl, cfg,
                                          run.scaler, dctx.world, kg=run.kg)
        for _, p in run.params:
            dctx.all_reduce_(p.grad)
        batch_stats = dctx.all_reduce_(torch.tensor([loss, correct], dtype=torch.float64, device=device))
        totals += batch_stats * torch.tensor([idx.numel(), 1.0], dtype=torch.float64, device=device)
        optimizer_step(run, epoch, lr, float(batch_stats[0]), g_kl)
    record = {"epoch": epoch + 1, "step": run.step, "loss": float(totals[0]) / n, "lr": lr,
              "train_acc": 100.0 * float(totals[1]) / n}
    if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
        record.update(evaluate_run(run.learner, run.splits, cfg.text_chunk))
    record["seconds"] = round(time.time() - t0, 4)
    run.recorder.snapshot(step=run.step, epoch=epoch + 1)
    run.recorder.flush()
    crash_point("epoch-flushed")
    if dctx.is_main:
        runs.save_epoch(run.run_dir, ctx, run.optimizer, epoch + 1, run.step, cfg.hash(), record,
                        extra={name: p for name, p in run.params[1:]})
    return record


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
    run = start_run(cfg, Path(run_dir), resume, overwrite, progress)
    end_epoch = cfg.epochs if stop_after is None else min(cfg.epochs, stop_after)
    bar = tqdm(range(run.start_epoch, end_epoch), desc=f"{cfg.method} {cfg.dataset} seed {cfg.seed}",
               disable=not (progress and run.dctx.is_main) or None, initial=run.start_epoch, total=cfg.epochs)
    try:
        for epoch in bar:
            record = train_epoch(run, epoch)
            run.metrics.append(record)
            if on_epoch:
                on_epoch(record)
            bar.set_postfix(base=f"{record.get('base_acc', float('nan')):.1f}", novel=f"{record.get('novel_acc', float('nan')):.1f}")
    finally:
        run.recorder.close()
        if run.lock is not None:
            run.lock.close()
    return run.metrics
