"""A plain folder layout for your own data:

    root/[split/]images/<stem>.png|.jpg|.jpeg
    root/[split/]depth/<stem>.png   uint16 x depth_scale metres (default 1/256 like KITTI), 0 invalid
                       <stem>.npy   float metres
                       <stem>.tif[f] float metres (integer TIFFs x depth_scale)
    root/[split/]labels/<stem>.png  uint8 class ids, 255 ignore

Files are matched by stem; any sample may lack depth, labels or both.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ...common.image_files import IMAGE_SUFFIXES, read_depth_file, read_label_ids
from ...model.presets import get_preset
from .file_dataset import Colour, FileDataset, SampleFiles, require_dir
from .sample import Transform

DEPTH_SUFFIXES = (".png", ".npy", ".tif", ".tiff")
LABEL_SUFFIXES = (".png",)


def files_by_stem(directory: Path, suffixes: Sequence[str]) -> dict[str, Path]:
    """{stem: path} of the files in ``directory`` with one of ``suffixes``; a stem
    present with two suffixes is ambiguous and raises ValueError."""
    found: dict[str, Path] = {}
    if not directory.is_dir():
        return found
    for path in sorted(directory.iterdir()):
        if path.is_file() and path.suffix.lower() in suffixes:
            if path.stem in found:
                raise ValueError(f"ambiguous sample {path.stem!r}: both {found[path.stem]} and {path}")
            found[path.stem] = path
    return found


class FolderDataset(FileDataset):
    def __init__(self, root: str | Path, split: str | None = None, *, transform: Transform | None = None,
                 strict: bool = False, depth_scale: float = 1.0 / 256.0, preset: str = "kitti",
                 class_names: Sequence[str] | None = None, palette: Sequence[Colour] | None = None) -> None:
        base = require_dir(Path(root) / split if split else Path(root), "dataset folder")
        images = files_by_stem(require_dir(base / "images", "image folder"), IMAGE_SUFFIXES)
        depths = files_by_stem(base / "depth", DEPTH_SUFFIXES)
        labels = files_by_stem(base / "labels", LABEL_SUFFIXES)
        files = [SampleFiles(stem, path, depths.get(stem), labels.get(stem)) for stem, path in images.items()]
        super().__init__(files, base / "images", transform=transform, strict=strict)
        self.depth_scale = depth_scale
        if (class_names is None) != (palette is None):
            raise ValueError("give both class_names and palette, or neither (to use the preset's)")
        if class_names is None:
            preset_ = get_preset(preset)
            class_names, palette = preset_.class_names, preset_.palette
        if len(class_names) != len(palette):
            raise ValueError(f"{len(class_names)} class names but {len(palette)} palette colours")
        self.class_names = list(class_names)
        self.palette = [tuple(int(c) for c in colour) for colour in palette]

    def load_depth(self, files: SampleFiles) -> np.ndarray | None:
        return None if files.depth is None else read_depth_file(files.depth, self.depth_scale)

    def load_labels(self, files: SampleFiles) -> np.ndarray | None:
        return None if files.labels is None else read_label_ids(files.labels)
