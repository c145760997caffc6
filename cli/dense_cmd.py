"""`subpt dense ...`: detection and segmentation on the embedded world's scenes (mounted as `subpt dense`)."""

from __future__ import annotations

from pathlib import Path

import typer

from subpt.dense.settings import CONTEXT, THRESHOLD, CropSettings, ProposalParams
from subpt.embedded.scenes import CANVAS, SceneConfig

from .common import check_output_file, print_json, run_guarded

dense_app = typer.Typer(
    help="Open-vocabulary detection and zero-shot segmentation on the embedded world's scenes.",
    no_args_is_help=True,
)


@dense_app.callback()
def _dense() -> None:
    """Open-vocabulary detection and zero-shot segmentation on the embedded world's scenes."""


@dense_app.command("eval")
@run_guarded
def dense_eval_cmd(
    run: Path = typer.Option(
        None,
        "--run",
        help="A `subpt train` run on world-objects or world-regions: name classes with its "
        "learned context (default: zero-shot, the template 'a photo of a {}.').",
    ),
    epoch: int = typer.Option(
        None, "--epoch", help="With --run: the context after this epoch (default: the last)."
    ),
    seed: int = typer.Option(1, "--seed", help="Seed of the scenes."),
    scenes: int = typer.Option(100, "--scenes", help="Number of scenes."),
    n_classes: int = typer.Option(
        None, "--n-classes", help="Object classes (default 64; with --run: the run's)."
    ),
    class_seed: int = typer.Option(
        None, "--class-seed", help="Seed of the class set (default 0; with --run: the run's)."
    ),
    partition_seed: int = typer.Option(
        None,
        "--partition-seed",
        help="Seed of a random seen/unseen partition (default: CoOp's rule on sorted labels).",
    ),
    held_out: bool = typer.Option(
        None, "--held-out/--no-held-out", help="Admit kinds held out of pretraining."
    ),
    noise: float = typer.Option(SceneConfig.noise, "--noise", help="Pixel noise of the scenes."),
    canvas: int = typer.Option(CANVAS, "--canvas", help="Side of a scene in pixels."),
    threshold: float = typer.Option(
        THRESHOLD,
        "--threshold",
        help="Background rule: best class probability below this makes a region background.",
    ),
    context: float = typer.Option(CONTEXT, "--context", help="Crop side / longer side of the region's box."),
    proposal_scale: float = typer.Option(
        ProposalParams.scale, "--proposal-scale", help="felzenszwalb's scale."
    ),
    chance: bool = typer.Option(
        False, "--chance", help="Name every region with a random class: the chance level."
    ),
    oracle: bool = typer.Option(
        False, "--oracle-proposals", help="Diagnostic: the ground-truth masks as proposals (isolates naming)."
    ),
    model: str = typer.Option(
        "subpt-tiny", "--model", "-m", help="open_clip model (zero-shot; --run uses its own)."
    ),
    pretrained: str = typer.Option(
        "embedded", "--pretrained", "-p", help="Weights (zero-shot; --run uses its own)."
    ),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    source: str = typer.Option(
        "world-scenes", "--source", help="world-scenes (the embedded world), coco (OV-COCO) or voc (VOC 2012); "
        "a run on coco-regions / voc-regions brings its own."
    ),
    root: Path = typer.Option(None, "--root", help="coco / voc: the folder holding the dataset."),
    split: str = typer.Option("val", "--split", help="coco / voc: the split to evaluate."),
    max_images: int = typer.Option(None, "--max-images", help="coco / voc: the first this many images."),
    proposals: Path = typer.Option(
        None, "--proposals", help="coco: a COCO-style JSON of proposals; voc: a folder of mask files "
        "(default: the label-free generator)."
    ),
    out: Path = typer.Option(
        None, "--out", "-o", help="JSON result file (default: runs/dense/<mode>-seed<S>.json)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Box AP50 and mIoU on seen and unseen classes (and their harmonic means) of the world's scenes, or of OV-COCO
    or VOC 2012 (--source)."""
    from subpt.dense.run_eval import dense_eval, write_result

    real = source != "world-scenes"
    given = {
        "n_classes": n_classes,
        "class_seed": class_seed,
        "partition_seed": partition_seed,
        "held_out": held_out,
    }
    mode = (
        ("run" if run is not None else "zeroshot")
        + ("-chance" if chance else "")
        + ("-oracle" if oracle else "")
    )
    path = out or Path("runs/dense") / f"{mode}-seed{seed}.json"
    check_output_file(path, "--out")
    result = dense_eval(
        seed,
        scenes,
        run=run,
        epoch=epoch,
        world={k: v for k, v in given.items() if v is not None},
        source=source,
        root=None if root is None else str(root),
        split=split,
        source_options={"max_images": max_images, "proposals": None if proposals is None else str(proposals)}
        if real else None,
        scene_config=SceneConfig(canvas=canvas, noise=noise),
        params=ProposalParams(scale=proposal_scale),
        crops=CropSettings(context=context),
        threshold=threshold,
        chance=chance,
        oracle=oracle,
        model=model,
        pretrained=pretrained,
        device=device,
        progress=not as_json,
    )
    write_result(result, path)
    if as_json:
        print_json({k: v for k, v in result.items() if k != "ap50_per_class"})
        return
    from rich.console import Console
    from rich.table import Table

    who = (
        f"{result['run']} epoch {result['epoch']}" if run is not None else f"zero-shot '{result['template']}'"
    )
    kind = " (chance)" if chance else " (oracle proposals)" if oracle else ""
    typer.echo(
        f"dense {who}{kind}: {result['scenes']} scenes, seed {seed}, {result['objects']} objects, "
        f"{result['proposals_per_scene']:.1f} proposals per scene, {result['seconds']:.0f} s"
    )
    table = Table()
    for col in ("", "seen", "unseen", "HM"):
        table.add_column(col, justify="right")
    table.add_row("box AP50", *(f"{result[k]:.2f}" for k in ("ap50_seen", "ap50_unseen", "ap50_hm")))
    table.add_row("mIoU", *(f"{result[k]:.2f}" for k in ("miou_seen", "miou_unseen", "hiou")))
    Console().print(table)
    typer.echo(f"wrote {path}")
