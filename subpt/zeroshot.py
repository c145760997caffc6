"""Zero-shot CLIP on a task's base and novel test classes, with one template or an ensemble."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from subpt.backbone import load_backbone
from subpt.config import TrainConfig
from subpt.errors import SubptError
from subpt.evaluate import zero_shot_metrics
from subpt.nfl import teacher_templates
from subpt.splits import prepare_data


def run_zero_shot(
    dataset: str,
    root: str | None,
    model: str,
    pretrained: str,
    templates: Sequence[str] | None,
    ensemble: bool,
    seed: int = 1,
    device: str = "cpu",
    dataset_options: dict | None = None,
    progress: bool = True,
) -> dict:
    """Zero-shot Base/Novel/HM; templates given, the dataset's ensemble, or the dataset's own template."""
    for t in templates or []:
        if "{}" not in t:
            raise SubptError(f"--template {t!r} has no '{{}}' where the class name goes")
    cfg = TrainConfig(dataset=dataset, root=root, model=model, pretrained=pretrained, seed=seed, shots=1,
                      device=device, dataset_options=dict(dataset_options or {}))
    backbone = load_backbone(model, pretrained, device, seed=seed)
    splits = prepare_data(cfg, backbone, progress=progress, augment=False)
    if templates:
        chosen = list(templates)
    elif ensemble:
        chosen = list(splits.task.templates) or teacher_templates(splits.task)
    else:
        chosen = [splits.task.template]
    result = zero_shot_metrics(backbone, splits, chosen)
    return {"dataset": dataset, "model": model, "pretrained": pretrained, **result}


def print_zero_shot(result: dict) -> None:
    """A one-row rich table of zero-shot accuracy."""
    n = len(result["templates"])
    table = Table(title=f"zero-shot {result['model']} on {result['dataset']} ({n} template{'s' if n > 1 else ''})")
    for col in ("Base", "Novel", "HM"):
        table.add_column(col, justify="right")
    table.add_row(*(f"{result[k]:.2f}" for k in ("base_acc", "novel_acc", "hm")))
    Console().print(table)
