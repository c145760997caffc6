"""The procedural image-caption world: shapes with colours, patterns, sizes and backgrounds.

Every image is a deterministic function of its recipe (attributes, position jitter and a noise seed), so
datasets are lists of recipes and render identically on every machine. Images are 32x32 RGB uint8.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IMAGE_SIZE = 32

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 70, 230),
    "yellow": (240, 220, 30),
    "purple": (150, 50, 190),
    "orange": (250, 140, 20),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross", "ring", "star", "heart")
PATTERNS: tuple[str, ...] = ("plain", "striped", "dotted")
SIZES: dict[str, float] = {"small": 7.0, "large": 11.0}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "gray": (128, 128, 128),
    "sand": (215, 190, 140),
    "teal": (20, 120, 120),
    "pink": (245, 165, 200),
    "brown": (105, 65, 35),
    "navy": (25, 25, 85),
}
COLOR_NAMES = tuple(COLORS)
SIZE_NAMES = tuple(SIZES)
BACKGROUND_NAMES = tuple(BACKGROUNDS)
NOISE_STD = 12.0  # pixel noise of downstream images by default, in uint8 units
# Pretraining images draw their pixel noise from this range, as web images vary in quality: downstream tasks
# at any noise inside it are in the pretraining distribution, not a domain shift a prompt could learn to undo.
PRETRAIN_NOISE = (4.0, 28.0)

# Named object kinds. A kind has a name of its own, as real class names are words of their own ("tiger" is not
# "striped" + "cat" to a text encoder that has to learn it), and, like a real category, it is a distribution over
# looks rather than one look: its main colour, shape and pattern most of the time, a second colour or shape (its
# own) or another pattern otherwise, so kinds overlap and 16 shots of a kind are a chance sample of its looks.
# The names are single tokens of CLIP's BPE vocabulary and share no word with the attribute vocabulary.
# Pretraining captions use a kind's name with a probability of its own (a long tail: a few names are common,
# most are rare) and otherwise describe the attributes, so zero-shot quality varies from kind to kind.
OBJECT_WORDS: tuple[str, ...] = tuple("""
apple tiger violin lemon eagle anchor bottle candle castle cherry cloud coconut crown dolphin dragon drum
falcon feather flute garlic ginger grape guitar hammer helmet honey jacket kettle kite ladder lantern leaf lizard
mango maple melon mirror monkey moose mushroom needle onion orchid otter owl panda parrot peach peanut pear pepper
piano pigeon pillow pine pizza plum potato pumpkin rabbit radish raven robin rocket rose saddle salmon shark sheep
shovel skunk snail spider spoon squid stone sugar swan sword table teapot tomato tulip turtle umbrella walnut whale
wheel willow wolf zebra badger beaver bison camel cobra crab crane deer donkey duck frog gecko goat goose
hawk heron hippo horse jaguar koala lion llama lynx mole moth mouse mule newt octopus oyster pelican penguin
puma quail rhino seal shrimp sloth snake sparrow stork toad trout tuna viper weasel yak
acorn almond bamboo basil berry cactus carrot celery clover corn daisy fern fig hazel iris ivy kale lily lime lotus
mint moss nut oak olive palm pea poppy rice sage tea thyme wheat yam arrow axe bell bench boat bowl brush
bucket button cable canoe chain chair clock coin comb cup desk dice door fan fence flag fork glove harp hat jar key
knife lamp lock map mask mug net pan pen pipe plate pot pump rake rope ruler sack sail saw scarf shelf
""".split())
# Parts of a kind beyond its body: a trim (an outline in a colour of its own, or none) and a spot (a small disc of
# a colour of its own on one side), so a kind is a bundle of many visual traits, as real objects are, and the
# joint space holds more than colour, shape and pattern.
SPOT_SIDES: tuple[str, ...] = ("top", "bottom", "left", "right")
PART_SHOWN = 0.9  # probability that an instance shows its kind's trim and spot
NAME_USE = (0.005, 0.3)  # range of the per-kind probability that a pretraining caption uses its name
MAIN_LOOK = {"color": 0.9, "shape": 0.95, "pattern": 0.9}  # probability that a kind shows its main attribute
_OBJECT_SEED = 20221104


@dataclass(frozen=True)
class ObjectKind:
    """A named object kind: main and second colour and shape, main pattern, and how often its name is used."""

    index: int
    name: str
    color: int
    shape: int
    pattern: int
    color2: int
    shape2: int
    name_use: float
    trim: int = -1  # colour index of the kind's outline, -1 for none
    spot: int = -1  # colour index of the kind's spot
    spot_side: int = 0  # index into SPOT_SIDES

    def sample(self, rng: np.random.Generator, main_color: float | None = None) -> tuple[int, int, int]:
        """(colour, shape, pattern) of one instance of this kind; `main_color` overrides how often it shows its
        main colour (a data set's own sub-population of the kind)."""
        u = rng.random(3)
        color = self.color if u[0] < (MAIN_LOOK["color"] if main_color is None else main_color) else self.color2
        shape = self.shape if u[1] < MAIN_LOOK["shape"] else self.shape2
        pattern = self.pattern if u[2] < MAIN_LOOK["pattern"] else int(rng.integers(len(PATTERNS)))
        return color, shape, pattern

    def sample_parts(self, rng: np.random.Generator) -> tuple[int, int, int]:
        """(trim, spot, spot side) of one instance: each part shown with probability PART_SHOWN, else absent."""
        u = rng.random(2)
        return (self.trim if u[0] < PART_SHOWN else -1, self.spot if u[1] < PART_SHOWN else -1, self.spot_side)


def _object_kinds() -> tuple[ObjectKind, ...]:
    rng = np.random.default_rng(_OBJECT_SEED)
    mains = [(c, s, p) for c in range(len(COLORS)) for s in range(len(SHAPES)) for p in range(len(PATTERNS))]
    words = [OBJECT_WORDS[i] for i in rng.permutation(len(OBJECT_WORDS))[: len(mains)]]
    use = np.exp(rng.uniform(np.log(NAME_USE[0]), np.log(NAME_USE[1]), size=len(mains)))
    n_col, n_shp = len(COLORS), len(SHAPES)
    part_rng = np.random.default_rng(_OBJECT_SEED + 1)
    kinds = []
    for i, (c, s, p) in enumerate(mains):
        c2 = (c + 1 + int(rng.integers(n_col - 1))) % n_col
        s2 = (s + 1 + int(rng.integers(n_shp - 1))) % n_shp
        trim, spot, side = (int(v) for v in part_rng.integers((n_col + 1, n_col, len(SPOT_SIDES))))
        kinds.append(ObjectKind(i, words[i], c, s, p, c2, s2, float(use[i]), trim - 1, spot, side))
    return tuple(kinds)


OBJECT_KINDS: tuple[ObjectKind, ...] = _object_kinds()


def held_out_compositions() -> frozenset[tuple[int, int]]:
    """The 8 (colour, shape) index pairs never shown in pretraining: one per colour and per shape."""
    return frozenset((c, (3 * c + 1) % len(SHAPES)) for c in range(len(COLORS)))


@dataclass(frozen=True)
class Recipe:
    """Everything that determines one image."""

    color: int
    shape: int
    pattern: int
    size: int
    background: int
    dx: int = 0
    dy: int = 0
    noise_seed: int = 0
    mark: int = -1  # colour index of a 4x4 corner mark, -1 for none
    noise: float = NOISE_STD  # std of the Gaussian pixel noise, in uint8 units
    kind: int = -1  # index into OBJECT_KINDS of the named kind this image shows, -1 for none
    trim: int = -1  # colour index of the object's outline, -1 for none
    spot: int = -1  # colour index of a small disc beside the object, -1 for none
    spot_side: int = 0  # index into SPOT_SIDES

    def describe(self) -> dict[str, str]:
        """Attribute names of this recipe ("" for an absent part)."""
        return {
            "trim": COLOR_NAMES[self.trim] if self.trim >= 0 else "",
            "spot": f"a {COLOR_NAMES[self.spot]} spot on the {SPOT_SIDES[self.spot_side]}" if self.spot >= 0 else "",
            "color": COLOR_NAMES[self.color],
            "shape": SHAPES[self.shape],
            "pattern": PATTERNS[self.pattern],
            "size": SIZE_NAMES[self.size],
            "background": BACKGROUND_NAMES[self.background],
        }


def _shape_masks(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Boolean masks (n_shapes, ...) of every shape at unit radius on normalised coordinates x, y."""
    r = np.sqrt(x * x + y * y)
    theta = np.arctan2(y, x)
    heart_x, heart_y = x * 1.1, -(y * 1.1) + 0.25
    return np.stack(
        [
            r <= 1.0,  # circle
            np.maximum(np.abs(x), np.abs(y)) <= 0.8,  # square
            (y <= 0.75) & (2.0 * np.abs(x) <= (y + 0.95)),  # triangle
            np.abs(x) + np.abs(y) <= 1.0,  # diamond
            ((np.abs(x) <= 0.3) & (np.abs(y) <= 1.0)) | ((np.abs(y) <= 0.3) & (np.abs(x) <= 1.0)),  # cross
            (r <= 1.0) & (r >= 0.55),  # ring
            r <= 0.5 + 0.5 * (0.5 + 0.5 * np.cos(5 * theta + np.pi / 2)),  # star
            (heart_x**2 + heart_y**2 - 1) ** 3 - heart_x**2 * heart_y**3 <= 0,  # heart
        ]
    )


def render(recipes: list[Recipe], noise_rng: np.random.Generator | None = None) -> np.ndarray:
    """Render recipes to an (n, 32, 32, 3) uint8 array; identical output for identical recipes.

    Pixel noise comes from each recipe's `noise_seed`, or, when `noise_rng` is given (fast bulk
    rendering for pretraining), from that generator for the whole batch.
    """
    n = len(recipes)
    if n == 0:
        return np.empty((0, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    f = np.array(
        [
            (r.color, r.shape, r.pattern, r.size, r.background, r.dx, r.dy, r.mark, r.trim, r.spot, r.spot_side)
            for r in recipes
        ],
        dtype=np.int64,
    )
    color, shape, pattern, size, background, dx, dy, mark, trim, spot, side = f.T
    ys, xs = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float64)
    radius = np.array(list(SIZES.values()))[size][:, None, None]
    centre = (IMAGE_SIZE - 1) / 2
    x = (xs[None] - centre - dx[:, None, None]) / radius
    y = (ys[None] - centre - dy[:, None, None]) / radius
    cols = np.array(list(COLORS.values()), dtype=np.float64)
    bgs = np.array(list(BACKGROUNDS.values()), dtype=np.float64)
    masks = _shape_masks(x, y)  # (n_shapes, n, H, W)
    mask = masks[shape, np.arange(n)]
    stripes = (((xs + ys) // 3) % 2 == 1)[None]
    dots = (((xs % 4) < 2) & ((ys % 4) < 2))[None]
    dark = np.where(pattern[:, None, None] == 1, stripes, np.where(pattern[:, None, None] == 2, dots, False))
    shade = np.where(dark, 0.45, 1.0)[..., None] * cols[color][:, None, None, :]
    img = np.where(mask[..., None], shade, bgs[background][:, None, None, :])
    has_trim = trim >= 0
    if has_trim.any():  # an outline: the shape grown by a third, outside the shape itself
        outer = _shape_masks(x / 1.3, y / 1.3)[shape, np.arange(n)] & ~mask & has_trim[:, None, None]
        img = np.where(outer[..., None], cols[np.maximum(trim, 0)][:, None, None, :], img)
    has_spot = spot >= 0
    if has_spot.any():  # a small disc just beyond the shape on one side
        ox = np.array([0.0, 0.0, -1.0, 1.0])[side][:, None, None] * 1.35
        oy = np.array([-1.0, 1.0, 0.0, 0.0])[side][:, None, None] * 1.35
        disc = ((x - ox) ** 2 + (y - oy) ** 2) * radius**2 <= 2.6**2
        disc &= has_spot[:, None, None]
        img = np.where(disc[..., None], cols[np.maximum(spot, 0)][:, None, None, :], img)
    has_mark = mark >= 0
    if has_mark.any():
        img[has_mark, 1:5, 1:5] = cols[mark[has_mark]][:, None, None, :]
    shape_hw = (IMAGE_SIZE, IMAGE_SIZE, 3)
    std = np.array([r.noise for r in recipes], dtype=np.float64)[:, None, None, None]
    if noise_rng is not None:
        noise = (noise_rng.normal(0.0, 1.0, size=(n, *shape_hw)) * std).astype(np.float32)
    else:
        noise = np.stack([np.random.default_rng(r.noise_seed).normal(0.0, 1.0, size=shape_hw) for r in recipes]) * std
    return np.clip(np.rint(img + noise), 0, 255).astype(np.uint8)


def random_recipe(
    rng: np.random.Generator,
    color: int | None = None,
    shape: int | None = None,
    background: int | None = None,
    mark: int = -1,
    noise: float = NOISE_STD,
    pattern: int | None = None,
    kind: int = -1,
    parts: tuple[int, int, int] = (-1, -1, 0),
) -> Recipe:
    """A recipe with the given attributes fixed and the others drawn from `rng` (the same draws either way)."""
    size = int(rng.integers(len(SIZES)))
    max_shift = 4 if size == 1 else 7
    color = int(rng.integers(len(COLORS))) if color is None else color
    shape = int(rng.integers(len(SHAPES))) if shape is None else shape
    drawn_pattern = int(rng.integers(len(PATTERNS)))
    return Recipe(
        color=color,
        shape=shape,
        pattern=drawn_pattern if pattern is None else pattern,
        size=size,
        background=int(rng.integers(len(BACKGROUNDS))) if background is None else background,
        dx=int(rng.integers(-max_shift, max_shift + 1)),
        dy=int(rng.integers(-max_shift, max_shift + 1)),
        noise_seed=int(rng.integers(2**31 - 1)),
        mark=mark,
        noise=noise,
        kind=kind,
        trim=parts[0],
        spot=parts[1],
        spot_side=parts[2],
    )


CAPTION_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a {}.",
    "an image of a {}.",
    "a picture of a {}.",
    "a drawing of a {}.",
    "a rendering of a {}.",
    "there is a {}.",
    "a small image of a {}.",
)


def caption(recipe: Recipe, rng: np.random.Generator) -> str:
    """A caption of the recipe: its object's name (with that object's probability) or its attributes, dropping
    some at random; about half name the background."""
    a = recipe.describe()
    if recipe.kind >= 0 and rng.random() < OBJECT_KINDS[recipe.kind].name_use:
        words = [a[k] for k, p in (("size", 0.3), ("color", 0.3), ("pattern", 0.2)) if rng.random() < p]
        words.append(OBJECT_KINDS[recipe.kind].name)
        text = CAPTION_TEMPLATES[int(rng.integers(len(CAPTION_TEMPLATES)))].format(" ".join(words))
        if rng.random() < 0.5:
            text = text[:-1] + f" on a {a['background']} background."
        return text
    words = []
    if rng.random() < 0.5:
        words.append(a["size"])
    if rng.random() < 0.85:
        words.append(a["color"])
    if rng.random() < 0.5 and a["pattern"] != "plain":
        words.append(a["pattern"])
    words.append(a["shape"] if rng.random() < 0.9 else "shape")
    text = CAPTION_TEMPLATES[int(rng.integers(len(CAPTION_TEMPLATES)))].format(" ".join(words))
    parts = [f"a {a['trim']} trim" if a["trim"] and rng.random() < 0.6 else "", a["spot"] if rng.random() < 0.6 else ""]
    parts = [p for p in parts if p]
    if parts:
        text = text[:-1] + " with " + " and ".join(parts) + "."
    if rng.random() < 0.5:
        text = text[:-1] + f" on a {a['background']} background."
    return text
