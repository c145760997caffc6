"""The report's dense section for runs trained on region crops (world-regions): a few evaluation scenes with the
final context's boxes and masks beside the truth (seen classes green, unseen orange), and the seen / unseen AP50
and mIoU after every saved epoch against zero-shot."""

from __future__ import annotations

from gradflow import html as H
from gradflow.plots import to_png
from subpt.report.rundata import RunData

REPORT_SCENES = 20  # evaluation scenes per run (their region features are cached after the first report)
SHOWN_SCENES = 3
KEYS = (
    ("ap50_seen", "seen AP50"),
    ("ap50_unseen", "unseen AP50"),
    ("miou_seen", "seen mIoU"),
    ("miou_unseen", "unseen mIoU"),
)


def dense_html(runs: list[RunData], device: str = "cpu") -> str:
    """The dense section of every region-trained run among `runs` ("" when there is none)."""
    from subpt.dense.region_task import REGION_DATASET

    parts = [
        _run_html(r, device) for r in runs if r.config is not None and r.config.dataset == REGION_DATASET
    ]
    return "\n".join(parts)


def _run_html(run: RunData, device: str) -> str:
    from subpt.dense.figures import curve_figure, scenes_figure
    from subpt.dense.region_task import world_region_options
    from subpt.dense.run_eval import dense_curve, dense_eval
    from subpt.embedded.scenes import scene_classes

    opts = world_region_options(**run.config.dataset_options)
    seed = opts["scene_seed"]
    world = {k: opts[k] for k in ("n_classes", "class_seed", "partition_seed", "held_out")}
    final = dense_eval(seed, REPORT_SCENES, run=run.path, device=device, progress=False, keep=SHOWN_SCENES)
    zero = dense_eval(
        seed,
        REPORT_SCENES,
        world=world,
        model=run.config.model,
        pretrained=run.config.pretrained,
        device=device,
        progress=False,
    )
    curve = dense_curve(run.path, seed, REPORT_SCENES)
    classes = scene_classes(**world)
    scenes = H.figure_html(
        to_png(scenes_figure(final["examples"], list(classes.names), classes.seen)),
        f"scenes of {run.name}",
        f"Evaluation scenes 1-{SHOWN_SCENES} of seed {seed}: truth, boxes kept with score >= 0.5, painted masks, "
        f"with the context of epoch {final['epoch']} and its learned background (seen classes green, unseen orange).",
        "dense-scenes",
    )
    curves = H.figure_html(
        to_png(curve_figure([curve], {k: zero[k] for k, _ in KEYS}, KEYS)),
        f"dense curve of {run.name}",
        f"AP50 (box crops) and mIoU (masked crops) on {REPORT_SCENES} evaluation scenes of seed {seed} with the "
        f"context after every saved epoch (this run trained on {opts['regions']} crops); dashed: zero-shot, the "
        "template with the threshold rule.",
        "dense-curve",
    )
    header = ["", "AP50 seen", "AP50 unseen", "AP50 HM", "mIoU seen", "mIoU unseen", "hIoU"]
    keys = ("ap50_seen", "ap50_unseen", "ap50_hm", "miou_seen", "miou_unseen", "hiou")
    rows = [
        [label, *(f"{r[k]:.1f}" for k in keys)]
        for label, r in (("zero-shot", zero), (f"epoch {final['epoch']}", final))
    ]
    return "\n".join(
        [f"<h3>{H.esc(run.name)}</h3>", H.table_html(header, rows, set(range(1, 7))), scenes, curves]
    )
