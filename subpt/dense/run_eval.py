"""One dense evaluation end to end: scenes of a world class set, class text features (zero-shot template or a
trained run's learned context), proposals, features, AP50 and mIoU on seen and unseen classes, a JSON result."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from subpt.backbone import Backbone, load_backbone
from subpt.dense.evaluate import evaluate_scenes
from subpt.dense.region_task import BACKGROUND_NAME, REGION_DATASET, world_of
from subpt.dense.settings import THRESHOLD, CropSettings, ProposalParams
from subpt.dense.source_proposals import source_proposals
from subpt.dense.world_source import world_source
from subpt.embedded import model as tiny
from subpt.embedded.scenes import SceneClasses, SceneConfig
from subpt.errors import SubptError

TEMPLATE = "a photo of a {}."  # the world-objects task's own template: zero-shot CLIP's classifier there
WORLD_KEYS = (
    "n_classes",
    "class_seed",
    "partition_seed",
    "held_out",
)  # the options that choose the class set
WORLD_DATASET = "world-objects"


def world_options(given: dict[str, Any], run: Path | None) -> dict[str, Any]:
    """The class-set options of the scenes: those given, or, with a run, the run's own (a given option that
    contradicts the run's is an error: the run's base classes must be the scenes' seen classes)."""
    unknown = sorted(set(given) - set(WORLD_KEYS))
    if unknown:
        raise SubptError(
            f"unknown world option(s) {', '.join(unknown)}; dense scenes take {', '.join(WORLD_KEYS)}"
        )
    if run is None:
        return dict(given)
    from subpt.runs import load_config

    cfg = load_config(run)
    if cfg.dataset not in (WORLD_DATASET, REGION_DATASET):
        raise SubptError(
            f"--run {run} was trained on {cfg.dataset!r}; dense scenes need a run on {WORLD_DATASET} "
            f"or {REGION_DATASET}"
        )
    own = {k: cfg.dataset_options[k] for k in WORLD_KEYS if k in cfg.dataset_options}
    if cfg.dataset == REGION_DATASET:
        own = world_of(cfg.dataset_options)
    for k, v in given.items():
        if k in own and own[k] != v:
            raise SubptError(
                f"--{k.replace('_', '-')} {v!r} contradicts the run's {own[k]!r} ({run}); leave it out"
            )
    return {**given, **own}


def run_text_features(
    run: Path, backbone: Backbone, names: list[str], epoch: int | None = None
) -> tuple[torch.Tensor, dict]:
    """Normalised text features of `names` with the learned context of a run folder (its last saved epoch by
    default), and what was loaded. A region-trained run (world-regions) adds its learned background class as the
    last row."""
    from subpt.runs import learner_with_ctx, load_config, load_ctx

    cfg = load_config(run)
    if is_region_run(cfg):
        names = [*names, BACKGROUND_NAME]
    if cfg.csc:
        raise SubptError(
            f"--run {run} learned a class-specific context (--csc), which cannot name unseen classes; "
            "use a run with a shared context"
        )
    ctx, ep = load_ctx(Path(run), epoch)
    learner = learner_with_ctx(backbone, names, cfg, ctx, str(run))
    with torch.no_grad():
        text = learner.text_features(chunk_size=cfg.text_chunk)
    info = {
        "run": str(run),
        "epoch": ep,
        "method": cfg.method,
        "n_ctx": learner.n_ctx,
        "dataset": cfg.dataset,
    }
    return text, info


REAL_REGION_DATASETS = {"coco-regions": "coco", "voc-regions": "voc"}  # region dataset -> its dense source


def is_region_run(cfg: Any) -> bool:
    """Whether a run's config trained on region crops (so its text features carry a learned background)."""
    return cfg.dataset == REGION_DATASET or cfg.dataset in REAL_REGION_DATASETS


def real_source_of_run(cfg: Any) -> tuple[str, str | None, str, dict[str, Any]]:
    """(source, root, split, options) of the test split a coco-regions / voc-regions run was evaluated on."""
    from subpt.dense.region_task import real_region_options

    o = real_region_options(**cfg.dataset_options)
    options = {"max_proposals": o["max_proposals"], "max_images": o["test_images"], "proposals": o["test_proposals"]}
    return REAL_REGION_DATASETS[cfg.dataset], cfg.root, "val", options


def template_text_features(backbone: Backbone, names: list[str], template: str = TEMPLATE) -> torch.Tensor:
    """Normalised text features of `names` with a hand-crafted template (zero-shot CLIP)."""
    from subpt.evaluate import zero_shot_classifier

    if "{}" not in template:
        raise SubptError(f"--template {template!r} has no '{{}}' where the class name goes")
    return zero_shot_classifier(backbone, names, [template])


@lru_cache(maxsize=2)
def _backbone(model: str, pretrained: str, device: str) -> Backbone:
    """The frozen backbone, loaded once per process (a curve evaluates many epochs of one run)."""
    return load_backbone(model, pretrained, device)


def dense_eval(
    seed: int,
    n_scenes: int = 100,
    run: Path | None = None,
    epoch: int | None = None,
    world: dict[str, Any] | None = None,
    scene_config: SceneConfig | None = None,
    params: ProposalParams | None = None,
    crops: CropSettings | None = None,
    threshold: float = THRESHOLD,
    chance: bool = False,
    oracle: bool = False,
    model: str = tiny.MODEL_NAME,
    pretrained: str = "embedded",
    device: str = "cpu",
    progress: bool = True,
    keep: int = 0,
    source: str = "world-scenes",
    root: str | None = None,
    split: str = "val",
    source_options: dict[str, Any] | None = None,
) -> dict:
    """Box AP50 and mIoU (seen, unseen, harmonic mean) on `n_scenes` scenes of seed `seed`: zero-shot with the
    template, or with a run's learned context; `chance` names every region at random (the chance level).

    `source` "coco" or "voc" evaluates a real benchmark's `split` under `root` instead (`source_options`: the
    reader's options, `subpt.dense.sources`); a run trained on coco-regions / voc-regions brings its own."""
    if run is not None and not Path(run).is_dir():
        raise SubptError(f"--run {run} is not a folder; give a run folder written by `subpt train`")
    if run is None and epoch is not None:
        raise SubptError("--epoch needs --run (the epoch of a run's saved context)")
    start = time.time()
    if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise SubptError(f"--threshold must lie in [0, 1], got {threshold}")
    for settings in (scene_config, params, crops):
        if settings is not None:
            settings.validate()  # before any work
    cfg = scene_config or SceneConfig()
    rc = None
    if run is not None:
        from subpt.runs import load_config

        rc = load_config(run)
    if rc is not None and rc.dataset in REAL_REGION_DATASETS:
        source, root, split, source_options = real_source_of_run(rc)
    if source == "world-scenes":
        options = world_options(dict(world or {}), Path(run) if run is not None else None)
        scenes_of = world_source(options, seed, n_scenes, cfg)
    else:
        from subpt.dense.sources import load_source

        if world:
            raise SubptError(f"world options ({', '.join(world)}) apply to world-scenes, not to {source}")
        if rc is not None and not is_region_run(rc):
            raise SubptError(f"--run {run} was trained on {rc.dataset!r}; {source} needs a run on {source}-regions")
        scenes_of = load_source(source, root, split, source_options)
    source = scenes_of
    classes: SceneClasses = source.classes
    learned = False
    if rc is not None:
        backbone = _backbone(rc.model, rc.pretrained, device)
        text, loaded = run_text_features(Path(run), backbone, list(classes.names), epoch)
        learned = is_region_run(rc)
        mode = "run"
    else:
        backbone = _backbone(model, pretrained, device)
        text, loaded, mode = (
            template_text_features(backbone, list(classes.names)),
            {"template": TEMPLATE},
            "zeroshot",
        )
    result = evaluate_scenes(
        backbone,
        classes,
        source.scenes,
        text,
        source.key,
        params=params,
        crops=crops,
        threshold=threshold,
        chance_seed=seed if chance else None,
        progress=progress,
        oracle=oracle,
        given=None if oracle else source_proposals(source, params),
        learned_background=learned,
        keep=keep,
    )
    names = classes.names
    result["ap50_per_class"] = {names[c]: v for c, v in result["ap50_per_class"].items()}
    return {
        "mode": mode,
        "chance": chance,
        **loaded,
        "seed": seed,
        "model": backbone.model_name,
        "world": dict(classes.options),
        "source": source.name,
        "seen": [names[i] for i in classes.seen],
        "unseen": [names[i] for i in classes.unseen],
        "scene_config": asdict(cfg),
        **result,
        "seconds": round(time.time() - start, 1),
    }


def write_result(result: dict, path: Path) -> None:
    """Write a dense result as JSON (non-finite numbers as null)."""
    from gradflow.atomic import atomic_write_text

    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v

    atomic_write_text(Path(path), json.dumps(clean(result), indent=2) + "\n", mkdir=True)


CURVE_KEYS = ("ap50_seen", "ap50_unseen", "ap50_hm", "miou_seen", "miou_unseen", "hiou")


def dense_curve(run: Path, seed: int, n_scenes: int = 100, progress: bool = False) -> list[dict]:
    """Seen / unseen / HM AP50 and mIoU of a run's context after every saved epoch, on the scenes of `seed`
    (the region features are encoded once and cached; each epoch costs only its text features and metrics)."""
    from subpt.runs import saved_ctx_epochs

    epochs = sorted(saved_ctx_epochs(Path(run)))
    if not epochs:
        raise SubptError(f"--run {run} holds no saved epochs (ckpt/ctx_*.pt)")
    rows = []
    for ep in epochs:
        r = dense_eval(seed, n_scenes, run=Path(run), epoch=ep, progress=progress)
        rows.append({"epoch": ep, **{k: r[k] for k in CURVE_KEYS}})
    return rows
