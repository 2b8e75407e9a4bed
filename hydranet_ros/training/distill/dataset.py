"""Frames of an unlabelled recording with a teacher's labels, as a labels-only training set.

Depth keeps its own supervision (synthetic scenes, or a dataset with real depth): these
samples carry labels and no depth, which the asymmetric-annotation training masks, so they
mix with depth-supervised sets in ``data.extra_train_sets``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ...common.image_files import read_label_ids
from ...model.presets import IMAGENET_MEAN, IMAGENET_STD, KITTI6
from ..data.file_dataset import FileDataset, SampleFiles
from ..data.sample import IGNORE_INDEX, Transform, check_same_size
from .cache import FrameSelection, label_recording
from .class_map import class_lut
from .teacher import load_teacher

Colour = tuple[int, int, int]


class TeacherLabelledDataset(FileDataset):
    """The cached frames of ``label_recording``; labels go through ``lut`` (their id -> ours),
    and pixels whose teacher confidence is below ``min_confidence`` are ignored."""

    def __init__(self, folder: Path, lut: np.ndarray, class_names: Sequence[str], palette: Sequence[Colour], *,
                 min_confidence: float = 0.0, transform: Transform | None = None, strict: bool = False) -> None:
        folder = Path(folder)
        labels = sorted((folder / "labels").glob("*.png"))
        files = [SampleFiles(p.stem, folder / "frames" / f"{p.stem}.jpg", labels=p,
                             extra=folder / "confidence" / f"{p.stem}.png") for p in labels]
        super().__init__(files, folder, transform=transform, strict=strict)
        self.class_names, self.palette = list(class_names), list(palette)
        self.lut, self.min_confidence = lut, min_confidence
        self.provenance: dict[str, Any] = {}

    def load_labels(self, files: SampleFiles) -> np.ndarray:
        labels = self.lut[read_label_ids(files.labels)]
        if self.min_confidence > 0 and files.extra.is_file():
            confidence = read_label_ids(files.extra)
            check_same_size(confidence, labels.shape, "confidence", files.extra)
            labels = np.where(confidence >= round(self.min_confidence * 255), labels, IGNORE_INDEX).astype(np.uint8)
        return labels


def build_teacher_dataset(source: str | Path, *, teacher: str | Path, cache_dir: str | Path,
                          classes: str | Sequence[str] | None = None, class_map: Mapping[Any, str] | None = None,
                          class_names: Sequence[str] = KITTI6.class_names,
                          palette: Sequence[Colour] = KITTI6.palette, min_confidence: float = 0.0,
                          start: int = 0, stop: int | None = None, every: int = 1, topic: str | None = None,
                          mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                          threads: int = 1, transform: Transform | None = None,
                          strict: bool = False) -> TeacherLabelledDataset:
    """Check the teacher and the class map, label ``source``'s frames into ``cache_dir`` (once;
    resumable) and return them as a labels-only dataset in ``class_names``. Every bad input
    (teacher file, class map, unreadable recording) raises a ValueError naming it before any
    frame is labelled, except a recording with no readable frame, found while reading it."""
    if every < 1 or start < 0 or (stop is not None and stop <= start):
        raise ValueError(f"unlabelled data {source}: frame selection start={start} stop={stop} every={every} "
                         "selects nothing (need start >= 0, stop > start, every >= 1)")
    if not 0.0 <= min_confidence < 1.0:
        raise ValueError(f"min_confidence must be in [0, 1), got {min_confidence}")
    net = load_teacher(teacher, mean, std, threads)
    lut = class_lut(class_map, classes, list(class_names), net.num_classes, what=f"class map for teacher {net.path}")
    folder = label_recording(net, Path(source), Path(cache_dir), FrameSelection(start, stop, every, topic))
    dataset = TeacherLabelledDataset(folder, lut, class_names, palette, min_confidence=min_confidence,
                                     transform=transform, strict=strict)
    manifest = json.loads((folder / "manifest.json").read_text())
    dataset.provenance = {"teacher": str(net.path), "unlabelled_data": str(source), "frames": manifest["frames"],
                          "class_map": {str(k): v for k, v in (class_map or {}).items()} or "by class name",
                          "min_confidence": min_confidence}
    return dataset
