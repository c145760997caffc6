"""Pieces shared by the real dense readers (COCO, PASCAL VOC): a lazy indexed sequence, image reading, mask
extents, and the label-free proposals used on photographs when no proposal file is given."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, TypeVar, overload

import numpy as np
from PIL import Image

from subpt.dense.proposals import Proposals
from subpt.dense.settings import ProposalParams
from subpt.errors import SubptError

T = TypeVar("T")

# Label-free proposals on photographs (docs/dense-real.md; `python benchmarks/photo_proposals.py`):
# - the border-colour prior is a property of the embedded world (one background colour per scene): off;
# - felzenszwalb's scale 300 instead of 100: at 100 a 512 x 512 photograph has about 1000 segments, so the cap
#   (segments first, then merges) would keep only raw segments and none of the merged, object-sized regions;
# - cap 1000: above the uncapped count at scale 300 on all three photographs (125 to 538).
PHOTO_PROPOSALS = ProposalParams(scale=300.0, max_border_share=1.0, max_proposals=1000)


class LazySequence(Sequence[T], Generic[T]):
    """`n` items made on demand by `make(i)`; the last `keep` items made are kept (a real split does not fit in
    memory, and one pass over a split asks for the same item a few times in a row)."""

    def __init__(self, n: int, make: Callable[[int], T], keep: int = 2) -> None:
        self._n = int(n)
        self._make = make
        self._keep = keep
        self._recent: OrderedDict[int, T] = OrderedDict()

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> T: ...

    @overload
    def __getitem__(self, i: slice) -> list[T]: ...

    def __getitem__(self, i: int | slice) -> T | list[T]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n))]
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
            raise TypeError(f"indices must be integers, got {type(i).__name__}")
        j = int(i) + self._n if i < 0 else int(i)
        if not 0 <= j < self._n:
            raise IndexError(f"index {i} out of range for {self._n} items")
        if j in self._recent:
            self._recent.move_to_end(j)
            return self._recent[j]
        item = self._make(j)
        self._recent[j] = item
        while len(self._recent) > self._keep:
            self._recent.popitem(last=False)
        return item


def read_rgb(path: Path, fix: str) -> np.ndarray:
    """(H, W, 3) uint8 pixels of an image file; a missing or undecodable file is a SubptError naming it."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise SubptError(f"image {path} does not exist; {fix}") from None
    except Exception as e:  # PIL raises many types for a damaged file
        raise SubptError(f"image {path} does not decode ({type(e).__name__}: {e}); {fix}") from None


def read_index_png(path: Path, what: str, fix: str) -> np.ndarray:
    """(H, W) integer values of a palette / grayscale label PNG (the palette index, not the colour)."""
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L", "I", "I;16"):
                raise SubptError(
                    f"{what} {path} is a {im.mode} image; it must be a palette (P) or grayscale label PNG whose "
                    f"values are the labels; {fix}"
                )
            return np.asarray(im).astype(np.int64)
    except FileNotFoundError:
        raise SubptError(f"{what} {path} does not exist; {fix}") from None
    except SubptError:
        raise
    except Exception as e:
        raise SubptError(f"{what} {path} does not decode ({type(e).__name__}: {e}); {fix}") from None


def mask_extent(mask: np.ndarray) -> tuple[float, float, float, float]:
    """[x0, y0, x1, y1) pixel edges of a non-empty mask."""
    ys, xs = np.nonzero(mask)
    return float(xs.min()), float(ys.min()), float(xs.max()) + 1.0, float(ys.max()) + 1.0


def proposals_from_masks(masks: np.ndarray, height: int, width: int) -> Proposals:
    """Proposals whose boxes are the extents of the given (m, H, W) masks (empty masks dropped)."""
    masks = np.asarray(masks, dtype=bool).reshape(-1, height, width)
    masks = masks[masks.reshape(len(masks), -1).any(axis=1)]
    boxes = np.array([mask_extent(m) for m in masks], dtype=np.float32).reshape(-1, 4)
    return Proposals(boxes, masks)


def label_free_proposals(
    n: int, image: Callable[[int], np.ndarray], params: ProposalParams = PHOTO_PROPOSALS
) -> LazySequence[Proposals]:
    """`propose()` on image `image(i)` for i < n, made on demand: the label-free generator, photograph settings."""
    from subpt.dense.proposals import propose

    params.validate()
    return LazySequence(n, lambda i: propose(image(i), params))


def file_fingerprint(path: Path) -> dict:
    """Path, size and modification time of a file (for cache keys: a changed file is a different source)."""
    st = Path(path).stat()
    return {"path": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def check_reader_options(max_images: object, max_proposals: object) -> None:
    """Raise a one-line SubptError unless max_images is a positive integer or None and max_proposals a positive
    integer (the options every real dense reader takes)."""
    def positive(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1

    if max_images is not None and not positive(max_images):
        raise SubptError(f"max_images must be a positive integer or None, got {max_images!r}")
    if not positive(max_proposals):
        raise SubptError(f"max_proposals must be a positive integer, got {max_proposals!r}")
