"""Cityscapes' official labelId -> trainId table (cityscapesScripts ``labels.py``),
shared by the Cityscapes and KITTI semantic loaders (KITTI uses Cityscapes' ids)."""
from __future__ import annotations

import numpy as np

from .sample import IGNORE_INDEX

Colour = tuple[int, int, int]

# labelId: trainId for the 19 evaluated classes; every other id (0-6 void, 9 parking,
# 10 rail track, 14 guard rail, 15 bridge, 16 tunnel, 18 polegroup, 29 caravan,
# 30 trailer) is ignored.
LABEL_TO_TRAIN_ID: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}

CITYSCAPES19_NAMES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)

CITYSCAPES19_PALETTE: tuple[Colour, ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
    (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)


def _build_lut() -> np.ndarray:
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for label_id, train_id in LABEL_TO_TRAIN_ID.items():
        lut[label_id] = train_id
    return lut


_LUT = _build_lut()


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """uint8 Cityscapes labelIds -> uint8 trainIds (0..18, IGNORE_INDEX elsewhere)."""
    return _LUT[label_ids]
