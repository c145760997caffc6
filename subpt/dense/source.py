"""One dense benchmark split as the dense pipeline reads it: its class set, its scenes and, for real data, the
proposals read from a file.

The embedded world's scenes (`subpt.embedded.scenes`) and the real readers (COCO-format detection, PASCAL VOC
segmentation) both produce a `DenseSource`, so proposal labelling, region training and evaluation never ask where
the scenes came from. `scenes` may be lazy (a real split holds too many images for memory): anything with
`len()` and integer indexing that returns a `Scene`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the command layer imports IGNORE, not the proposal libraries
    from subpt.dense.proposals import Proposals
    from subpt.embedded.scenes import Scene, SceneClasses

# Value of `Scene.instances` on pixels that carry no ground truth (PASCAL VOC's 255 "void" border, COCO crowd
# regions, unseen-class pixels of a training image): `Scene.semantic` shows them as BACKGROUND, so evaluation
# and training skip them by `scene.instances == IGNORE`. The embedded world has none.
IGNORE = -2


@dataclass
class DenseSource:
    """Scenes of one split with their class set (names, seen and unseen labels) and optional file proposals.

    `proposals[i]` belongs to `scenes[i]`; None means the label-free generator (`subpt.dense.proposals.propose`)
    makes them from the pixels. `key` identifies the split for feature caches (dataset, root, split, options).
    """

    name: str
    classes: SceneClasses
    scenes: Sequence[Scene]
    proposals: Sequence[Proposals] | None
    key: dict

    def __len__(self) -> int:
        return len(self.scenes)
