"""Channel orders, palettes, depth colour maps and overlay blending, as torch ops on any device.

Colour maps are OpenCV's (turbo, jet, viridis ...), sampled once into a
256-entry lookup table so that colouring is a single gather on the GPU.
Camera frames arrive in several channel orders (BGR from most drivers and from
OpenCV, RGBA, mono); the predictor uploads them as they are and ``to_rgb`` turns
them into RGB on the device, so no host pass over the frame precedes the upload.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

COLORMAPS = ("turbo", "jet", "viridis", "inferno", "magma", "plasma", "bone", "gray")
# channel order of an input frame -> its channel count (``mono`` may also come without a channel axis)
CHANNEL_ORDERS = {"rgb": 3, "bgr": 3, "rgba": 4, "bgra": 4, "mono": 1}


def to_rgb(images: torch.Tensor, channels: str) -> torch.Tensor:
    """(..., H, W, C) uint8 in ``channels`` order -> (..., H, W, 3) RGB: a view for
    rgb, rgba and mono; one gather for bgr and bgra."""
    if channels == "rgb":
        return images
    if channels == "rgba":
        return images[..., :3]
    if channels in ("bgr", "bgra"):
        return images[..., :3].flip(-1)
    if channels == "mono":
        return images.expand(*images.shape[:-1], 3)
    raise ValueError(f"unknown channel order {channels!r}; choose one of {', '.join(CHANNEL_ORDERS)}")


def colormap_lut(name: str) -> np.ndarray:
    """(256, 3) uint8 RGB lookup table of an OpenCV colour map."""
    import cv2

    if name not in COLORMAPS:
        raise ValueError(f"unknown colour map {name!r}; choose one of {', '.join(COLORMAPS)}")
    ramp = np.arange(256, dtype=np.uint8).reshape(256, 1)
    if name == "gray":
        return np.repeat(ramp, 3, axis=1)
    bgr = cv2.applyColorMap(ramp, getattr(cv2, f"COLORMAP_{name.upper()}"))
    return np.ascontiguousarray(bgr[:, 0, ::-1])


def palette_lut(palette: Sequence[Sequence[int]], unlabeled: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """(256, 3) uint8 table: class k -> palette[k], every other id (255 = unlabeled) -> ``unlabeled``."""
    if len(palette) > 255:
        raise ValueError(f"at most 255 classes can be coloured, got {len(palette)}")
    lut = np.tile(np.asarray(unlabeled, dtype=np.uint8), (256, 1))
    lut[: len(palette)] = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    return lut


def colorize_depth(depth: torch.Tensor, lut: torch.Tensor, depth_range: tuple[float, float]) -> torch.Tensor:
    """(..., H, W) metres -> (..., H, W, 3) uint8; near is the low end of the map.
    Non-finite depths take the low end too, rather than poisoning the image."""
    lo, hi = depth_range
    scaled = ((depth - lo) / (hi - lo)).clamp(0.0, 1.0).nan_to_num(0.0) * 255.0
    return lut[scaled.round().long()]


def blend(image: torch.Tensor, colours: torch.Tensor, alpha: float) -> torch.Tensor:
    """uint8 (..., 3) image and colours -> uint8 blend, ``alpha`` weighting the colours."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay alpha must be in [0, 1], got {alpha}")
    mixed = image.float() * (1.0 - alpha) + colours.float() * alpha
    return mixed.round().clamp(0, 255).to(torch.uint8)
