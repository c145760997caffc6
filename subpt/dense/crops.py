"""How a proposal becomes an image for the frozen image tower: a square crop around its box with a little context,
padded with the scene's border colour, and, for masks, every pixel outside the mask filled. Light (numpy and PIL
only), so dataset modules can crop regions without importing the evaluation."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

from subpt.dense.settings import CropSettings

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)


def border_colour(image: np.ndarray) -> tuple[int, int, int]:
    """Per-channel median of the image's border pixels: a label-free estimate of the scene's background."""
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    return tuple(int(v) for v in np.median(border, axis=0))  # type: ignore[return-value]


def square_crop(
    image: np.ndarray,
    box: Sequence[float],
    context: float,
    fill: tuple[int, int, int],
    mask: np.ndarray | None = None,
) -> Image.Image:
    """The square of side context x the box's longer side around the box centre, padded with `fill` outside the
    image; with `mask`, pixels outside the mask are `fill` too."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(1, int(math.ceil(context * max(x1 - x0, y1 - y0))))
    left = int(math.floor((x0 + x1) / 2 - side / 2))
    top = int(math.floor((y0 + y1) / 2 - side / 2))
    out = np.empty((side, side, 3), dtype=np.uint8)
    out[:] = fill
    h, w = image.shape[:2]
    sx0, sy0, sx1, sy1 = max(left, 0), max(top, 0), min(left + side, w), min(top + side, h)
    if sx1 > sx0 and sy1 > sy0:
        patch = image[sy0:sy1, sx0:sx1]
        if mask is not None:
            patch = np.where(mask[sy0:sy1, sx0:sx1, None], patch, np.array(fill, dtype=np.uint8))
        out[sy0 - top : sy1 - top, sx0 - left : sx1 - left] = patch
    return Image.fromarray(out)


def region_crop(
    image: np.ndarray,
    box: Sequence[float],
    mask: np.ndarray | None,
    crops: CropSettings,
    mean: tuple[int, int, int] = tuple(int(round(255 * m)) for m in OPENAI_MEAN),  # type: ignore[assignment]
) -> Image.Image:
    """A proposal as the tower sees it: its box crop (mask None), padded outside the image with the border colour
    (the scene's background), or its masked crop, every pixel outside `mask` set to the fill of `crops`."""
    pad = border_colour(image)
    if mask is None:
        return square_crop(image, box, crops.context, pad)
    return square_crop(image, box, crops.context, mean if crops.fill == "mean" else pad, mask)
