"""Class names and palettes of the datasets our weights are trained on.

These are consulted only when a weights file is *made* (conversion, training);
from then on the weights file's model card is the one source of truth.
"""
from __future__ import annotations

from dataclasses import dataclass

Colour = tuple[int, int, int]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DatasetPreset:
    name: str
    class_names: tuple[str, ...]
    palette: tuple[Colour, ...]
    depth_range: tuple[float, float]  # metres, for display


def voc_colour_map(count: int) -> list[Colour]:
    """The PASCAL VOC bit-interleaved colour map (row 0 is black)."""
    colours = []
    for index in range(count):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        colours.append((r, g, b))
    return colours


KITTI6 = DatasetPreset(
    name="kitti",
    class_names=("sky", "building", "road", "sidewalk", "vegetation", "car"),
    # the reference repository's cmap_kitti
    palette=((128, 128, 128), (128, 0, 0), (128, 64, 128), (0, 0, 192), (128, 128, 0), (64, 0, 128)),
    depth_range=(0.0, 80.0),
)

NYUD40_NAMES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
    "floor mat", "clothes", "ceiling", "books", "refrigerator", "television", "paper", "towel",
    "shower curtain", "box", "whiteboard", "person", "night stand", "toilet", "sink", "lamp",
    "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)

NYUD40 = DatasetPreset(
    name="nyud",
    class_names=NYUD40_NAMES,
    # the reference displays NYUD class k with colour-map row k + 1 (row 0 is unlabeled)
    palette=tuple(voc_colour_map(41)[1:]),
    depth_range=(0.0, 8.0),
)

# The joint NYUD+KITTI checkpoint's outputs are NYUD's 40 classes then KITTI's 6.
NYUDKITTI46 = DatasetPreset(
    name="nyudkitti",
    class_names=NYUD40.class_names + tuple(f"kitti {n}" for n in KITTI6.class_names),
    palette=NYUD40.palette + KITTI6.palette,
    depth_range=(0.0, 80.0),
)

PRESETS = {p.name: p for p in (KITTI6, NYUD40, NYUDKITTI46)}


def get_preset(name: str) -> DatasetPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset preset {name!r}; choose one of {', '.join(PRESETS)}") from None
