"""The options that define an embedded-world task, declared once for every command that builds a task."""

from __future__ import annotations

from typing import Any

import typer

_W = "Embedded world only: "
CUE = typer.Option(None, "--cue", help=_W + "spurious cue in the few-shot train set (none|background|mark).")
CUE_STRENGTH = typer.Option(None, "--cue-strength", help=_W + "share of train images with the cue (0..1).")
NOISE = typer.Option(None, "--noise", help=_W + "pixel noise of the task images (default 12; pretraining: 4-28).")
N_CLASSES = typer.Option(None, "--n-classes", help="world-objects only: number of object classes (default 64).")
CLASS_SEED = typer.Option(None, "--class-seed", help="world-objects only: seed that draws the class set (default 0).")
PARTITION_SEED = typer.Option(
    None, "--partition-seed", help=_W + "seed of a random base/novel partition (default: CoOp's rule on the sorted labels)."
)
SCENE = typer.Option(
    None, "--scene", help="world-objects only: share of each class's images on its typical background (default 0.5)."
)
MAIN_COLOR = typer.Option(
    None, "--main-color",
    help="world-objects only: share of each kind's images in its main colour in this data set (default 0.5; web: 0.9).",
)
HELD_OUT = typer.Option(
    None, "--held-out/--no-held-out",
    help="world-objects only: admit the object kinds held out of pretraining (zero-shot is at chance on them).",
)


def task_options(
    cue: str | None = None,
    cue_strength: float | None = None,
    noise: float | None = None,
    n_classes: int | None = None,
    class_seed: int | None = None,
    partition_seed: int | None = None,
    held_out: bool | None = None,
    scene: float | None = None,
    main_color: float | None = None,
) -> dict[str, Any]:
    """The dataset options that were given on the command line (the others keep the dataset's defaults)."""
    given = {"cue": cue, "cue_strength": cue_strength, "noise": noise, "n_classes": n_classes,
             "class_seed": class_seed, "partition_seed": partition_seed, "held_out": held_out, "scene": scene,
             "main_color": main_color}
    return {k: v for k, v in given.items() if v is not None}
