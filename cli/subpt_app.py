"""`subpt`: train prompts (CoOp, SubPT, NFL), zero-shot CLIP, re-evaluate runs, the embedded demo."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from subpt.config import AUG_VIEWS_DEFAULT, AUG_VIEWS_EMBEDDED, PROMPT_METHODS, TrainConfig
from subpt.errors import SubptError

from .common import check_output_file, defaults_of, print_json, register_user_error, run_app, run_guarded
from .data_cmd import data_app
from .dense_cmd import dense_app
from .report_cmd import subpt_report
from .sweep_cmd import sweep, table
from .task_options import with_task_options

register_user_error(SubptError)

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

app.add_typer(data_app, name="data", help="Check data roots of the real datasets.")
app.add_typer(dense_app, name="dense", help="Detection and segmentation on the embedded world's scenes.")
app.command("report")(subpt_report)
app.command("sweep")(sweep)
app.command("table")(table)

T = defaults_of(TrainConfig)  # every training option's default is TrainConfig's
DATASET = typer.Option(T("dataset"), "--dataset", "-d", help="Dataset name (see `subpt datasets`).")
ROOT = typer.Option(None, "--root", help="Data root of real datasets (docs/datasets.md).")
MODEL = typer.Option(T("model"), "--model", "-m", help="open_clip model name, or subpt-tiny (embedded).")
PRETRAINED = typer.Option(
    T("pretrained"), "--pretrained", "-p", help="open_clip pretrained tag, a checkpoint file, 'random' (drawn from --seed), or 'embedded'."
)
AUG_VIEWS_HELP = (
    f"Augmented training views per image (CoOp's random resized crop and flip), encoded once and cached, one per "
    f"epoch; 0: the test view only. Default: {AUG_VIEWS_DEFAULT} ({AUG_VIEWS_EMBEDDED} for the embedded subpt-tiny)."
)
AUG_VIEWS = typer.Option(T("aug_views"), "--aug-views", help=AUG_VIEWS_HELP)
METHOD = typer.Option(
    T("prompt_method"), "--method",
    help=f"Prompt-learning method: {', '.join(PROMPT_METHODS)} (docs/baselines.md). cocoop's paper settings (ctx "
    "'a photo of a', batch 1, 10 epochs, lr 0.002) apply to the options you do not give.")
METHOD_LAMBDA = typer.Option(
    T("method_lambda"), "--method-lambda",
    help="Weight of the method's own term (default: its paper's, " + ", ".join(
        f"{name} {lam:g}" for name, lam in PROMPT_METHODS.values() if lam is not None) + ").")


def given_options(ctx: typer.Context, names: dict) -> set[str]:
    """Which of these options of the running command the user gave (on the command line or the environment)."""
    sources = {n: ctx.get_parameter_source(n) for n in names}
    return {n for n, src in sources.items() if src is not None and src.name != "DEFAULT"}


@app.command()
@run_guarded
@with_task_options
def train(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", "-o", help="Run folder to create (or continue with --resume)."),
    dataset: str = DATASET,
    root: str = ROOT,
    model: str = MODEL,
    pretrained: str = PRETRAINED,
    shots: int = typer.Option(T("shots"), help="Training images per class."),
    seed: int = typer.Option(T("seed"), help="Seed of few-shot sampling, context init and data order."),
    subsample: str = typer.Option(T("subsample"), help="'base': train on base classes, test base and novel; 'all'."),
    n_ctx: int = typer.Option(T("n_ctx"), "--n-ctx", help="Number of context vectors."),
    ctx_init: str = typer.Option(T("ctx_init"), "--ctx-init", help="Initialise the context from a phrase, e.g. 'a photo of a'."),
    csc: bool = typer.Option(T("csc"), "--csc", help="Class-specific context."),
    class_token_position: str = typer.Option(T("class_token_position"), "--class-token-position", help="end, middle or front."),
    epochs: int = typer.Option(T("epochs"), help="Training epochs."),
    batch_size: int = typer.Option(T("batch_size"), "--batch-size"),
    lr: float = typer.Option(T("lr"), help="SGD learning rate (cosine schedule)."),
    weight_decay: float = typer.Option(T("weight_decay"), "--weight-decay"),
    warmup_epochs: int = typer.Option(T("warmup_epochs"), "--warmup-epochs"),
    method: str = METHOD,
    method_lambda: float = METHOD_LAMBDA,
    basis: str = typer.Option(T("basis"), "--basis", help="SubPT: project every gradient onto this basis file."),
    nfl: bool = typer.Option(T("nfl"), "--nfl", help="Add the Novel Feature Learner loss."),
    nfl_names: str = typer.Option(T("nfl_names"), "--nfl-names", help="'novel', 'imagenet100', or a file of class names."),
    nfl_lambda: float = typer.Option(T("nfl_lambda"), "--nfl-lambda"),
    record: bool = typer.Option(T("record_grads"), "--record", help="Record per-step gradients into RUN/trajectory."),
    record_every: int = typer.Option(T("record_every"), "--record-every", help="Record the gradient every N optimiser steps."),
    record_dtype: str = typer.Option(T("record_dtype"), "--record-dtype", help="Storage dtype: float32, float16, bfloat16."),
    device: str = typer.Option(T("device"), help="cpu or cuda."),
    precision: str = typer.Option(T("precision"), help="fp32, bf16 or fp16 (autocast)."),
    text_chunk: int = typer.Option(T("text_chunk"), "--text-chunk", help="Encode this many classes at a time (bounds memory)."),
    aug_views: int = AUG_VIEWS,
    test_per_class: int = typer.Option(
        None, "--test-per-class", hidden=True, help="Embedded world only: test images per class (fast tests)."),
    task_options: dict | None = None,
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run in --out."),
    as_json: bool = typer.Option(False, "--json", help="Print the final metrics as JSON."),
) -> None:
    """Train a prompt: CoOp, KgCoOp, ProGrad or CoCoOp (--method), SubPT of any of them with --basis, optionally with
    --nfl."""
    from subpt.config import TrainConfig, method_presets
    from subpt.summary import print_run_summary
    from subpt.train import train as run_train

    if test_per_class is not None:
        task_options = {**(task_options or {}), "test_per_class": test_per_class}
    settings = dict(n_ctx=n_ctx, ctx_init=ctx_init, epochs=epochs, batch_size=batch_size, lr=lr)
    settings.update(method_presets(method, given_options(ctx, settings)))
    cfg = TrainConfig(
        dataset=dataset, root=root, dataset_options=task_options, model=model,
        pretrained=pretrained, shots=shots, seed=seed, subsample=subsample, **settings,
        csc=csc, class_token_position=class_token_position,
        weight_decay=weight_decay, warmup_epochs=warmup_epochs, prompt_method=method, method_lambda=method_lambda,
        basis=basis, nfl=nfl, nfl_names=nfl_names,
        nfl_lambda=nfl_lambda, record_grads=record, record_every=record_every, record_dtype=record_dtype, device=device,
        precision=precision, text_chunk=text_chunk, aug_views=aug_views,
    )
    metrics = run_train(cfg, out, resume=resume, overwrite=overwrite, progress=not as_json)
    if as_json:
        print_json({"run": str(out), "final": metrics[-1] if metrics else None})
    else:
        print_run_summary(out)


@app.command()
@run_guarded
@with_task_options
def pipeline(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", "-o", help="Folder for both stages and the basis."),
    dataset: str = DATASET,
    root: str = ROOT,
    model: str = MODEL,
    pretrained: str = PRETRAINED,
    shots: int = typer.Option(T("shots")),
    seed: int = typer.Option(T("seed")),
    subsample: str = typer.Option(T("subsample"), help="'base' (base-to-novel) or 'all' (few-shot)."),
    n_ctx: int = typer.Option(T("n_ctx"), "--n-ctx"),
    ctx_init: str = typer.Option(T("ctx_init"), "--ctx-init"),
    epochs: int = typer.Option(T("epochs")),
    method: str = METHOD,
    method_lambda: float = METHOD_LAMBDA,
    nfl: bool = typer.Option(T("nfl"), "--nfl", help="CoOp+NFL -> basis -> SubPT+NFL."),
    nfl_names: str = typer.Option(T("nfl_names"), "--nfl-names"),
    t_early: int = typer.Option(None, "--t-early", help="Early window: epochs 1..t (default: the reference value)."),
    rank: int = typer.Option(
        None, "--rank", help="Basis rank r (default: the reference value at the reference t_early, else round(t/3))."
    ),
    source: str = typer.Option("snapshots", help="Basis from ctx 'snapshots' (reference) or per-step 'grads'."),
    device: str = typer.Option(T("device")),
    precision: str = typer.Option(T("precision")),
    aug_views: int = AUG_VIEWS,
    task_options: dict | None = None,
    resume: bool = typer.Option(False, "--resume", help="Keep finished stages, continue an interrupted one."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the runs already in --out."),
) -> None:
    """The reference recipe in one command: CoOp(+NFL) with recording, early basis, SubPT(+NFL); with --method, the
    same for another method (KgCoOp(+NFL) -> basis -> SubPT(KgCoOp)(+NFL), ...)."""
    from subpt.config import TrainConfig, method_presets
    from subpt.experiments.pipeline import run_pipeline
    from subpt.summary import print_run_summary

    settings = dict(n_ctx=n_ctx, ctx_init=ctx_init, epochs=epochs)
    settings.update(method_presets(method, given_options(ctx, settings)))
    cfg = TrainConfig(
        dataset=dataset, root=root, dataset_options=task_options, model=model,
        pretrained=pretrained, shots=shots, seed=seed, subsample=subsample, **settings, prompt_method=method, method_lambda=method_lambda, nfl=nfl, nfl_names=nfl_names,
        device=device, precision=precision, aug_views=aug_views,
    )
    paths = run_pipeline(cfg, out, t_early=t_early, rank=rank, source=source, resume=resume, overwrite=overwrite)
    print_run_summary(paths["stage1"])
    print_run_summary(paths["stage2"])


@app.command()
@run_guarded
def basis(
    run: Path = typer.Argument(..., help="A run folder of `subpt train` (CoOp or CoOp+NFL)."),
    out: Path = typer.Option(..., "--out", "-o", help="Basis file to write (e.g. early.pt)."),
    t_early: int = typer.Option(None, "--t-early", help="Window: epochs 1..t (default: the reference value)."),
    rank: int = typer.Option(
        None, "--rank", help="r (default: the reference value at the reference t_early, else round(t/3), below t-1)."
    ),
    source: str = typer.Option(
        "snapshots", help="'snapshots' (reference, centred) or 'grads' (not centred; needs --record)."
    ),
    late: bool = typer.Option(False, "--late", help="Use the last t epochs instead of the first (the diagnostic)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The reference SubPT basis of a run in one command: centred ctx snapshots after epochs 1..t_early, top r."""
    from subpt.basis_plan import BasisPlan
    from subpt.runs import load_config

    check_output_file(out, "--out")
    cfg = load_config(run)
    if t_early is not None and t_early > cfg.epochs:
        raise SubptError(f"--t-early {t_early} must lie in 1..{cfg.epochs} (the epochs of {run})")
    plan = BasisPlan.reference(cfg.epochs, cfg.shots, cfg.subsample == "base", t_early, rank, source, late=late)
    window = plan.window
    b = plan.build(run, out)
    info = {"basis": str(out), "window": window, "rank": b.rank, "dim": b.dim, "source": source,
            "energy": b.metadata.get("energy")}
    if as_json:
        print_json(info)
    else:
        centred = "centred " if b.metadata.get("centered") else ""
        print(f"wrote {out}: rank {b.rank} of dim {b.dim} from {source} {window} (captures {info['energy']:.1%} of the "
              f"window's {centred}energy)")


@app.command()
@run_guarded
@with_task_options
def zeroshot(
    dataset: str = DATASET,
    root: str = ROOT,
    model: str = MODEL,
    pretrained: str = PRETRAINED,
    template: list[str] = typer.Option(None, "--template", "-t", help="Prompt template(s) with '{}'; repeat for an ensemble."),
    ensemble: bool = typer.Option(False, "--ensemble", help="Use the dataset's template ensemble (embedded world) or CLIP's 80."),
    seed: int = typer.Option(T("seed")),
    device: str = typer.Option(T("device")),
    task_options: dict | None = None,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Zero-shot CLIP on the base and novel test classes of a dataset."""
    from subpt.zeroshot import print_zero_shot, run_zero_shot

    result = run_zero_shot(dataset, root, model, pretrained, template, ensemble, seed, device,
                           task_options, progress=not as_json)
    if as_json:
        print_json(result)
    else:
        print_zero_shot(result)


@app.command("eval")
@run_guarded
def eval_run(
    run: Path = typer.Argument(
        ..., help="A run folder of `subpt train`, or any folder `subpt sweep` wrote (every run below it)."
    ),
    epoch: int = typer.Option(None, help="Evaluate the context after this epoch (default: the last)."),
    device: str = typer.Option(T("device")),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Re-evaluate saved runs on their test sets (and a transfer run on its targets)."""
    from subpt.config import check_device
    from subpt.experiments.reevaluate import evaluate_folder, run_folders

    check_device(device)
    single = run_folders(run) == [run]
    results = evaluate_folder(run, epoch, device, progress=not as_json, echo=None if as_json else _print_eval)
    if as_json:
        print_json(results[0] if single else {"runs": results})


def _print_eval(result: dict) -> None:
    novel = result["novel_acc"]
    if novel is None or novel != novel:  # no novel classes: trained on all classes
        numbers = f"acc {result['base_acc']:.2f}"
    else:
        numbers = f"base {result['base_acc']:.2f}  novel {novel:.2f}  HM {result['hm']:.2f}"
    when = "" if result["epoch"] is None else f" epoch {result['epoch']}"
    transfer = "".join(f"  {t} {acc:.2f}" for t, acc in result.get("transfer", {}).items())
    typer.echo(f"{result['run']} ({result['method']}{when}): {numbers}{' |' + transfer if transfer else ''}")


@app.command("build-embedded")
@run_guarded
def build_embedded(
    out: Path = typer.Option(None, "--out", "-o", help="Where to write the checkpoint (default: the packaged file)."),
    steps: int = typer.Option(2000, help="Pretraining steps (batch 256)."),
    seed: int = typer.Option(0),
) -> None:
    """Rebuild the embedded tiny CLIP deterministically by pretraining it on the procedural world."""
    from subpt.embedded import model as tiny
    from subpt.embedded.pretrain import build

    if steps < 1:
        raise SubptError(f"--steps must be at least 1, got {steps}")
    if not 0 <= seed < 2**63:
        raise SubptError(f"--seed must lie in [0, 2^63), got {seed}")
    check_output_file(out, "--out")
    info = build(out or tiny.CHECKPOINT_PATH, steps=steps, seed=seed)
    print(json.dumps(info, indent=2))


@app.command()
@run_guarded
def datasets() -> None:
    """List the dataset names."""
    from subpt.data.catalogue import dataset_names, needs_root

    for name in dataset_names():
        print(f"{name}{'' if needs_root(name) else '  (embedded, offline)'}")


@app.command()
@run_guarded
@with_task_options
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Folder for the demo's runs."),
    seeds: int = typer.Option(3, help="Number of seeds."),
    epochs: int = typer.Option(None, help="Epochs of every run (default: the study's 20; the early window is the first 30 %)."),
    task_options: dict | None = None,
    report: bool = typer.Option(True, "--report/--no-report", help="Write report.html for the seed-1 runs."),
    resume: bool = typer.Option(False, "--resume", help="Keep finished runs in --out and continue an interrupted one."),
    aug_views: int = AUG_VIEWS,
    dense: bool = typer.Option(False, "--dense", help="Detection and segmentation instead: prompts learned on the "
                               "seen classes' regions of the world's scenes (docs/dense.md)."),
    eval_scenes: int = typer.Option(50, "--eval-scenes", help="With --dense: evaluation scenes per seed."),
) -> None:
    """The main job on the embedded default: zero-shot, CoOp, NFL, SubPT on a typical world task, over seeds."""
    if dense:
        from subpt.experiments.dense_demo import run_dense_demo

        if task_options:
            raise SubptError("--dense takes no task options (it runs the embedded default's scenes)")
        run_dense_demo(out, seeds=seeds, epochs=epochs, eval_scenes=eval_scenes, resume=resume)
        return
    from subpt.experiments.demo import run_demo

    run_demo(out, seeds=seeds, epochs=epochs, options=task_options, report=report, resume=resume, aug_views=aug_views)




@app.command()
@run_guarded
def study(
    out: Path = typer.Option(Path("runs/study"), "--out", "-o", help="Folder of the study's runs and tables."),
    seeds: str = typer.Option("1,2,3", "--seeds", help="Comma list of seeds."),
    variants: str = typer.Option(None, "--variants", help="Comma list of the default grid's variants (default: all)."),
    grid: Path = typer.Option(None, "--grid", help="JSON file {name: {dataset, options}} instead of the default grid."),
    epochs: int = typer.Option(None, help="Epochs of every run (default: the study's 20)."),
    restart: bool = typer.Option(False, "--restart", help="Retrain every run instead of keeping finished ones."),
    aug_views: int = AUG_VIEWS,
    baselines: str = typer.Option(
        "kgcoop,prograd", "--baselines",
        help="Baselines run beside CoOp/SubPT/NFL with the same setting: a comma list of "
        f"{', '.join(p for p in PROMPT_METHODS if p != 'coop')}, 'all' or 'none'. CoCoOp is not in the default: "
        "its batch-1 epochs with per-image text passes add about 2 minutes per run on 2 CPU cores, most of an "
        "hour over the default grid's 24 runs."),
) -> None:
    """Robustness of the paper's claims: every method, and the baselines, over world variants x seeds with one
    method setting."""
    from subpt.experiments.study import read_grid, run_study, variants_by_name

    if grid is not None and variants is not None:
        raise SubptError("give either --grid or --variants, not both")
    chosen = read_grid(grid) if grid is not None else variants_by_name(_names(variants))
    names = _names(baselines)
    if not names:
        raise SubptError("--baselines is empty: give a comma list, 'all' or 'none'")
    if ("all" in names or "none" in names) and len(names) > 1:
        raise SubptError("--baselines: 'all' and 'none' stand alone, not in a list")
    picked = None if names == ["all"] else [] if names == ["none"] else names
    run_study(out, chosen, _int_list(seeds, "--seeds"), epochs=epochs, resume=not restart, echo=typer.echo,
              aug_views=aug_views, baselines=picked)


def _names(text: str | None) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()] if text else []


def _int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(p) for p in text.split(",") if p.strip()]
    except ValueError as e:
        raise SubptError(f"{option} must be a comma list of integers, got {text!r}") from e
    if not values:
        raise SubptError(f"{option} needs at least one value")
    return values


def main() -> None:
    """Console-script entry point."""
    run_app(app, "subpt")


if __name__ == "__main__":
    main()
