"""Synthetic UTKFace-style folders with a signal a tiny network learns in seconds:
brightness encodes age, a red/blue tint gender, a stripe or checker pattern race."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

SIZE = 48  # pixels, square like UTKFace's 200x200 crops
PERIODS = {1: ("rows", 16), 2: ("cols", 16), 3: ("checker", 16), 4: ("rows", 6)}  # race 0: flat


def face_image(age: int, gender: int, race: int, rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """(size, size, 3) uint8 RGB. Every pattern is zero-mean, so that only age moves the brightness."""
    image = np.full((size, size, 3), 40.0 + 2.0 * age)
    if race in PERIODS:
        kind, period = PERIODS[race]
        rows, cols = np.mgrid[:size, :size]
        phase = {"rows": rows // (period // 2), "cols": cols // (period // 2),
                 "checker": rows // (period // 2) + cols // (period // 2)}[kind]
        image += np.where(phase % 2 == 0, 30.0, -30.0)[..., None]
    tint = 45.0 if gender == 1 else -45.0
    image[..., 0] += tint
    image[..., 2] -= tint
    image += rng.normal(0.0, 8.0, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_face(folder: Path, name: str, image: np.ndarray) -> Path:
    path = folder / name
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    path.write_bytes(data.tobytes())
    return path


def make_faces(folder: Path, count: int, seed: int = 0) -> list[tuple[int, int, int]]:
    """``count`` faces named like UTKFace's crops, all races and genders equally often;
    returns their (age, gender, race) labels."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = []
    for i in range(count):
        age, gender, race = int(rng.integers(1, 81)), i % 2, (i // 2) % 5
        write_face(folder, f"{age}_{gender}_{race}_2017011{seed}{i:06d}.jpg.chip.jpg",
                   face_image(age, gender, race, rng))
        labels.append((age, gender, race))
    return labels


# names the published set has, or could have, that do not parse
MALFORMED_NAMES = (
    "39_1_20170116174525125.jpg.chip.jpg",     # race missing (three fields)
    "61_x_0_20170109150557335.jpg.chip.jpg",   # gender not an integer
    "25_0_7_20170116174525125.jpg.chip.jpg",   # race 7 out of range
    "200_0_1_20170116174525125.jpg.chip.jpg",  # age 200 out of range
    "face.jpg",                                # not a UTKFace name at all
)
