"""KITTI: the depth benchmark's ground truth with the raw frames, and KITTI semantic.

Depth (``KittiDepthDataset``), the depth benchmark layout next to KITTI raw:

    {root}/{split}/{drive}/proj_depth/groundtruth/{camera}/{frame}.png   uint16, depth = v / 256 m, 0 invalid
    {raw_root}/{date}/{drive}/{camera}/data/{frame}.png                 the RGB frame

with {drive} like ``2011_09_26_drive_0001_sync`` and {date} its first ten characters.
These samples carry depth only; their classes are Cityscapes' 19 train ids so they
mix with KITTI semantic for training on asymmetric annotations.

Semantic (``KittiSemanticDataset``), the KITTI semantic segmentation benchmark:

    {root}/training/image_2/{name}.png
    {root}/training/semantic/{name}.png   Cityscapes labelIds, mapped to train ids
    {root}/testing/image_2/{name}.png     (no labels)
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ...common.image_files import read_label_ids, read_scaled_depth_png
from .cityscapes_labels import CITYSCAPES19_NAMES, CITYSCAPES19_PALETTE, label_ids_to_train_ids
from .file_dataset import FileDataset, SampleFiles, require_dir
from .sample import Transform

log = logging.getLogger(__name__)

KITTI_DEPTH_SCALE = 1.0 / 256.0
SEMANTIC_SPLITS = {"train": "training", "training": "training", "test": "testing", "testing": "testing"}


class KittiDepthDataset(FileDataset):
    class_names = list(CITYSCAPES19_NAMES)
    palette = list(CITYSCAPES19_PALETTE)

    def __init__(self, root: str | Path, split: str = "train", *, raw_root: str | Path,
                 cameras: Sequence[str] = ("image_02", "image_03"), transform: Transform | None = None,
                 strict: bool = False) -> None:
        split_dir = require_dir(Path(root) / split, "KITTI depth split folder")
        raw_root = require_dir(Path(raw_root), "KITTI raw root")
        files, missing = [], []
        for drive_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            drive = drive_dir.name
            for camera in cameras:
                for depth in sorted((drive_dir / "proj_depth" / "groundtruth" / camera).glob("*.png")):
                    image = raw_root / drive[:10] / drive / camera / "data" / depth.name
                    if image.is_file():
                        files.append(SampleFiles(f"{drive}_{camera}_{depth.stem}", image, depth=depth))
                    else:
                        missing.append(str(image))
        super().__init__(files, split_dir, transform=transform, strict=strict)
        if missing:
            # typically a drive whose raw data was not downloaded: one summary, not thousands of lines
            message = (f"{len(missing)} depth maps under {split_dir} have no raw frame and are skipped, "
                       f"e.g. {missing[0]}")
            if strict:
                raise FileNotFoundError(message)
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            log.warning(message)
            self.skipped.extend(missing)

    def load_depth(self, files: SampleFiles) -> np.ndarray | None:
        return read_scaled_depth_png(files.depth, KITTI_DEPTH_SCALE)


class KittiSemanticDataset(FileDataset):
    class_names = list(CITYSCAPES19_NAMES)
    palette = list(CITYSCAPES19_PALETTE)

    def __init__(self, root: str | Path, split: str = "training", *, transform: Transform | None = None,
                 strict: bool = False) -> None:
        if split not in SEMANTIC_SPLITS:
            raise ValueError(f"KITTI semantic split must be one of {', '.join(SEMANTIC_SPLITS)}, got {split!r}")
        split_dir = require_dir(Path(root) / SEMANTIC_SPLITS[split], "KITTI semantic split folder")
        image_dir = require_dir(split_dir / "image_2", "KITTI semantic image folder")
        files = []
        for image in sorted(image_dir.glob("*.png")):
            labels = split_dir / "semantic" / image.name
            files.append(SampleFiles(image.stem, image, labels=labels if labels.is_file() else None))
        super().__init__(files, image_dir, transform=transform, strict=strict)

    def load_labels(self, files: SampleFiles) -> np.ndarray | None:
        return None if files.labels is None else label_ids_to_train_ids(read_label_ids(files.labels))
