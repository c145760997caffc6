"""The options that define an embedded-world task, declared once for every command that builds a task."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])
_W = "Embedded world only: "
# name -> (type, Typer option); every default is None, meaning "the dataset's default" (docs/embedded.md).
TASK_OPTIONS: dict[str, tuple[type, Any]] = {
    "n_classes": (int, typer.Option(None, "--n-classes", help="world-objects only: number of object classes (default 64).")),
    "class_seed": (int, typer.Option(None, "--class-seed", help="world-objects only: seed of the class set (default 0).")),
    "partition_seed": (int, typer.Option(
        None, "--partition-seed", help=_W + "seed of a random base/novel partition (default: CoOp's rule on sorted labels).")),
    "held_out": (bool, typer.Option(
        None, "--held-out/--no-held-out",
        help="world-objects only: admit the kinds held out of pretraining (zero-shot is at chance on them).")),
    "main_color": (float, typer.Option(
        None, "--main-color",
        help="world-objects only: share of each kind's images in its main colour here (default 0.5; web: 0.9).")),
    "scene": (float, typer.Option(
        None, "--scene", help="world-objects only: share of a class's images on its typical background (default 0.5).")),
    "cue": (str, typer.Option(None, "--cue", help=_W + "spurious cue in the few-shot train set (none|background|mark).")),
    "cue_strength": (float, typer.Option(None, "--cue-strength", help=_W + "share of train images with the cue (0..1).")),
    "noise": (float, typer.Option(None, "--noise", help=_W + "pixel noise of the task images (default 12; pretraining 4-28).")),
    "regions": (str, typer.Option(
        None, "--regions", help="Region datasets: box crops (detection) or mask crops (segmentation); default box "
        "(voc-regions: mask).")),
    "train_images": (int, typer.Option(
        None, "--train-images", help="coco-regions / voc-regions: the first N training images (default all).")),
    "test_images": (int, typer.Option(
        None, "--test-images", help="coco-regions / voc-regions: the first N evaluation images (default all).")),
    "train_proposals": (str, typer.Option(
        None, "--train-proposals", help="coco-regions / voc-regions: the training split's proposal file (COCO JSON) "
        "or folder (VOC masks); default: the label-free generator.")),
    "test_proposals": (str, typer.Option(
        None, "--test-proposals", help="coco-regions / voc-regions: the evaluation split's proposal file or folder.")),
    "max_proposals": (int, typer.Option(
        None, "--max-proposals", help="coco-regions / voc-regions: proposals kept per image (default 200).")),
    "scene_seed": (int, typer.Option(None, "--scene-seed", help="world-regions only: seed of the scenes (default 1).")),
    "train_scenes": (int, typer.Option(
        None, "--train-scenes", help="world-regions only: training scenes whose proposals are labelled (default 200).")),
    "test_scenes": (int, typer.Option(
        None, "--test-scenes", help="world-regions only: evaluation scenes whose regions are the test set (default 50).")),
}


def with_task_options(fn: F) -> F:
    """Give a command every task option as a CLI option; `fn` receives the given ones as `task_options` (a dict)."""
    sig = inspect.signature(fn, eval_str=True)
    own = [p for p in sig.parameters.values() if p.name != "task_options"]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)
             for name, (kind, option) in TASK_OPTIONS.items()]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = {name: kwargs.pop(name, None) for name in TASK_OPTIONS}
        return fn(*args, task_options={k: v for k, v in given.items() if v is not None}, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=[*own, *added])  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]
