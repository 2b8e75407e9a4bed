"""Training data: loaders for Cityscapes, KITTI, NYUDv2, a plain folder layout and
procedural synthetic streets, all returning the same sample dict (see ``sample``),
plus joint augmentation (``transforms``) and ``build_dataset`` for YAML recipes; and
UTKFace for the face-attribute recipe."""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from .cityscapes import CityscapesDataset
from .cityscapes_labels import CITYSCAPES19_NAMES, CITYSCAPES19_PALETTE, LABEL_TO_TRAIN_ID, label_ids_to_train_ids
from .file_dataset import FileDataset, SampleFiles
from .folder import FolderDataset
from .kitti import KittiDepthDataset, KittiSemanticDataset
from .nyud import NyudDataset
from .sample import IGNORE_INDEX, INVALID_DEPTH, Sample, SampleError, Transform, make_sample
from .synthetic import (
    SyntheticFrame,
    SyntheticStreetDataset,
    camera_pose,
    intrinsics,
    render_sequence,
    render_street_scene,
)
from .transforms import (
    ColourJitter,
    Compose,
    RandomHorizontalFlip,
    RandomZoomCrop,
    Resize,
    eval_transforms,
    train_transforms,
)
from .utkface import RACE_NAMES, UTKFaceDataset, face_train_transforms, parse_name

# synthetic splits draw disjoint seeds unless a recipe sets seed_offset
SYNTHETIC_SPLIT_SEEDS = {"train": 0, "val": 1_000_000, "test": 2_000_000}
DATASET_KINDS = ("folder", "cityscapes", "kitti", "nyud", "synthetic", "utkface")


def _construct(cls: type, kind: str, args: tuple[Any, ...], transform: Transform | None,
               options: dict[str, Any]) -> Dataset:
    """``cls(*args, transform=transform, **options)``, with a recipe-friendly error for an unknown option."""
    accepted = [name for name, p in inspect.signature(cls).parameters.items()
                if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and name not in ("root", "split", "transform")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for dataset kind {kind!r}; "
                         f"accepted: {', '.join(accepted)}")
    required = [name for name, p in inspect.signature(cls).parameters.items()
                if p.default is p.empty and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
                and name not in ("root", "split", "transform")]
    missing = [name for name in required if name not in options]
    if missing:
        raise ValueError(f"dataset kind {kind!r} needs option(s) {', '.join(missing)} "
                         "(data.options, data.train_options or data.val_options)")
    return cls(*args, transform=transform, **options)


def build_dataset(kind: str, root: str | Path | None, split: str | None, transform: Transform | None = None,
                  **options: Any) -> Dataset:
    """The dataset a recipe names. ``kind`` is one of DATASET_KINDS; ``options`` are the
    dataset class's keyword arguments (for "kitti", ``task: depth | semantic`` picks
    KittiDepthDataset or KittiSemanticDataset; "synthetic" ignores ``root``)."""
    if kind == "synthetic":
        if "seed_offset" not in options:
            options["seed_offset"] = SYNTHETIC_SPLIT_SEEDS.get(split or "train", 0)
        return _construct(SyntheticStreetDataset, kind, (), transform, options)
    if root is None:
        raise ValueError(f"dataset kind {kind!r} needs a root path")
    if kind == "folder":
        return _construct(FolderDataset, kind, (root, split), transform, options)
    if kind == "cityscapes":
        return _construct(CityscapesDataset, kind, (root, split or "train"), transform, options)
    if kind == "nyud":
        return _construct(NyudDataset, kind, (root, split), transform, options)
    if kind == "utkface":
        return _construct(UTKFaceDataset, kind, (root, split), transform, options)
    if kind == "kitti":
        task = options.pop("task", "depth")
        if task == "depth":
            return _construct(KittiDepthDataset, kind, (root, split or "train"), transform, options)
        if task == "semantic":
            return _construct(KittiSemanticDataset, kind, (root, split or "training"), transform, options)
        raise ValueError(f"kitti task must be 'depth' or 'semantic', got {task!r}")
    raise ValueError(f"unknown dataset kind {kind!r}; choose one of {', '.join(DATASET_KINDS)}")


__all__ = [
    "CITYSCAPES19_NAMES", "CITYSCAPES19_PALETTE", "DATASET_KINDS", "IGNORE_INDEX", "INVALID_DEPTH",
    "LABEL_TO_TRAIN_ID", "RACE_NAMES", "CityscapesDataset", "ColourJitter", "Compose", "FileDataset", "FolderDataset",
    "KittiDepthDataset", "KittiSemanticDataset", "NyudDataset", "RandomHorizontalFlip", "RandomZoomCrop",
    "Resize", "Sample", "SampleError", "SampleFiles", "SyntheticFrame", "SyntheticStreetDataset", "Transform",
    "UTKFaceDataset", "build_dataset", "camera_pose", "eval_transforms", "face_train_transforms", "intrinsics",
    "label_ids_to_train_ids", "make_sample", "parse_name", "render_sequence", "render_street_scene",
    "train_transforms",
]
