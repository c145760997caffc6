"""What CoOp's 15 datasets look like on disk: folders, split files, prompt templates, class-name clean-ups.

Everything here follows CoOp's DATASETS.md and its dataset readers (github.com/KaiyangZhou/CoOp):
folder names under the data root, the image folder that split-file paths are relative to, the name of
the split file, the hand-written prompt template CoOp uses for zero-shot CLIP on that dataset, and the
class-name clean-ups CoOp applies (when it builds its split files, and `_` -> space before prompting).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

# CoOp's ensemble for zero-shot CLIP (trainers/imagenet_templates.py, IMAGENET_TEMPLATES_SELECT);
# ZeroshotCLIP2 adds the dataset's own template for every dataset but ImageNet.
ENSEMBLE_TEMPLATES: tuple[str, ...] = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)

SPLIT_FILE = "split_file"  # datasets read from a split_zhou_<Name>.json
FGVC = "fgvc"  # FGVCAircraft: variants.txt + images_variant_{train,val,test}.txt
IMAGENET = "imagenet"  # classnames.txt + images/{train,val}/<wnid>/
VARIANT = "variant"  # test-only ImageNet variants


def underscores_to_spaces(name: str) -> str:
    """CoOp's prompt learner turns every `_` of a class name into a space."""
    return name.replace("_", " ").strip()


# Caltech101 (datasets/caltech101.py): BACKGROUND_Google and Faces_easy are dropped, four folders renamed.
CALTECH101_IGNORED: tuple[str, ...] = ("BACKGROUND_Google", "Faces_easy")
CALTECH101_RENAMES: dict[str, str] = {
    "airplanes": "airplane",
    "Faces": "face",
    "Leopards": "leopard",
    "Motorbikes": "motorbike",
}
# EuroSAT (datasets/eurosat.py): folder names become descriptive land-cover names.
EUROSAT_RENAMES: dict[str, str] = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}
_YEAR = re.compile(r"(19|20)\d\d")


def clean_caltech101(raw: str) -> str:
    """Caltech101: CoOp's four renames (Faces -> face, ...), then `_` -> space."""
    return underscores_to_spaces(CALTECH101_RENAMES.get(raw, raw))


def clean_oxford_pets(raw: str) -> str:
    """OxfordPets: CoOp lower-cases the breed (Abyssinian -> abyssinian), then `_` -> space."""
    return underscores_to_spaces(raw.lower())


def clean_eurosat(raw: str) -> str:
    """EuroSAT: CoOp's descriptive names (AnnualCrop -> Annual Crop Land), then `_` -> space."""
    return underscores_to_spaces(EUROSAT_RENAMES.get(raw, raw))


def clean_ucf101(raw: str) -> str:
    """UCF101: CoOp splits the CamelCase action (ApplyEyeMakeup -> Apply_Eye_Makeup), then `_` -> space."""
    if "_" not in raw and " " not in raw:
        parts = re.findall(r"[A-Z][^A-Z]*", raw)
        if "".join(parts) == raw:
            raw = "_".join(parts)
    return underscores_to_spaces(raw)


def clean_sun397(raw: str) -> str:
    """SUN397: a raw category path /a/apartment_building/outdoor becomes 'outdoor apartment building'."""
    if "/" in raw:
        parts = [p for p in raw.strip("/").split("/") if p]
        raw = " ".join(reversed(parts[1:] if len(parts) > 1 and len(parts[0]) == 1 else parts))
    return underscores_to_spaces(raw)


def clean_stanford_cars(raw: str) -> str:
    """StanfordCars: CoOp moves the model year to the front ('Tesla Model S 2012' -> '2012 Tesla Model S')."""
    words = raw.split(" ")
    if len(words) > 1 and _YEAR.fullmatch(words[-1]) and not _YEAR.fullmatch(words[0]):
        words = [words[-1], *words[:-1]]
    return underscores_to_spaces(" ".join(words))


@dataclass(frozen=True)
class CoopSpec:
    """Where one CoOp dataset lives under the data root and how CoOp reads it."""

    name: str  # registry name
    title: str  # CoOp's dataset name
    folder: str  # folder under the data root
    image_dirs: tuple[str, ...]  # image folder(s) relative to `folder`; the first that exists is used
    kind: str  # SPLIT_FILE, FGVC, IMAGENET or VARIANT
    template: str  # CoOp's prompt template for this dataset
    get: str  # where to get the images
    split_file: str | None = None
    split_url: str | None = None  # where to get the split file
    extra: tuple[str, ...] = field(default_factory=tuple)  # further files CoOp's layout requires
    clean: Callable[[str], str] = underscores_to_spaces

    @property
    def templates(self) -> list[str]:
        """CoOp's zero-shot ensemble for this dataset (ZeroshotCLIP2): the 7 selected ImageNet templates,
        plus the dataset's own template for every dataset except ImageNet."""
        if self.name == "imagenet":
            return list(ENSEMBLE_TEMPLATES)
        return [*ENSEMBLE_TEMPLATES, self.template]


_DRIVE = "https://drive.google.com/file/d/{}/view?usp=sharing"

SPECS: dict[str, CoopSpec] = {
    s.name: s
    for s in [
        CoopSpec(
            name="imagenet",
            title="ImageNet",
            folder="imagenet",
            image_dirs=("images",),
            kind=IMAGENET,
            template="a photo of a {}.",
            get="https://image-net.org (ILSVRC2012 train and val; val sorted into <wnid>/ folders)",
            split_file="classnames.txt",
            split_url=_DRIVE.format("1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF"),
        ),
        CoopSpec(
            name="caltech101",
            title="Caltech101",
            folder="caltech-101",
            image_dirs=("101_ObjectCategories",),
            kind=SPLIT_FILE,
            template="a photo of a {}.",
            get="http://www.vision.caltech.edu/Image_Datasets/Caltech101/101_ObjectCategories.tar.gz",
            split_file="split_zhou_Caltech101.json",
            split_url=_DRIVE.format("1hyarUivQE36mY6jSomru6Fjd-JzwcCzN"),
            clean=clean_caltech101,
        ),
        CoopSpec(
            name="oxford_pets",
            title="OxfordPets",
            folder="oxford_pets",
            image_dirs=("images",),
            kind=SPLIT_FILE,
            template="a photo of a {}, a type of pet.",
            get="https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz (and annotations.tar.gz)",
            split_file="split_zhou_OxfordPets.json",
            split_url=_DRIVE.format("1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs"),
            clean=clean_oxford_pets,
        ),
        CoopSpec(
            name="stanford_cars",
            title="StanfordCars",
            folder="stanford_cars",
            image_dirs=("",),
            kind=SPLIT_FILE,
            template="a photo of a {}.",
            get="cars_train.tgz, cars_test.tgz, car_devkit.tgz and cars_test_annos_withlabels.mat "
            "from https://ai.stanford.edu/~jkrause/cars/car_dataset.html",
            split_file="split_zhou_StanfordCars.json",
            split_url=_DRIVE.format("1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT"),
            clean=clean_stanford_cars,
        ),
        CoopSpec(
            name="oxford_flowers",
            title="OxfordFlowers",
            folder="oxford_flowers",
            image_dirs=("jpg",),
            kind=SPLIT_FILE,
            template="a photo of a {}, a type of flower.",
            get="https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz (and imagelabels.mat)",
            split_file="split_zhou_OxfordFlowers.json",
            split_url=_DRIVE.format("1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT"),
        ),
        CoopSpec(
            name="food101",
            title="Food101",
            folder="food-101",
            image_dirs=("images",),
            kind=SPLIT_FILE,
            template="a photo of {}, a type of food.",
            get="https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/ (food-101.tar.gz)",
            split_file="split_zhou_Food101.json",
            split_url=_DRIVE.format("1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl"),
        ),
        CoopSpec(
            name="fgvc_aircraft",
            title="FGVCAircraft",
            folder="fgvc_aircraft",
            image_dirs=("images",),
            kind=FGVC,
            template="a photo of a {}, a type of aircraft.",
            get="https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz "
            "(keep only data/ and rename it to fgvc_aircraft/)",
            split_file="variants.txt",
            extra=("images_variant_train.txt", "images_variant_val.txt", "images_variant_test.txt"),
        ),
        CoopSpec(
            name="sun397",
            title="SUN397",
            folder="sun397",
            image_dirs=("SUN397",),
            kind=SPLIT_FILE,
            template="a photo of a {}.",
            get="http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz",
            split_file="split_zhou_SUN397.json",
            split_url=_DRIVE.format("1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq"),
            clean=clean_sun397,
        ),
        CoopSpec(
            name="dtd",
            title="DescribableTextures",
            folder="dtd",
            # CoOp reads dtd/images; extracting the archive inside an existing dtd/ gives dtd/dtd/images.
            image_dirs=("images", "dtd/images"),
            kind=SPLIT_FILE,
            template="{} texture.",
            get="https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",
            split_file="split_zhou_DescribableTextures.json",
            split_url=_DRIVE.format("1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x"),
        ),
        CoopSpec(
            name="eurosat",
            title="EuroSAT",
            folder="eurosat",
            image_dirs=("2750",),
            kind=SPLIT_FILE,
            template="a centered satellite photo of {}.",
            get="http://madm.dfki.de/files/sentinel/EuroSAT.zip (the RGB version, folder 2750/)",
            split_file="split_zhou_EuroSAT.json",
            split_url=_DRIVE.format("1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o"),
            clean=clean_eurosat,
        ),
        CoopSpec(
            name="ucf101",
            title="UCF101",
            folder="ucf101",
            image_dirs=("UCF-101-midframes",),
            kind=SPLIT_FILE,
            template="a photo of a person doing {}.",
            get="UCF-101-midframes.zip (CoOp's middle frames): "
            + _DRIVE.format("10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O"),
            split_file="split_zhou_UCF101.json",
            split_url=_DRIVE.format("1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y"),
            clean=clean_ucf101,
        ),
        CoopSpec(
            name="imagenet_v2",
            title="ImageNetV2",
            folder="imagenetv2",
            image_dirs=("imagenetv2-matched-frequency-format-val",),
            kind=VARIANT,
            template="a photo of a {}.",
            get="https://s3-us-west-2.amazonaws.com/imagenetv2public/imagenetv2-matched-frequency.tar.gz "
            "(see github.com/modestyachts/ImageNetV2)",
            split_file="classnames.txt",
        ),
        CoopSpec(
            name="imagenet_sketch",
            title="ImageNetSketch",
            folder="imagenet-sketch",
            image_dirs=("images",),
            kind=VARIANT,
            template="a photo of a {}.",
            get="https://github.com/HaohanWang/ImageNet-Sketch",
            split_file="classnames.txt",
        ),
        CoopSpec(
            name="imagenet_a",
            title="ImageNetA",
            folder="imagenet-adversarial",
            image_dirs=("imagenet-a",),
            kind=VARIANT,
            template="a photo of a {}.",
            get="https://github.com/hendrycks/natural-adv-examples (imagenet-a.tar)",
            split_file="classnames.txt",
        ),
        CoopSpec(
            name="imagenet_r",
            title="ImageNetR",
            folder="imagenet-rendition",
            image_dirs=("imagenet-r",),
            kind=VARIANT,
            template="a photo of a {}.",
            get="https://github.com/hendrycks/imagenet-r (imagenet-r.tar)",
            split_file="classnames.txt",
        ),
    ]
}

COOP_DATASETS: tuple[str, ...] = tuple(SPECS)
"""The 15 registry names, in CoOp's order: ImageNet, the 10 other few-shot datasets, the 4 variants."""


def get_spec(name: str) -> CoopSpec:
    """The spec of CoOp dataset `name`; an unknown name is a SubptError listing the known ones."""
    from subpt.errors import SubptError

    if name not in SPECS:
        raise SubptError(f"unknown CoOp dataset {name!r}; known: {', '.join(COOP_DATASETS)}")
    return SPECS[name]
