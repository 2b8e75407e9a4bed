"""Base class of the on-disk datasets: an index of per-sample files, decoding with
skip-and-count of bad samples, and the transform applied to the sample dict."""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from torch.utils.data import Dataset

from ...common.image_files import read_rgb
from .sample import IGNORE_INDEX, Sample, SampleError, Transform, check_same_size, make_sample

Colour = tuple[int, int, int]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampleFiles:
    """The files of one sample; ``depth``/``labels`` are None where the sample lacks them,
    ``extra`` carries whatever else a loader needs (e.g. Cityscapes' camera file)."""

    name: str
    image: Path
    depth: Path | None = None
    labels: Path | None = None
    extra: Any = None


def require_dir(path: Path, what: str) -> Path:
    """``path`` as a Path if it is a directory, else FileNotFoundError naming it."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist or is not a directory")
    return path


class FileDataset(Dataset):
    """Subclasses build ``files`` and implement ``load_depth``/``load_labels``.

    A sample whose files cannot be decoded, or whose depth/labels differ in size from
    its image, is skipped: a warning names the file, the file goes into ``skipped``,
    and the next good sample is returned in its place so that a long run never dies on
    one bad file. ``strict=True`` raises instead. (With DataLoader workers each worker
    keeps its own ``skipped``; call ``verify()`` up front for a count in the main process.)
    """

    class_names: list[str]
    palette: list[Colour]

    def __init__(self, files: Sequence[SampleFiles], root: Path, *, transform: Transform | None = None,
                 strict: bool = False) -> None:
        if not files:
            raise FileNotFoundError(f"no samples found under {str(root)!r}; check the root path, split and layout")
        self.files = list(files)
        self.root = Path(root)
        self.transform = transform
        self.strict = strict
        self.skipped: list[str] = []
        self._bad: set[int] = set()
        self._warned_out_of_range = False

    def __len__(self) -> int:
        return len(self.files)

    # -- per-dataset decoding ------------------------------------------------------
    def load_depth(self, files: SampleFiles) -> np.ndarray | None:
        """Metric depth (H, W) float32 with 0 invalid, or None for no depth."""
        return None

    def load_labels(self, files: SampleFiles) -> np.ndarray | None:
        """Training class ids (H, W) uint8 with 255 ignore, or None for no labels."""
        return None

    # -- sample assembly -----------------------------------------------------------
    def load(self, index: int) -> Sample:
        """The untransformed sample ``index``; raises SampleError naming a bad file."""
        files = self.files[index]
        image = read_rgb(files.image)
        depth = self.load_depth(files)
        if depth is not None:
            check_same_size(depth, image.shape[:2], "depth", files.depth)
        labels = self.load_labels(files)
        if labels is not None:
            check_same_size(labels, image.shape[:2], "labels", files.labels)
            labels = self._ignore_unknown_ids(labels, files.labels)
        return make_sample(image, depth, labels, files.name)

    def _ignore_unknown_ids(self, labels: np.ndarray, source: Path | None) -> np.ndarray:
        # an id >= num_classes would crash a cross-entropy loss (on CUDA, with an opaque
        # device assert); it is almost always an encoding mix-up, so say so once
        unknown = (labels >= len(self.class_names)) & (labels != IGNORE_INDEX)
        if not unknown.any():
            return labels
        if not self._warned_out_of_range:
            self._warned_out_of_range = True
            message = (f"{source}: class ids {sorted(np.unique(labels[unknown]).tolist())[:10]} are outside "
                       f"0..{len(self.class_names) - 1} and are ignored (further such files are not reported)")
            warnings.warn(message, RuntimeWarning, stacklevel=4)
            log.warning(message)
        return np.where(unknown, IGNORE_INDEX, labels).astype(labels.dtype)

    def _reject(self, index: int, error: SampleError) -> None:
        if self.strict:
            raise error
        self._bad.add(index)
        self.skipped.append(error.source)
        message = f"skipping unusable sample {self.files[index].name!r}: {error}"
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        log.warning(message)

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample index {index} out of range for {len(self)} samples")
        index %= len(self)
        for offset in range(len(self)):
            candidate = (index + offset) % len(self)
            if candidate in self._bad:
                continue
            try:
                sample = self.load(candidate)
            except SampleError as error:
                self._reject(candidate, error)
                continue
            return self.transform(sample) if self.transform is not None else sample
        # a ValueError, so the training script reports it as bad data rather than a crash;
        # one string argument, so a DataLoader worker can re-raise it in the main process
        raise ValueError(f"every sample under {str(self.root)!r} is unusable; skipped: {self.skipped}")

    def verify(self) -> list[str]:
        """Decode every sample now (slow: reads the whole dataset) so that ``skipped`` is
        complete before training; returns ``skipped``."""
        for index in range(len(self)):
            if index not in self._bad:
                try:
                    self.load(index)
                except SampleError as error:
                    self._reject(index, error)
        return self.skipped
