"""Dense zero-shot and transferred-prompt evaluation: detection (box AP50) and segmentation (mIoU) on seen and
unseen classes, with a frozen image tower classifying label-free proposals.

Pipeline for a set of scenes:
1. proposals from pixels alone (`subpt.dense.proposals.propose`);
2. every proposal encoded by the frozen image tower, twice: its box crop (a square of CONTEXT x the box's longer
   side around the box centre: a little context, as the classification images show their object with a margin),
   and its masked crop (the same square with every pixel outside the proposal's mask set to the fill colour);
   both through the tower's own preprocessing; features cached on disk (key: weights, transform, scenes,
   proposal parameters, crop settings);
3. each feature classified over all classes, seen and unseen together (the generalised setting), against text
   features of the class names: the hand-crafted template (zero-shot) or a trained run's learned context;
4. background rule: a score threshold. A proposal whose highest class probability is below `threshold` is
   background. Why not a "background" text embedding: the tiny CLIP never saw an image without an object nor a
   caption naming only the background, so no text was trained to match a background region (measured: such prompts
   separate background proposals worse than the highest class probability does, docs/dense.md); a confidence
   threshold assumes nothing about the text tower;
5. detection: each kept box proposal is one detection (its best class, that probability as score), per-class NMS
   at IoU NMS_IOU, at most MAX_DETECTIONS per scene; box AP50 by torchmetrics (pycocotools backend) per class,
   averaged over the seen and over the unseen classes present in the ground truth, and their harmonic mean;
6. segmentation: kept mask proposals paint their best class on their pixels in increasing score order, so the
   highest score wins each pixel; unassigned pixels are background. IoU per class by torchmetrics' JaccardIndex
   over the whole set; mIoU over the seen and over the unseen classes present in the ground truth (background
   excluded from both), and hIoU, their harmonic mean.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassJaccardIndex
from torchmetrics.detection import MeanAveragePrecision
from torchvision.ops import batched_nms
from tqdm.auto import tqdm

from gradflow.atomic import atomic_torch_save
from subpt.backbone import Backbone
from subpt.dense.crops import OPENAI_MEAN, border_colour, region_crop, square_crop  # noqa: F401
from subpt.dense.proposals import Proposals, propose
from subpt.dense.settings import THRESHOLD, CropSettings, ProposalParams
from subpt.dense.source import IGNORE
from subpt.embedded.scenes import BACKGROUND, Scene, SceneClasses
from subpt.errors import SubptError
from subpt.features import cache_dir, load_cached

NMS_IOU = 0.5
SCORE_FLOOR = 0.05  # learned background, detection: Fast R-CNN's (and Detectron's) test score threshold
MAX_DETECTIONS = 100
IGNORE_PIXEL = 255  # the target value of unlabelled pixels, torchmetrics' ignore_index
CACHE_VERSION = "dense-features/1"  # bump when scenes, proposals or crops change meaning


def harmonic(a: float, b: float) -> float:
    """2ab / (a + b); nan when either is nan, 0 when both are 0."""
    if math.isnan(a) or math.isnan(b):
        return float("nan")
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def tower_mean(backbone: Backbone) -> tuple[int, int, int]:
    """The image tower's normalisation mean as a uint8 colour (a masked crop's neutral fill)."""
    for t in getattr(backbone.preprocess, "transforms", []):
        if type(t).__name__ == "Normalize":
            return tuple(int(round(255 * float(m))) for m in t.mean)  # type: ignore[return-value]
    return tuple(int(round(255 * m)) for m in OPENAI_MEAN)  # type: ignore[return-value]


def region_key(backbone: Backbone, scenes_key: object, params: ProposalParams, crops: CropSettings) -> str:
    """Cache key of a scene set's region features: weights, transform, scenes, proposal and crop settings."""
    h = hashlib.sha256()
    for part in (
        CACHE_VERSION,
        backbone.model_name,
        backbone.weights_id,
        repr(backbone.preprocess),
        repr(scenes_key),
        repr(sorted(params.key().items())),
        repr(sorted(asdict(crops).items())),
    ):
        h.update(str(part).encode())
    return h.hexdigest()[:24]


@torch.no_grad()
def region_features(
    backbone: Backbone,
    scenes: Sequence[Scene],
    proposals: Sequence[Proposals],
    crops: CropSettings,
    key: str | None = None,
    batch_size: int = 512,
    progress: bool = True,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """L2-normalised (box-crop, masked-crop) features of every proposal, one (m_i, d) tensor per scene each;
    cached on disk under `key` when one is given."""
    crops.validate()
    path = cache_dir() / "dense" / f"regions-{key}.pt" if key else None
    counts = [len(p) for p in proposals]
    blob = load_cached(path, ("counts", "box", "mask")) if path is not None else None
    if blob is not None:
        if blob["counts"].tolist() == counts:
            return _split(blob["box"], counts), _split(blob["mask"], counts)
        path.unlink(missing_ok=True)  # stale: recompute
    mean = tower_mean(backbone)
    device = backbone.device
    feats: dict[str, list[torch.Tensor]] = {"box": [], "mask": []}
    pending: list[torch.Tensor] = []

    def flush() -> None:
        if not pending:
            return
        x = torch.stack(pending).to(device)
        f = F.normalize(backbone.model.encode_image(x).float(), dim=-1).cpu()
        feats["box"].append(f[0::2])  # pending holds pairs: box crop, then masked crop
        feats["mask"].append(f[1::2])
        pending.clear()

    bar = tqdm(
        list(zip(scenes, proposals)), desc="encoding proposals", disable=not progress or None, leave=False
    )
    for scene, props in bar:
        for box, mask in zip(props.boxes, props.masks):
            pending.append(backbone.preprocess(region_crop(scene.image, box, None, crops, mean)))
            pending.append(backbone.preprocess(region_crop(scene.image, box, mask, crops, mean)))
            if len(pending) >= batch_size:
                flush()
    flush()
    width = backbone.embed_dim
    box = torch.cat(feats["box"]) if feats["box"] else torch.empty(0, width)
    masked = torch.cat(feats["mask"]) if feats["mask"] else torch.empty(0, width)
    if path is not None:
        atomic_torch_save(
            {"box": box, "mask": masked, "counts": torch.tensor(counts, dtype=torch.long)}, path, mkdir=True
        )
    return _split(box, counts), _split(masked, counts)


def _split(x: torch.Tensor, counts: list[int]) -> list[torch.Tensor]:
    return list(torch.split(x, counts)) if counts else []


def class_probabilities(
    features: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Softmax over all classes of logit_scale * cosine(region feature, class text feature)."""
    logits = logit_scale.exp().float() * features.float() @ text.float().t().to(features.device)
    return logits.softmax(dim=-1)


def decide(
    probs: torch.Tensor, threshold: float, chance: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(labels, scores, kept) of each region: its best class and that probability, kept unless below threshold.

    With `chance`, each region's label is drawn uniformly from all classes instead (same scores and kept regions):
    the chance level of naming the same regions."""
    scores, labels = (
        probs.max(dim=-1) if probs.numel() else (probs.new_zeros(0), probs.new_zeros(0, dtype=torch.long))
    )
    if chance is not None:
        labels = torch.randint(probs.shape[-1], (probs.shape[0],), generator=chance).to(labels.device)
    return labels, scores, scores >= threshold


def decide_learned(probs: torch.Tensor, paint: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(labels, scores, kept) with a learned background class, the last column of `probs`: each region's best
    object class and its probability (the softmax includes the background). Detection (`paint` False) keeps every
    region scoring at least SCORE_FLOOR, as Fast R-CNN's test does, so the background lowers a region's rank rather
    than cutting it; segmentation (`paint` True) must decide, and keeps a region unless the background is its best
    class."""
    if not probs.numel():
        return probs.new_zeros(0, dtype=torch.long), probs.new_zeros(0), probs.new_zeros(0, dtype=torch.bool)
    scores, labels = probs[:, :-1].max(dim=-1)
    kept = probs.argmax(dim=-1) != probs.shape[-1] - 1 if paint else scores >= SCORE_FLOOR
    return labels, scores, kept


def detections(boxes: np.ndarray, labels: torch.Tensor, scores: torch.Tensor, kept: torch.Tensor) -> dict:
    """One scene's detections for torchmetrics: kept boxes after per-class NMS, at most MAX_DETECTIONS."""
    b = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)[kept.cpu()]
    s, lab = scores.cpu()[kept.cpu()].float(), labels.cpu()[kept.cpu()].long()
    keep = batched_nms(b, s, lab, NMS_IOU)[:MAX_DETECTIONS]
    return {"boxes": b[keep], "scores": s[keep], "labels": lab[keep]}


def paint(
    masks: np.ndarray, labels: torch.Tensor, scores: torch.Tensor, kept: torch.Tensor, background: int
) -> np.ndarray:
    """Per-pixel labels from kept mask proposals: the highest-scoring one covering a pixel names it; the rest is
    `background`."""
    h, w = masks.shape[1:] if masks.ndim == 3 else (0, 0)
    out = np.full((h, w), background, dtype=np.int64)
    idx = torch.nonzero(kept.cpu()).flatten()
    for i in idx[torch.argsort(scores.cpu()[idx], stable=True)].tolist():
        out[masks[i]] = int(labels[i])
    return out


def box_ap50(preds: list[dict], targets: list[dict], seen: Sequence[int], unseen: Sequence[int]) -> dict:
    """Box AP50 (percent) per class by torchmetrics (pycocotools), averaged over the seen and the unseen classes
    present in the targets, and their harmonic mean."""
    metric = MeanAveragePrecision(
        box_format="xyxy", iou_type="bbox", iou_thresholds=[0.5], class_metrics=True, backend="pycocotools"
    )
    metric.update(preds, targets)
    out = metric.compute()
    classes = out["classes"].reshape(-1).tolist()
    per_class = out["map_per_class"].reshape(-1).tolist()
    present = {int(c) for t in targets for c in t["labels"].tolist()}
    ap = {int(c): 100.0 * v for c, v in zip(classes, per_class) if int(c) in present}
    s, u = _mean([ap[c] for c in seen if c in ap]), _mean([ap[c] for c in unseen if c in ap])
    return {"ap50_seen": s, "ap50_unseen": u, "ap50_hm": harmonic(s, u), "ap50_per_class": ap}


def segmentation_iou(
    preds: list[np.ndarray],
    targets: list[np.ndarray],
    num_classes: int,
    seen: Sequence[int],
    unseen: Sequence[int],
) -> dict:
    """IoU (percent) per class by torchmetrics' JaccardIndex over all pixels of the set (label `num_classes` is
    background, IGNORE_PIXEL pixels are left out); mIoU over the seen and the unseen classes present in the
    targets, and hIoU."""
    metric = MulticlassJaccardIndex(num_classes=num_classes + 1, average="none", ignore_index=IGNORE_PIXEL)
    for p, t in zip(preds, targets):
        metric.update(torch.as_tensor(p).reshape(-1), torch.as_tensor(t).reshape(-1))
    iou = metric.compute().tolist()
    present = set(np.unique(np.concatenate([t.reshape(-1) for t in targets])).tolist()) if targets else set()
    present.discard(IGNORE_PIXEL)
    s = _mean([100.0 * iou[c] for c in seen if c in present])
    u = _mean([100.0 * iou[c] for c in unseen if c in present])
    return {
        "miou_seen": s,
        "miou_unseen": u,
        "hiou": harmonic(s, u),
        "iou_background": 100.0 * iou[num_classes] if num_classes in present else float("nan"),
    }


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def target_boxes(scene: Scene) -> dict:
    """A scene's ground truth for torchmetrics' detection metric."""
    return {
        "boxes": torch.as_tensor(scene.boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.as_tensor(scene.labels, dtype=torch.long),
    }


def target_pixels(scene: Scene, background: int) -> np.ndarray:
    """A scene's semantic map with background pixels labelled `background` and the pixels a real dataset leaves
    unlabelled (`subpt.dense.source.IGNORE`: VOC's void band, COCO crowds) IGNORE_PIXEL."""
    sem = scene.semantic
    out = np.where(sem == BACKGROUND, background, sem)
    return np.where(scene.instances == IGNORE, IGNORE_PIXEL, out)


def evaluate_scenes(
    backbone: Backbone,
    classes: SceneClasses,
    scenes: Sequence[Scene],
    text: torch.Tensor,
    scenes_key: object,
    params: ProposalParams | None = None,
    crops: CropSettings | None = None,
    threshold: float = THRESHOLD,
    chance_seed: int | None = None,
    progress: bool = True,
    use_cache: bool = True,
    proposer: Callable[[np.ndarray], Proposals] | None = None,
    oracle: bool = False,
    given: Sequence[Proposals] | None = None,
    learned_background: bool = False,
    keep: int = 0,
) -> dict:
    """AP50 and mIoU on the seen and unseen classes of `scenes` with class text features `text` (n_classes, d).

    `chance_seed` replaces every region's class by a uniform draw (the chance level, same regions and scores).
    `proposer` replaces the label-free proposals (it gets the image only); `oracle` uses each scene's ground-truth
    boxes and masks as proposals instead: a diagnostic upper bound that isolates naming from proposing. `given`
    are the scenes' proposals made beforehand (a source's file, or remembered generator output; `scenes_key`
    must then identify them). With `learned_background`, `text` has one more row, a learned
    background class (`decide_learned` instead of the threshold rule). `keep` returns the
    first `keep` scenes with their predictions under "examples" (for figures)."""
    params, crops = params or ProposalParams(), crops or CropSettings()
    params.validate()
    crops.validate()
    if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise SubptError(f"--threshold must lie in [0, 1], got {threshold}")
    if text.shape[0] != classes.num_classes + int(learned_background):
        raise SubptError(
            f"text features cover {text.shape[0]} classes but the scenes have {classes.num_classes}"
        )
    if oracle:
        proposals = [Proposals(s.boxes, s.masks) for s in scenes]
    elif given is not None:
        proposals = list(given)
    else:
        run_proposer = proposer or (lambda image: propose(image, params))
        proposals = [run_proposer(s.image) for s in scenes]
    key = None
    if use_cache and proposer is None:
        key = region_key(backbone, (scenes_key, "oracle" if oracle else "proposals"), params, crops)
    box_feats, mask_feats = region_features(backbone, scenes, proposals, crops, key=key, progress=progress)
    scale = backbone.model.logit_scale
    gen = torch.Generator().manual_seed(int(chance_seed)) if chance_seed is not None else None
    n = classes.num_classes
    preds, targets, pix_pred, pix_true = [], [], [], []

    def rule(probs: torch.Tensor, paint: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return decide_learned(probs, paint) if learned_background else decide(probs, threshold, gen)

    for scene, props, fb, fm in zip(scenes, proposals, box_feats, mask_feats):
        labels, scores, kept = rule(class_probabilities(fb, text, scale), False)
        preds.append(detections(props.boxes, labels, scores, kept))
        targets.append(target_boxes(scene))
        labels, scores, kept = rule(class_probabilities(fm, text, scale), True)
        pix_pred.append(paint(props.masks, labels, scores, kept, background=n))
        pix_true.append(target_pixels(scene, background=n))
    examples = [
        {
            "image": sc.image,
            "boxes": sc.boxes,
            "labels": sc.labels,
            "semantic": sc.semantic,
            "pred_boxes": p["boxes"][p["scores"] >= 0.5].numpy(),
            "pred_labels": p["labels"][p["scores"] >= 0.5].numpy(),
            "pred_semantic": np.where(pix == n, BACKGROUND, pix),
        }
        for sc, p, pix in list(zip(scenes, preds, pix_pred))[:keep]
    ]
    det = box_ap50(preds, targets, classes.seen, classes.unseen)
    seg = segmentation_iou(pix_pred, pix_true, n, classes.seen, classes.unseen)
    return {
        **det,
        **seg,
        "scenes": len(scenes),
        "objects": int(sum(len(s.labels) for s in scenes)),
        "proposals_per_scene": float(np.mean([len(p) for p in proposals])) if proposals else 0.0,
        "threshold": None if learned_background else threshold,
        "background": "learned class" if learned_background else "threshold",
        "proposals": "oracle" if oracle else "file" if given is not None else "label-free",
        "proposal_params": params.key(),
        "crops": asdict(crops),
        **({"examples": examples} if keep else {}),
    }
