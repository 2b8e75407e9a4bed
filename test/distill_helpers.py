"""A tiny teacher the tests build (an ONNX network scoring pixels by colour) and frames for it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hydranet_ros.model.presets import KITTI6

OURS = list(KITTI6.class_names)  # sky, building, road, sidewalk, vegetation, car
TEACHER_CLASSES = ["red thing", "green thing", "blue thing"]
CLASS_MAP = {"red thing": "car", "green thing": "vegetation", "blue thing": "sky"}


class ColourTeacher(nn.Module):
    """Scores each pixel by its dominant colour channel, at stride 2 (as real networks are)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.avg_pool2d(x * 8.0, 2)


def export(module: nn.Module, path: Path, shape: tuple[int, ...], dynamic: bool = True,
           dtype: torch.dtype = torch.float32) -> Path:
    pytest.importorskip("onnx", reason="exporting the test's teacher needs onnx")
    axes = {"image": {2: "height", 3: "width"}, "scores": {2: "h", 3: "w"}} if dynamic else None
    torch.onnx.export(module, torch.zeros(shape, dtype=dtype), str(path), input_names=["image"],
                      output_names=["scores"], dynamic_axes=axes, dynamo=False)
    return path


def colour_teacher(folder: Path) -> Path:
    """``folder/colour_teacher.onnx`` (dynamic input size), or a skip without onnx/onnxruntime."""
    pytest.importorskip("onnxruntime", reason="running an .onnx teacher needs onnxruntime")
    return export(ColourTeacher(), folder / "colour_teacher.onnx", (1, 3, 32, 32))


def colour_frames(folder: Path, count: int = 6, size: tuple[int, int] = (48, 64)) -> Path:
    """Frames of red, green and blue rectangles on each other, at random places."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    colours = np.array([(220, 30, 30), (30, 200, 40), (40, 50, 230)], np.uint8)
    for i in range(count):
        image = np.empty((*size, 3), np.uint8)
        image[:] = colours[rng.integers(3)]
        for _ in range(4):
            y, x = rng.integers(0, size[0] - 12), rng.integers(0, size[1] - 12)
            h, w = rng.integers(10, size[0] // 2), rng.integers(10, size[1] // 2)
            image[y:y + h, x:x + w] = colours[rng.integers(3)]
        cv2.imwrite(str(folder / f"frame_{i:03d}.png"), image[:, :, ::-1])
    return folder
