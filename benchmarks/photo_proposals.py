"""Label-free proposals on photographs: segments and proposals per felzenszwalb scale, and the time per image with
the photograph settings (`subpt.dense.realdata.PHOTO_PROPOSALS`), on scikit-image's bundled photographs.

    python benchmarks/photo_proposals.py

docs/dense-real.md (Proposals) quotes its output; the photographs have no labels, so it says nothing about how
well the proposals cover objects.
"""

from __future__ import annotations

import time
from dataclasses import replace

from skimage import data
from skimage.segmentation import felzenszwalb

from subpt.dense.proposals import propose
from subpt.dense.realdata import PHOTO_PROPOSALS

PHOTOS = ("astronaut", "coffee", "chelsea")


def main() -> None:
    """Print, per photograph, the uncapped counts at scales 100 / 300 / 1000, then the photo settings' timing."""
    for name in PHOTOS:
        img = getattr(data, name)()
        for scale in (100.0, 300.0, 1000.0):
            p = replace(PHOTO_PROPOSALS, scale=scale, max_proposals=100_000)
            seg = felzenszwalb(img, scale=scale, sigma=p.sigma, min_size=p.min_size, channel_axis=-1)
            print(
                f"{name} {img.shape[1]}x{img.shape[0]} scale {scale:g}: {seg.max() + 1} segments, "
                f"{len(propose(img, p))} proposals uncapped"
            )
    for name in PHOTOS:
        img = getattr(data, name)()
        start = time.time()
        n = len(propose(img, PHOTO_PROPOSALS))
        print(f"{name}, photo settings: {n} proposals in {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
