"""UTKFace (Zhang, Song & Qi, CVPR 2017): face crops labelled by their file names,

    <age>_<gender>_<race>_<date&time>.jpg.chip.jpg     (the aligned & cropped set)
    <age>_<gender>_<race>_<date&time>.jpg              (the in-the-wild parts)

with age in years, gender 0 male / 1 female and race 0 White, 1 Black, 2 Asian,
3 Indian, 4 Other. Images are found anywhere below the root. A name that does not
parse (the published set has a few: a missing field, a non-integer, a value out of
range) is skipped with a warning naming the file and counted in ``skipped``; so is
an image that cannot be decoded (``FileDataset``'s rule). UTKFace has no official
split: ``train`` and ``val`` are a seeded, deterministic, disjoint split of the
parsed files (``all`` is every one of them).

A sample: ``image`` uint8 (3, H, W) resized to ``image_size``, ``age`` float32,
``gender`` float32 (0/1), ``race`` int64, ``name`` (the file name).
"""
from __future__ import annotations

import hashlib
import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ...common.image_files import image_files, image_tensor, read_rgb, resize_rgb
from ...model.faces import GENDER_NAMES
from .file_dataset import FileDataset, SampleFiles, require_dir
from .sample import Sample, SampleError, Transform
from .transforms import ColourJitter, Compose, RandomHorizontalFlip, check_size

RACE_NAMES = ("White", "Black", "Asian", "Indian", "Other")
MAX_AGE = 120  # UTKFace spans 0..116 years
SPLITS = ("train", "val", "all")
WARN_AT_MOST = 10  # malformed names warned one by one; beyond this, one summary line

log = logging.getLogger(__name__)
_INTEGER = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class FaceLabels:
    age: int
    gender: int
    race: int


def parse_name(name: str) -> FaceLabels:
    """``"26_1_3_20170119180540611.jpg.chip.jpg"`` -> FaceLabels(26, 1, 3); a ValueError
    saying what is wrong for any other name."""
    fields = name.split(".", 1)[0].split("_")
    if len(fields) != 4 or not fields[3]:
        raise ValueError(f"expected age_gender_race_date, found {len(fields)} field(s)")
    if not all(_INTEGER.fullmatch(f) for f in fields[:3]):
        raise ValueError(f"age, gender and race must be non-negative integers, got {'_'.join(fields[:3])!r}")
    age, gender, race = (int(f) for f in fields[:3])
    if age > MAX_AGE:
        raise ValueError(f"age {age} is over {MAX_AGE}")
    if gender >= len(GENDER_NAMES):
        raise ValueError(f"gender {gender} is not 0 (male) or 1 (female)")
    if race >= len(RACE_NAMES):
        raise ValueError(f"race {race} is outside 0..{len(RACE_NAMES) - 1}")
    return FaceLabels(age, gender, race)


def split_files(files: Sequence[SampleFiles], split: str, val_fraction: float, seed: int) -> list[SampleFiles]:
    """The ``split`` part of ``files``: ranked by a hash of (seed, name), the first
    round(val_fraction * n) are ``val`` and the rest ``train``. The hash, unlike a
    library RNG, gives the same split on every machine and version, and adding a file
    moves few others."""
    if split not in SPLITS:
        raise ValueError(f"UTKFace split must be one of {', '.join(SPLITS)}, got {split!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if split == "all":
        return list(files)

    def rank(f: SampleFiles) -> str:
        return hashlib.sha256(f"{seed}:{f.name}".encode()).hexdigest()

    ranked = sorted(files, key=rank)
    n_val = round(val_fraction * len(ranked))
    chosen = ranked[:n_val] if split == "val" else ranked[n_val:]
    return sorted(chosen, key=lambda f: f.name)


def face_train_transforms(hflip: bool = True, colour_jitter: float = 0.0) -> Compose:
    """Augmentation that keeps a face's attributes: mirror, colour jitter."""
    steps: list[Transform] = [RandomHorizontalFlip()] if hflip else []
    if colour_jitter:
        steps.append(ColourJitter(colour_jitter))
    return Compose(steps)


class UTKFaceDataset(FileDataset):
    def __init__(self, root: str | Path, split: str | None = "train", *, transform: Transform | None = None,
                 strict: bool = False, image_size: Sequence[int] = (128, 128), val_fraction: float = 0.1,
                 split_seed: int = 0) -> None:
        base = require_dir(Path(root), "UTKFace folder")
        split = split or "all"
        labelled, malformed = [], []
        for path in image_files(base):
            name = str(path.relative_to(base))
            try:
                labels = parse_name(path.name)
            except ValueError as error:
                if strict:
                    raise SampleError(path, f"not a UTKFace name: {error}") from None
                malformed.append((path, str(error)))
                continue
            labelled.append(SampleFiles(name, path, extra=labels))
        if not labelled:
            raise FileNotFoundError(f"no image under {str(base)!r} has a UTKFace name (age_gender_race_date.jpg); "
                                    f"{len(malformed)} image(s) with other names")
        super().__init__(split_files(labelled, split, val_fraction, split_seed), base, transform=transform,
                         strict=strict)
        self.image_size = check_size(image_size)
        self.split = split
        self.class_names = list(RACE_NAMES)
        self.palette = []  # no label image to colour
        # names that do not parse belong to no split: count them once per run, with the
        # training (or whole) set, so that train + val skipped counts add up
        if split != "val":
            self._report_malformed(malformed)

    def _report_malformed(self, malformed: list[tuple[Path, str]]) -> None:
        for i, (path, reason) in enumerate(malformed):
            self.skipped.append(str(path))
            if i < WARN_AT_MOST:
                message = f"skipping {path}: not a UTKFace name ({reason})"
                warnings.warn(message, RuntimeWarning, stacklevel=3)
                log.warning(message)
        if len(malformed) > WARN_AT_MOST:
            message = f"skipping {len(malformed) - WARN_AT_MOST} more images whose names are not UTKFace names"
            warnings.warn(message, RuntimeWarning, stacklevel=3)
            log.warning(message)

    def load(self, index: int) -> Sample:
        files = self.files[index]
        labels: FaceLabels = files.extra
        return {
            "image": image_tensor(resize_rgb(read_rgb(files.image), self.image_size)),
            "age": torch.tensor(float(labels.age), dtype=torch.float32),
            "gender": torch.tensor(float(labels.gender), dtype=torch.float32),
            "race": torch.tensor(labels.race, dtype=torch.int64),
            "name": files.name,
        }


__all__ = ["FaceLabels", "GENDER_NAMES", "RACE_NAMES", "UTKFaceDataset", "face_train_transforms", "parse_name",
           "split_files"]
