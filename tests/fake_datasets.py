"""Tiny fake copies of CoOp's 15 datasets in their exact on-disk layouts, for tests.

`make_fake_dataset(root, name)` writes dataset `name` (a registry name) under the data root `root`:
8x8 JPEG images, `n_classes` classes and `n_per_class` images per class in each of train, val and
test (ImageNet: train and val folders; the variants: one test set), with split files in CoOp's real
formats. Class names are real ones in the raw form CoOp's files hold, so the readers' clean-ups are
exercised; `expected_classnames(name, n_classes)` gives the names the readers must produce.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

# Per dataset: (folder or raw name, name as stored in the split file, cleaned name the reader must give).
CLASSES: dict[str, list[tuple[str, str, str]]] = {
    "caltech101": [
        ("Faces", "face", "face"),
        ("Leopards", "leopard", "leopard"),
        ("accordion", "accordion", "accordion"),
        ("dollar_bill", "dollar_bill", "dollar bill"),
        ("airplanes", "airplane", "airplane"),
        ("Motorbikes", "motorbike", "motorbike"),
    ],
    "oxford_pets": [
        ("Abyssinian", "abyssinian", "abyssinian"),
        ("american_bulldog", "american_bulldog", "american bulldog"),
        ("Bengal", "bengal", "bengal"),
        ("great_pyrenees", "great_pyrenees", "great pyrenees"),
        ("Egyptian_Mau", "egyptian_mau", "egyptian mau"),
        ("yorkshire_terrier", "yorkshire_terrier", "yorkshire terrier"),
    ],
    "stanford_cars": [
        ("", "2012 Tesla Model S", "2012 Tesla Model S"),
        ("", "2012 BMW M3 Coupe", "2012 BMW M3 Coupe"),
        ("", "2007 Hummer H3T Crew Cab", "2007 Hummer H3T Crew Cab"),
        ("", "1993 Geo Metro Convertible", "1993 Geo Metro Convertible"),
        ("", "2012 Audi R8 Coupe", "2012 Audi R8 Coupe"),
        ("", "2009 Dodge Ram Pickup 3500 Crew Cab", "2009 Dodge Ram Pickup 3500 Crew Cab"),
    ],
    "oxford_flowers": [
        ("", "pink primrose", "pink primrose"),
        ("", "hard-leaved pocket orchid", "hard-leaved pocket orchid"),
        ("", "canterbury bells", "canterbury bells"),
        ("", "sweet pea", "sweet pea"),
        ("", "english marigold", "english marigold"),
        ("", "tiger lily", "tiger lily"),
    ],
    "food101": [
        ("apple_pie", "apple_pie", "apple pie"),
        ("baby_back_ribs", "baby_back_ribs", "baby back ribs"),
        ("baklava", "baklava", "baklava"),
        ("beef_carpaccio", "beef_carpaccio", "beef carpaccio"),
        ("beef_tartare", "beef_tartare", "beef tartare"),
        ("beet_salad", "beet_salad", "beet salad"),
    ],
    "sun397": [
        ("a/abbey", "abbey", "abbey"),
        ("a/apartment_building/outdoor", "outdoor apartment_building", "outdoor apartment building"),
        ("b/bakery/shop", "shop bakery", "shop bakery"),
        ("a/airport_terminal", "airport_terminal", "airport terminal"),
        ("b/ballroom", "ballroom", "ballroom"),
        ("c/campus", "campus", "campus"),
    ],
    "dtd": [
        ("banded", "banded", "banded"),
        ("blotchy", "blotchy", "blotchy"),
        ("braided", "braided", "braided"),
        ("bubbly", "bubbly", "bubbly"),
        ("bumpy", "bumpy", "bumpy"),
        ("chequered", "chequered", "chequered"),
    ],
    "eurosat": [
        ("AnnualCrop", "Annual Crop Land", "Annual Crop Land"),
        ("Forest", "Forest", "Forest"),
        ("HerbaceousVegetation", "Herbaceous Vegetation Land", "Herbaceous Vegetation Land"),
        ("Highway", "Highway or Road", "Highway or Road"),
        ("Industrial", "Industrial Buildings", "Industrial Buildings"),
        ("Pasture", "Pasture Land", "Pasture Land"),
    ],
    "ucf101": [
        ("Apply_Eye_Makeup", "Apply_Eye_Makeup", "Apply Eye Makeup"),
        ("Baby_Crawling", "Baby_Crawling", "Baby Crawling"),
        ("Band_Marching", "Band_Marching", "Band Marching"),
        ("Yo_Yo", "Yo_Yo", "Yo Yo"),
        ("Playing_Daf", "Playing_Daf", "Playing Daf"),
        ("Body_Weight_Squats", "Body_Weight_Squats", "Body Weight Squats"),
    ],
    "fgvc_aircraft": [
        ("", "707-320", "707-320"),
        ("", "A300B4", "A300B4"),
        ("", "Boeing 717", "Boeing 717"),
        ("", "Cessna 172", "Cessna 172"),
        ("", "F/A-18", "F/A-18"),
        ("", "Tu-134", "Tu-134"),
    ],
}
# The first ImageNet classes (wnid, CLIP's name as in CoOp's classnames.txt).
IMAGENET_CLASSES: list[tuple[str, str]] = [
    ("n01440764", "tench"),
    ("n01443537", "goldfish"),
    ("n01484850", "great white shark"),
    ("n01491361", "tiger shark"),
    ("n01494475", "hammerhead shark"),
    ("n01496331", "electric ray"),
    ("n01498041", "stingray"),
    ("n01514668", "rooster"),
    ("n01514859", "hen"),
    ("n01518878", "ostrich"),
    ("n01530575", "brambling"),
    ("n01531178", "goldfinch"),
]
SPLIT_FILES = {
    "caltech101": ("caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json"),
    "oxford_pets": ("oxford_pets", "images", "split_zhou_OxfordPets.json"),
    "stanford_cars": ("stanford_cars", "", "split_zhou_StanfordCars.json"),
    "oxford_flowers": ("oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json"),
    "food101": ("food-101", "images", "split_zhou_Food101.json"),
    "sun397": ("sun397", "SUN397", "split_zhou_SUN397.json"),
    "dtd": ("dtd", "images", "split_zhou_DescribableTextures.json"),
    "eurosat": ("eurosat", "2750", "split_zhou_EuroSAT.json"),
    "ucf101": ("ucf101", "UCF-101-midframes", "split_zhou_UCF101.json"),
}
VARIANT_DIRS = {
    "imagenet_v2": ("imagenetv2", "imagenetv2-matched-frequency-format-val"),
    "imagenet_sketch": ("imagenet-sketch", "images"),
    "imagenet_a": ("imagenet-adversarial", "imagenet-a"),
    "imagenet_r": ("imagenet-rendition", "imagenet-r"),
}
ALL_DATASETS: tuple[str, ...] = (
    "imagenet",
    "caltech101",
    "oxford_pets",
    "stanford_cars",
    "oxford_flowers",
    "food101",
    "fgvc_aircraft",
    "sun397",
    "dtd",
    "eurosat",
    "ucf101",
    "imagenet_v2",
    "imagenet_sketch",
    "imagenet_a",
    "imagenet_r",
)
TEMPLATES: dict[str, str] = {
    "imagenet": "a photo of a {}.",
    "caltech101": "a photo of a {}.",
    "oxford_pets": "a photo of a {}, a type of pet.",
    "stanford_cars": "a photo of a {}.",
    "oxford_flowers": "a photo of a {}, a type of flower.",
    "food101": "a photo of {}, a type of food.",
    "fgvc_aircraft": "a photo of a {}, a type of aircraft.",
    "sun397": "a photo of a {}.",
    "dtd": "{} texture.",
    "eurosat": "a centered satellite photo of {}.",
    "ucf101": "a photo of a person doing {}.",
    "imagenet_v2": "a photo of a {}.",
    "imagenet_sketch": "a photo of a {}.",
    "imagenet_a": "a photo of a {}.",
    "imagenet_r": "a photo of a {}.",
}


def _classes(name: str, n: int) -> list[tuple[str, str, str]]:
    table = CLASSES[name]
    extra = [(f"extra_class_{i}", f"extra_class_{i}", f"extra class {i}") for i in range(len(table), n)]
    rows = (table + extra)[:n]
    if name == "sun397":  # SUN397 folders are paths under a one-letter folder
        rows = [(f if "/" in f else f"e/{f}", s, c) for f, s, c in rows]
    if name == "oxford_pets":  # Pets file names are <Breed>_<n>.jpg in one folder
        rows = [(f, s, c) if i < len(table) else (f, f.lower(), c) for i, (f, s, c) in enumerate(rows)]
    if name in ("stanford_cars", "oxford_flowers", "fgvc_aircraft"):
        rows = [
            (f, s if i < len(table) else f"Extra Model {i}", c if i < len(table) else f"Extra Model {i}")
            for i, (f, s, c) in enumerate(rows)
        ]
    return rows


def _imagenet_classes(n: int) -> list[tuple[str, str]]:
    extra = [(f"n{99000000 + i:08d}", f"extra class {i}") for i in range(len(IMAGENET_CLASSES), n)]
    return (IMAGENET_CLASSES + extra)[:n]


def expected_classnames(name: str, n_classes: int = 4) -> list[str]:
    """The class names (label order) the reader must return for `make_fake_dataset(root, name, n_classes)`."""
    if name in CLASSES:
        return [c for _, _, c in _classes(name, n_classes)]
    if name in ("imagenet", "imagenet_v2", "imagenet_sketch"):
        return [c for _, c in _imagenet_classes(n_classes)]
    if name in ("imagenet_a", "imagenet_r"):
        return [c for _, c in _imagenet_classes(2 * n_classes)[1::2]]
    raise KeyError(name)


def write_image(path: Path, seed: int) -> None:
    """Write an 8x8 RGB JPEG (PNG for a .png name) whose colour depends on `seed`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256)
    Image.new("RGB", (8, 8), colour).save(path, format="PNG" if path.suffix == ".png" else "JPEG")


def _write_classnames(path: Path, classes: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{w} {n}\n" for w, n in classes))


def make_fake_dataset(root: Path, name: str, n_classes: int = 4, n_per_class: int = 4) -> None:
    """Write a tiny copy of CoOp dataset `name` (registry name) under the data root `root`."""
    root = Path(root)
    if name in SPLIT_FILES:
        _make_split_dataset(root, name, n_classes, n_per_class)
    elif name == "fgvc_aircraft":
        _make_fgvc(root, n_classes, n_per_class)
    elif name == "imagenet":
        _make_imagenet(root, n_classes, n_per_class)
    elif name in VARIANT_DIRS:
        _make_variant(root, name, n_classes, n_per_class)
    else:
        raise KeyError(f"no fake layout for {name!r}")


def _make_split_dataset(root: Path, name: str, n_classes: int, n_per_class: int) -> None:
    folder, image_dir, split_file = SPLIT_FILES[name]
    d = root / folder
    images = d / image_dir if image_dir else d
    split: dict[str, list[list[object]]] = {"train": [], "val": [], "test": []}
    counter = 0
    for label, (raw, stored, _) in enumerate(_classes(name, n_classes)):
        for s in ("train", "val", "test"):
            for _ in range(n_per_class):
                counter += 1
                if name == "oxford_pets":
                    rel = f"{raw}_{counter}.jpg"
                elif name == "stanford_cars":
                    rel = f"{'cars_test' if s == 'test' else 'cars_train'}/{counter:05d}.jpg"
                elif name == "oxford_flowers":
                    rel = f"image_{counter:05d}.jpg"
                elif name == "ucf101":
                    rel = f"{raw}/v_{raw.replace('_', '')}_g{counter:02d}_c01.jpg"
                elif name == "sun397":
                    rel = f"{raw}/sun_{counter:06d}.jpg"
                else:
                    rel = f"{raw}/{raw}_{counter:04d}.jpg"
                write_image(images / rel, counter)
                split[s].append([rel, label, stored])
    (d / split_file).write_text(json.dumps(split))


def _make_fgvc(root: Path, n_classes: int, n_per_class: int) -> None:
    d = root / "fgvc_aircraft"
    variants = [stored for _, stored, _ in _classes("fgvc_aircraft", n_classes)]
    (d / "images").mkdir(parents=True, exist_ok=True)
    (d / "variants.txt").write_text("".join(v + "\n" for v in variants))
    counter = 1000000
    for s in ("train", "val", "test"):
        lines = []
        for v in variants:
            for _ in range(n_per_class):
                counter += 1
                write_image(d / "images" / f"{counter:07d}.jpg", counter)
                lines.append(f"{counter:07d} {v}\n")
        (d / f"images_variant_{s}.txt").write_text("".join(lines))


def _make_imagenet(root: Path, n_classes: int, n_per_class: int) -> None:
    d = root / "imagenet"
    classes = _imagenet_classes(n_classes)
    _write_classnames(d / "classnames.txt", classes)
    for i, (wnid, _) in enumerate(classes):
        for k in range(n_per_class):
            write_image(d / "images" / "train" / wnid / f"{wnid}_{k}.JPEG", 100 * i + k)
            write_image(d / "images" / "val" / wnid / f"ILSVRC2012_val_{i:04d}{k:04d}.JPEG", 100 * i + k + 50)


def _make_variant(root: Path, name: str, n_classes: int, n_per_class: int) -> None:
    folder, image_dir = VARIANT_DIRS[name]
    d = root / folder
    if name in ("imagenet_a", "imagenet_r"):
        # classnames.txt lists all ImageNet classes; the variant has folders for a subset (200 of 1000).
        all_classes = _imagenet_classes(2 * n_classes)
        _write_classnames(d / "classnames.txt", all_classes)
        folders = [w for w, _ in all_classes[1::2]]
        (d / image_dir).mkdir(parents=True, exist_ok=True)
        (d / image_dir / "README.txt").write_text("fake\n")
    else:
        classes = _imagenet_classes(n_classes)
        _write_classnames(d / "classnames.txt", classes)
        folders = [str(i) for i in range(n_classes)] if name == "imagenet_v2" else [w for w, _ in classes]
    for i, f in enumerate(folders):
        for k in range(n_per_class):
            fname = f"{k:040x}.jpeg" if name == "imagenet_v2" else f"{name}_{k}.JPEG"
            write_image(d / image_dir / f / fname, 7 * i + k)
