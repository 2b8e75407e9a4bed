"""NYUDv2 (40 classes) as the reference's DenseTorch training stores it:

    {root}/rgb/000464.png     RGB
    {root}/masks/000464.png   uint8 class ids 0..39, 255 ignore
    {root}/depth/000464.png   uint16, depth = v / 5000 m, 0 invalid

The samples of a split come from, in this order of precedence:
  1. ``list_file`` (relative paths are under root),
  2. ``{root}/{split}.txt``,
  3. the folders ``{root}/{split}/rgb|masks|depth`` matched by stem,
  4. with ``split=None``, the folders ``{root}/rgb|masks|depth``.
A list has one sample per line, whitespace-separated, in DenseTorch's column order:
``rgb/000464.png masks/000464.png depth/000464.png``; ``-`` (or a missing last
column) means the sample lacks that annotation; ``#`` starts a comment line.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...common.image_files import read_label_ids, read_scaled_depth_png
from ...model.presets import NYUD40
from .file_dataset import FileDataset, SampleFiles, require_dir
from .folder import files_by_stem
from .sample import Transform

NYUD_DEPTH_SCALE = 1.0 / 5000.0


def read_list_file(list_file: Path, root: Path) -> list[SampleFiles]:
    """Parse a DenseTorch-style list (see the module doc)."""
    files = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        columns = line.split()
        if not columns or columns[0].startswith("#"):
            continue
        if len(columns) > 3:
            raise ValueError(f"{list_file}:{number}: expected 'rgb [masks [depth]]', got {len(columns)} columns")
        rgb, masks, depth = (columns + ["-", "-"])[:3]
        files.append(SampleFiles(Path(rgb).stem, root / rgb, depth=None if depth == "-" else root / depth,
                                 labels=None if masks == "-" else root / masks))
    return files


def match_folders(base: Path) -> list[SampleFiles]:
    images = files_by_stem(require_dir(base / "rgb", "NYUD rgb folder"), (".png", ".jpg", ".jpeg"))
    masks, depths = files_by_stem(base / "masks", (".png",)), files_by_stem(base / "depth", (".png",))
    return [SampleFiles(stem, path, depths.get(stem), masks.get(stem)) for stem, path in images.items()]


class NyudDataset(FileDataset):
    class_names = list(NYUD40.class_names)
    palette = list(NYUD40.palette)

    def __init__(self, root: str | Path, split: str | None = "train", *, transform: Transform | None = None,
                 strict: bool = False, list_file: str | Path | None = None,
                 depth_scale: float = NYUD_DEPTH_SCALE) -> None:
        root = require_dir(Path(root), "NYUD root")
        if list_file is not None:
            list_path = root / list_file  # an absolute list_file stays absolute
            if not list_path.is_file():
                raise FileNotFoundError(f"NYUD list file {str(list_path)!r} does not exist")
            files, source = read_list_file(list_path, root), list_path
        elif split and (root / f"{split}.txt").is_file():
            source = root / f"{split}.txt"
            files = read_list_file(source, root)
        elif split:
            source = require_dir(root / split, f"NYUD split folder (and no {split}.txt list in {root})")
            files = match_folders(source)
        else:
            files, source = match_folders(root), root
        super().__init__(files, source, transform=transform, strict=strict)
        self.depth_scale = depth_scale

    def load_depth(self, files: SampleFiles) -> np.ndarray | None:
        if files.depth is None:
            return None
        return read_scaled_depth_png(files.depth, self.depth_scale)

    def load_labels(self, files: SampleFiles) -> np.ndarray | None:
        return None if files.labels is None else read_label_ids(files.labels)
