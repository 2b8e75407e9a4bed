"""The one sample dict every dataset returns, and the checks that guard it.

Contract (what training codes against):
    image       uint8 (3, H, W) RGB
    depth       float32 (H, W) metres, 0 where invalid or absent
    labels      int64 (H, W) class ids, IGNORE_INDEX where unlabelled or absent
    has_depth   bool 0-dim: the sample carries depth
    has_labels  bool 0-dim: the sample carries labels
    name        str, file stem or synthetic id

Face-attribute datasets (``utkface``) return image and name as above, plus
``age`` float32, ``gender`` float32 (0 male, 1 female) and ``race`` int64, all 0-dim.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from ...common.image_files import ImageFileError, image_tensor

IGNORE_INDEX = 255
INVALID_DEPTH = 0.0

Sample = dict[str, Any]
Transform = Callable[[Sample], Sample]


# a sample is unusable for the same reasons a file is: one error type for both
SampleError = ImageFileError


def check_same_size(array: np.ndarray, image_hw: tuple[int, int], what: str, source: object) -> None:
    """Raise SampleError unless ``array`` covers exactly the image's pixels."""
    if tuple(array.shape[:2]) != tuple(image_hw):
        raise SampleError(source, f"{what} is {array.shape[1]}x{array.shape[0]} "
                          f"but the image is {image_hw[1]}x{image_hw[0]}")




def make_sample(image: np.ndarray, depth: np.ndarray | None, labels: np.ndarray | None, name: str) -> Sample:
    """Numpy arrays -> the contract's tensors; a missing annotation becomes its 'absent' fill."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise SampleError(name, f"expected an (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}")
    hw = image.shape[:2]
    if depth is not None:
        check_same_size(depth, hw, "depth", name)
        # non-finite or negative depth is as good as no measurement
        depth = np.where(np.isfinite(depth) & (depth > 0), depth, INVALID_DEPTH).astype(np.float32, copy=False)
    if labels is not None:
        check_same_size(labels, hw, "labels", name)
    return {
        "image": image_tensor(image),
        "depth": (torch.from_numpy(np.ascontiguousarray(depth)) if depth is not None
                  else torch.full(hw, INVALID_DEPTH, dtype=torch.float32)),
        "labels": (torch.from_numpy(labels.astype(np.int64)) if labels is not None
                   else torch.full(hw, IGNORE_INDEX, dtype=torch.int64)),
        "has_depth": torch.tensor(depth is not None),
        "has_labels": torch.tensor(labels is not None),
        "name": name,
    }
