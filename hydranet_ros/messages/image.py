"""sensor_msgs/Image and CompressedImage fields <-> numpy, with no ROS import.

The node and the replay tool both go through here, so a bag written offline
carries exactly the encodings and layouts the live node publishes. Only plain
fields (height, width, encoding, is_bigendian, step, data) cross this boundary.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# encoding -> (numpy dtype, channels)
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3), "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4), "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1), "8UC1": (np.dtype(np.uint8), 1), "8UC3": (np.dtype(np.uint8), 3),
    "rgb16": (np.dtype(np.uint16), 3), "bgr16": (np.dtype(np.uint16), 3),
    "rgba16": (np.dtype(np.uint16), 4), "bgra16": (np.dtype(np.uint16), 4),
    "mono16": (np.dtype(np.uint16), 1), "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
    "yuv422": (np.dtype(np.uint8), 2), "uyvy": (np.dtype(np.uint8), 2),
    "yuv422_yuy2": (np.dtype(np.uint8), 2), "yuyv": (np.dtype(np.uint8), 2),
}
_SIXTEEN_TO_EIGHT = {"rgb16": "rgb8", "bgr16": "bgr8", "rgba16": "rgba8", "bgra16": "bgra8",
                     "mono16": "mono8", "16UC1": "mono8"}
# encodings a camera frame may arrive in (32FC1 is an output, not a camera)
INPUT_ENCODINGS = tuple(e for e in ENCODINGS if e != "32FC1")


class ImageDecodeError(ValueError):
    """A frame that cannot be turned into an RGB image; the message says why."""


@dataclass(frozen=True)
class ImageFields:
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: bytes


def fields_to_array(height: int, width: int, encoding: str, is_bigendian: int, step: int,
                    data: bytes | bytearray | memoryview | np.ndarray, max_pixels: int | None = None) -> np.ndarray:
    """Raw Image fields -> (H, W[, C]) array in the message's own encoding, validated."""
    if encoding not in ENCODINGS:
        raise ImageDecodeError(f"unsupported encoding {encoding!r}; supported: {', '.join(INPUT_ENCODINGS)}")
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f"empty image: {width}x{height}")
    if max_pixels is not None and height * width > max_pixels:
        raise ImageDecodeError(f"image {width}x{height} exceeds the limit of {max_pixels} pixels")
    dtype, channels = ENCODINGS[encoding]
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageDecodeError(f"step {step} is smaller than width x pixel size = {row_bytes} for {encoding}")
    buffer = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8).ravel()
    if buffer.size < step * height:
        raise ImageDecodeError(f"data has {buffer.size} bytes, expected step x height = {step * height}")
    rows = buffer[: step * height].reshape(height, step)[:, :row_bytes]
    array = np.ascontiguousarray(rows).view(dtype.newbyteorder(">" if is_bigendian else "<"))
    array = array.astype(dtype, copy=False).reshape(height, width, channels)
    return array[:, :, 0] if channels == 1 else array


def to_rgb8(array: np.ndarray, encoding: str) -> np.ndarray:
    """An array in ``encoding`` -> uint8 (H, W, 3) RGB, the predictor's input."""
    import cv2

    if encoding in ("rgb8", "8UC3"):
        return np.ascontiguousarray(array)
    if encoding == "bgr8":
        return np.ascontiguousarray(array[:, :, ::-1])
    if encoding == "rgba8":
        return np.ascontiguousarray(array[:, :, :3])
    if encoding == "bgra8":
        return np.ascontiguousarray(array[:, :, 2::-1])
    if encoding in ("mono8", "8UC1"):
        return np.repeat(array[:, :, None], 3, axis=2)
    if encoding in _SIXTEEN_TO_EIGHT:
        # keep the top 8 bits, as cv_bridge does when converting 16-bit images to 8-bit
        return to_rgb8((array >> 8).astype(np.uint8), _SIXTEEN_TO_EIGHT[encoding])
    if encoding in ("yuv422", "uyvy"):
        return cv2.cvtColor(array, cv2.COLOR_YUV2RGB_UYVY)
    if encoding in ("yuv422_yuy2", "yuyv"):
        return cv2.cvtColor(array, cv2.COLOR_YUV2RGB_YUY2)
    raise ImageDecodeError(f"cannot convert encoding {encoding!r} to rgb8")


def decode_image(height: int, width: int, encoding: str, is_bigendian: int, step: int, data,
                 max_pixels: int | None = None) -> np.ndarray:
    """Raw Image fields -> uint8 (H, W, 3) RGB."""
    return to_rgb8(fields_to_array(height, width, encoding, is_bigendian, step, data, max_pixels), encoding)


def decode_compressed(data: bytes | bytearray | memoryview | np.ndarray, max_pixels: int | None = None) -> np.ndarray:
    """CompressedImage data (JPEG, PNG ...) -> uint8 (H, W, 3) RGB."""
    import cv2

    buffer = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8).ravel()
    if buffer.size == 0:
        raise ImageDecodeError("compressed image has no data")
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if image is None:
        raise ImageDecodeError(f"compressed image ({buffer.size} bytes) could not be decoded")
    if max_pixels is not None and image.shape[0] * image.shape[1] > max_pixels:
        raise ImageDecodeError(f"image {image.shape[1]}x{image.shape[0]} exceeds the limit of {max_pixels} pixels")
    return np.ascontiguousarray(image[:, :, ::-1])


def array_to_fields(array: np.ndarray, encoding: str) -> ImageFields:
    """An output array -> Image fields (little-endian, tightly packed rows)."""
    if encoding not in ENCODINGS:
        raise ValueError(f"unsupported output encoding {encoding!r}")
    dtype, channels = ENCODINGS[encoding]
    if array.dtype != dtype:
        raise ValueError(f"{encoding} needs dtype {dtype}, got {array.dtype}")
    shape_channels = 1 if array.ndim == 2 else array.shape[2]
    if shape_channels != channels:
        raise ValueError(f"{encoding} needs {channels} channel(s), got array of shape {array.shape}")
    array = np.ascontiguousarray(array, dtype=dtype.newbyteorder("<"))
    height, width = array.shape[:2]
    return ImageFields(height=height, width=width, encoding=encoding, is_bigendian=0,
                       step=width * channels * dtype.itemsize, data=array.tobytes())


def decode_input(msg: Any, transport: str, max_pixels: int | None) -> np.ndarray:
    """sensor_msgs/Image or CompressedImage (anything with their fields) -> RGB uint8.
    Raises ``ImageDecodeError`` naming the problem."""
    if transport == "compressed":
        return decode_compressed(msg.data, max_pixels=max_pixels)
    return decode_image(msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step, msg.data,
                        max_pixels=max_pixels)
