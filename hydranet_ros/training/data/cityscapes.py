"""Cityscapes in its official layout:

    leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png
    gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png   (or gtCoarse)
    disparity/{split}/{city}/{city}_{seq}_{frame}_disparity.png
    camera/{split}/{city}/{city}_{seq}_{frame}_camera.json

Labels are mapped to the 19 train ids. Depth comes from disparity: a stored value
v > 0 means disparity d = (v - 1) / 256 px and depth = baseline * fx / d metres
(camera file: ``extrinsic.baseline``, ``intrinsic.fx``); v = 0 (and d = 0) is invalid.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...common.image_files import read_label_ids, read_uint16
from .cityscapes_labels import CITYSCAPES19_NAMES, CITYSCAPES19_PALETTE, label_ids_to_train_ids
from .file_dataset import FileDataset, SampleFiles, require_dir
from .sample import SampleError, Transform

IMAGE_SUFFIX = "_leftImg8bit.png"


def disparity_to_depth(raw: np.ndarray, baseline: float, fx: float) -> np.ndarray:
    """Cityscapes' uint16 disparity encoding -> metric depth, 0 where invalid."""
    disparity = (raw.astype(np.float32) - 1.0) / 256.0
    valid = raw > 1  # v = 0 is "no measurement", v = 1 is zero disparity (infinitely far)
    depth = np.zeros(raw.shape, dtype=np.float32)
    depth[valid] = np.float32(baseline * fx) / disparity[valid]
    return depth


def read_stereo_camera(path: Path) -> tuple[float, float]:
    """(baseline metres, fx pixels) from a Cityscapes camera file."""
    try:
        camera = json.loads(path.read_text())
        baseline, fx = float(camera["extrinsic"]["baseline"]), float(camera["intrinsic"]["fx"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SampleError(path, f"not a usable camera file ({type(error).__name__}: {error})") from None
    if baseline <= 0 or fx <= 0:
        raise SampleError(path, f"camera file has baseline {baseline} and fx {fx}; both must be positive")
    return baseline, fx


class CityscapesDataset(FileDataset):
    class_names = list(CITYSCAPES19_NAMES)
    palette = list(CITYSCAPES19_PALETTE)

    def __init__(self, root: str | Path, split: str = "train", *, transform: Transform | None = None,
                 strict: bool = False, annotation: str = "gtFine", use_depth: bool = True,
                 use_labels: bool = True) -> None:
        if annotation not in ("gtFine", "gtCoarse"):
            raise ValueError(f"annotation must be 'gtFine' or 'gtCoarse', got {annotation!r}")
        root = require_dir(Path(root), "Cityscapes root")
        image_dir = require_dir(root / "leftImg8bit" / split, "Cityscapes image folder")
        files = []
        for image in sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}")):
            city, name = image.parent.name, image.name[: -len(IMAGE_SUFFIX)]
            labels = root / annotation / split / city / f"{name}_{annotation}_labelIds.png"
            disparity = root / "disparity" / split / city / f"{name}_disparity.png"
            camera = root / "camera" / split / city / f"{name}_camera.json"
            has_depth = use_depth and disparity.is_file() and camera.is_file()
            files.append(SampleFiles(name, image, disparity if has_depth else None,
                                     labels if use_labels and labels.is_file() else None,
                                     extra=camera if has_depth else None))
        super().__init__(files, image_dir, transform=transform, strict=strict)

    def load_depth(self, files: SampleFiles) -> np.ndarray | None:
        if files.depth is None:
            return None
        baseline, fx = read_stereo_camera(files.extra)
        return disparity_to_depth(read_uint16(files.depth), baseline, fx)

    def load_labels(self, files: SampleFiles) -> np.ndarray | None:
        return None if files.labels is None else label_ids_to_train_ids(read_label_ids(files.labels))
