"""The types every dataset produces: labelled items grouped in splits, with class names and a template."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, replace

from PIL import Image

from subpt.errors import SubptError


@dataclass(frozen=True)
class Item:
    """One labelled image: `source` is a file path (real data) or a hashable recipe (embedded world)."""

    source: Hashable
    label: int
    classname: str = ""


@dataclass
class TaskData:
    """A dataset ready for prompt learning: class names, its prompt template and labelled splits.

    `load_image(item)` returns an RGB PIL image for any item of the splits.
    `test_splits` holds extra named test sets (domain shift variants, a cue-flipped test set, ...).
    `templates` is the dataset's zero-shot ensemble; `teacher_templates` overrides NFL's teacher ensemble
    (the embedded world has its own caption templates; real datasets use CLIP's 80 ImageNet templates).
    """

    name: str
    classnames: list[str]
    template: str
    train: list[Item]
    val: list[Item]
    test: list[Item]
    load_image: Callable[[Item], Image.Image]
    test_splits: dict[str, list[Item]] = field(default_factory=dict)
    templates: list[str] = field(default_factory=list)  # the dataset's zero-shot template ensemble
    teacher_templates: list[str] = field(default_factory=list)  # NFL's ensemble; empty: CLIP's 80 ImageNet ones
    # (base labels, novel labels) when the task fixes its own partition (region tasks: seen classes + background
    # vs unseen classes + background); None: CoOp's rule on the sorted labels
    partition: tuple[tuple[int, ...], tuple[int, ...]] | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes of this task."""
        return len(self.classnames)

    def split(self, name: str) -> list[Item]:
        """Items of the split `name` (train, val, test, or an extra test split)."""
        if name in ("train", "val", "test"):
            return getattr(self, name)
        if name in self.test_splits:
            return self.test_splits[name]
        known = ["train", "val", "test", *self.test_splits]
        raise SubptError(f"dataset {self.name!r} has no split {name!r}; known splits: {', '.join(known)}")


def base_novel_labels(num_classes: int) -> tuple[list[int], list[int]]:
    """CoOp's rule: sort the labels; the first ceil(n/2) are base, the rest novel."""
    labels = list(range(num_classes))
    m = math.ceil(num_classes / 2)
    return labels[:m], labels[m:]


def task_partition(task: TaskData) -> tuple[list[int], list[int]]:
    """(base labels, novel labels) of a task: its own partition, else CoOp's rule."""
    if task.partition is not None:
        return list(task.partition[0]), list(task.partition[1])
    return base_novel_labels(task.num_classes)


def novel_only_names(task: TaskData) -> list[str]:
    """Names of the novel labels that are not also base labels (a region task's background is both)."""
    base, novel = task_partition(task)
    return [task.classnames[i] for i in novel if i not in set(base)]


def subset_classes(items: Sequence[Item], labels: Sequence[int]) -> list[Item]:
    """Keep items whose label is in `labels` and relabel them 0..len(labels)-1 in that order."""
    remap = {old: new for new, old in enumerate(labels)}
    return [replace(it, label=remap[it.label]) for it in items if it.label in remap]


def subsample_task(task: TaskData, which: str) -> TaskData:
    """The base or novel half of a task (CoOp's rule), every split relabelled from 0; 'all' is identity."""
    if which == "all":
        return task
    base, novel = task_partition(task)
    if which not in ("base", "novel"):
        raise SubptError(f"subsample must be 'all', 'base' or 'novel', got {which!r}")
    labels = base if which == "base" else novel
    return replace(
        task,
        classnames=[task.classnames[i] for i in labels],
        train=subset_classes(task.train, labels),
        val=subset_classes(task.val, labels),
        test=subset_classes(task.test, labels),
        test_splits={k: subset_classes(v, labels) for k, v in task.test_splits.items()},
        partition=None,
    )
