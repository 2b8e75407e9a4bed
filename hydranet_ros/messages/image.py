"""sensor_msgs/Image and CompressedImage -> numpy, through the ROS image libraries.

The node and the replay tool both decode here (``decode_frame``), so on one machine
they see the same pixels. A frame keeps the channel order it arrived in: the
predictor turns bgr, rgba, bgra and mono into RGB on the device, after the upload,
so an 8-bit frame in one of those orders is not touched on the host at all (its
pixels are a view of the message's data) and a JPEG or PNG stays OpenCV's BGR.
Every other encoding (16-bit, Bayer, YUV) is converted to rgb8 by a converter:
cv_bridge where ROS 2 is installed, else rosbags-image, cv_bridge's ROS-free twin;
this module owns that choice, and ``test_messages_image`` checks that the two
converters agree wherever both are installed.

What stays here is what neither library does: checking a frame before any pixel
is touched (supported encoding, size, pixel limit, step and data length, even
width for YUV 4:2:2), so that a bad frame is a one-line ``ImageDecodeError``
and not an exception from deep inside OpenCV; and reading the size of a JPEG or
PNG from its header so that the pixel limit holds before decoding. The module runs
past 300 lines because these checks, the converters and the decodings that rely on
them are one decision: how a camera message becomes pixels.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .compressed_size import HeaderError, compressed_size

# encoding -> (bytes per channel, channels) of the camera encodings a frame may arrive in
COLOUR_ENCODINGS: dict[str, tuple[int, int]] = {
    "rgb8": (1, 3), "bgr8": (1, 3), "rgba8": (1, 4), "bgra8": (1, 4), "mono8": (1, 1),
    "rgb16": (2, 3), "bgr16": (2, 3), "rgba16": (2, 4), "bgra16": (2, 4), "mono16": (2, 1),
    "yuv422": (1, 2), "yuv422_yuy2": (1, 2),
    **{f"bayer_{order}{bits}": (bits // 8, 1) for order in ("rggb", "bggr", "gbrg", "grbg") for bits in (8, 16)},
}
# other names sensor_msgs gives the same layouts; single-channel generic types are grey images
ALIASES = {"uyvy": "yuv422", "yuyv": "yuv422_yuy2", "8UC1": "mono8", "16UC1": "mono16"}
INPUT_ENCODINGS = tuple(COLOUR_ENCODINGS) + tuple(ALIASES)
# 8-bit encodings whose bytes are already the frame in a channel order the predictor takes
# (inference.colour.CHANNEL_ORDERS): passed on as they are, converted on the device
AS_ARRIVED = {"rgb8": "rgb", "bgr8": "bgr", "rgba8": "rgba", "bgra8": "bgra", "mono8": "mono"}
ORDER_ENCODINGS = {order: encoding for encoding, order in AS_ARRIVED.items()}
# OpenCV's conversion of each order to RGB, for the callers that need RGB on the host
_TO_RGB_CODES = {"bgr": "COLOR_BGR2RGB", "rgba": "COLOR_RGBA2RGB", "bgra": "COLOR_BGRA2RGB", "mono": "COLOR_GRAY2RGB"}
# 4K UHD: large enough for any camera we expect, small enough to catch garbage headers;
# the node's max_input_pixels and replay's --max-input-pixels
DEFAULT_MAX_INPUT_PIXELS = 3840 * 2160
_YUV422 = ("yuv422", "yuv422_yuy2")
# OpenCV's generic types (32FC1 depth, 16UC1 ...): decoded as they are, for ground truth
_GENERIC = re.compile(r"(8U|8S|16U|16S|32S|32F|64F)C([1-4])")
_GENERIC_SIZES = {"8U": 1, "8S": 1, "16U": 2, "16S": 2, "32S": 4, "32F": 4, "64F": 8}


class ImageDecodeError(ValueError):
    """A frame that cannot be decoded; the message says why."""


@dataclass(frozen=True)
class DecodedFrame:
    """A camera frame as the predictor takes it: uint8 (H, W, C) ``pixels`` in the
    channel order ``channels`` (rgb, bgr, rgba, bgra or mono, C = 3, 3, 4, 4, 1).
    The pixels may be a view of the message's data, rows strided when the message
    pads them: read them before the message is reused, and never write to them."""

    pixels: np.ndarray
    channels: str

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.pixels.shape[1], self.pixels.shape[0]

    @property
    def encoding(self) -> str:
        """The sensor_msgs/Image encoding that carries these pixels as they are."""
        return ORDER_ENCODINGS[self.channels]

    def to_rgb(self) -> np.ndarray:
        """(H, W, 3) RGB on the host, for callers that need RGB there (a teacher network,
        a ground-truth tool): the pixels themselves when they are RGB, else one converted copy."""
        if self.channels == "rgb":
            return self.pixels
        import cv2

        return cv2.cvtColor(self.pixels, getattr(cv2, _TO_RGB_CODES[self.channels]))


@dataclass(frozen=True)
class ImageFields:
    """The plain fields of a sensor_msgs/Image, for the converters: the canonical encoding
    and, for rosbags-image (which ignores ``step``), tightly packed rows."""

    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: Any


def pixel_layout(encoding: str) -> tuple[int, int]:
    """(bytes per channel, channels) of ``encoding``; ImageDecodeError if unsupported."""
    canonical = ALIASES.get(encoding, encoding)
    if canonical in COLOUR_ENCODINGS:
        return COLOUR_ENCODINGS[canonical]
    match = _GENERIC.fullmatch(encoding)
    if match:
        return _GENERIC_SIZES[match.group(1)], int(match.group(2))
    raise ImageDecodeError(f"unsupported encoding {encoding!r}; supported: {', '.join(INPUT_ENCODINGS)}")


def check_pixels(width: int, height: int, max_pixels: int | None) -> None:
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"empty image: {width}x{height}")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageDecodeError(f"image {width}x{height} exceeds the limit of {max_pixels} pixels")


def data_bytes(data: Any) -> np.ndarray:
    """A message's data field (bytes, array.array, numpy) as a flat uint8 view, no copy."""
    return data.view(np.uint8).reshape(-1) if isinstance(data, np.ndarray) else np.frombuffer(data, np.uint8)


def checked_fields(msg: Any, max_pixels: int | None = None, colour: bool = True) -> ImageFields:
    """The message's fields after every check that needs no pixel; ``colour`` limits the
    encodings to camera ones (generic types such as 32FC1 are for ground truth)."""
    if colour and ALIASES.get(msg.encoding, msg.encoding) not in COLOUR_ENCODINGS:
        raise ImageDecodeError(f"unsupported encoding {msg.encoding!r}; supported: {', '.join(INPUT_ENCODINGS)}")
    channel_bytes, channels = pixel_layout(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    check_pixels(width, height, max_pixels)
    encoding = ALIASES.get(msg.encoding, msg.encoding) if colour else msg.encoding
    if encoding in _YUV422 and width % 2:
        raise ImageDecodeError(f"{msg.encoding} packs two pixels in four bytes and needs an even width, got {width}")
    row_bytes = width * channels * channel_bytes
    if step < row_bytes:
        raise ImageDecodeError(f"step {step} is smaller than width x pixel size = {row_bytes} for {msg.encoding}")
    data = data_bytes(msg.data)
    if data.size < step * height:
        raise ImageDecodeError(f"data has {data.size} bytes, expected step x height = {step * height}")
    return ImageFields(height, width, encoding, int(msg.is_bigendian), step, data)


# ---------------------------------------------------------------- the two converters

def _rows(fields: ImageFields) -> np.ndarray:
    """The pixel bytes as a (height, row bytes) view of the data, each row's padding left out."""
    channel_bytes, channels = pixel_layout(fields.encoding)
    rows = fields.data[: fields.step * fields.height].reshape(fields.height, fields.step)
    return rows[:, : fields.width * channels * channel_bytes]


def _packed(fields: ImageFields) -> ImageFields:
    """rosbags-image reads rows as tightly packed: drop each row's padding first."""
    rows = _rows(fields)
    if fields.step == rows.shape[1] and fields.data.size == rows.size:
        return fields
    return ImageFields(fields.height, fields.width, fields.encoding, fields.is_bigendian, rows.shape[1],
                       np.ascontiguousarray(rows).reshape(-1))


def _rosbags_rgb8(fields: ImageFields) -> np.ndarray:
    import cv2
    from rosbags.image import image_to_cvimage

    if pixel_layout(fields.encoding)[0] == 1:
        return image_to_cvimage(_packed(fields), "rgb8")
    # 16 -> 8 bits: cv_bridge scales by 255/65535 with OpenCV's rounding (convertTo) where
    # rosbags-image truncates; converting at 16 bits and scaling with OpenCV keeps the two equal
    rgb16 = image_to_cvimage(_packed(fields), "rgb16")
    return cv2.convertScaleAbs(rgb16, alpha=255.0 / 65535.0)


def _rosbags_passthrough(fields: ImageFields) -> np.ndarray:
    from rosbags.image import image_to_cvimage

    return image_to_cvimage(_packed(fields))


def _cv_bridge_rgb8(fields: ImageFields) -> np.ndarray:
    return _bridge().imgmsg_to_cv2(fields, "rgb8")


def _cv_bridge_passthrough(fields: ImageFields) -> np.ndarray:
    return _bridge().imgmsg_to_cv2(fields, "passthrough")


_BRIDGE: Any = None


def _bridge() -> Any:
    global _BRIDGE
    if _BRIDGE is None:
        from cv_bridge import CvBridge

        _BRIDGE = CvBridge()
    return _BRIDGE


@dataclass(frozen=True)
class Converter:
    name: str
    to_rgb8: Callable[[ImageFields], np.ndarray]
    passthrough: Callable[[ImageFields], np.ndarray]


CONVERTERS = {
    "cv_bridge": Converter("cv_bridge", _cv_bridge_rgb8, _cv_bridge_passthrough),
    "rosbags-image": Converter("rosbags-image", _rosbags_rgb8, _rosbags_passthrough),
}


def available_converters() -> list[str]:
    """The converters that import here, cv_bridge first."""
    names = []
    for name, module in (("cv_bridge", "cv_bridge"), ("rosbags-image", "rosbags.image")):
        try:
            __import__(module)
        except ImportError:
            continue
        names.append(name)
    return names


_DEFAULT: Converter | None = None


def default_converter() -> Converter:
    """cv_bridge where ROS 2 is installed, else rosbags-image."""
    global _DEFAULT
    if _DEFAULT is None:
        names = available_converters()
        if not names:
            raise ImportError("neither cv_bridge nor rosbags-image is installed; pip install rosbags-image")
        _DEFAULT = CONVERTERS[names[0]]
    return _DEFAULT


def _convert(convert: Callable[[ImageFields], np.ndarray], fields: ImageFields, what: str) -> np.ndarray:
    try:
        return convert(fields)
    # the libraries raise their own errors (CvBridgeError, ImageError, cv2.error) for layouts
    # that pass the checks above but that they cannot convert; each means one bad frame
    except Exception as error:  # noqa: BLE001
        raise ImageDecodeError(f"{fields.encoding} {fields.width}x{fields.height} could not be {what}: "
                               f"{type(error).__name__}: {error}") from None


# ---------------------------------------------------------------- decoding

def image_to_rgb(msg: Any, max_pixels: int | None = None, converter: Converter | None = None) -> np.ndarray:
    """A sensor_msgs/Image (anything with its fields) -> uint8 (H, W, 3) RGB on the host,
    every encoding through the converter."""
    fields = checked_fields(msg, max_pixels)
    return _convert((converter or default_converter()).to_rgb8, fields, "converted to rgb8")


def image_to_array(msg: Any, converter: Converter | None = None) -> np.ndarray:
    """A sensor_msgs/Image -> array in its own encoding (32FC1 depth, 16UC1, mono8 labels ...)."""
    fields = checked_fields(msg, colour=False)
    return _convert((converter or default_converter()).passthrough, fields, "read")


def image_to_frame(msg: Any, max_pixels: int | None = None) -> DecodedFrame:
    """A sensor_msgs/Image -> its frame: the message's own bytes, viewed in place, for
    rgb8, bgr8, rgba8, bgra8 and mono8 (a reinterpretation needs no converter); RGB
    from the converter for every other encoding."""
    fields = checked_fields(msg, max_pixels)
    order = AS_ARRIVED.get(fields.encoding)
    if order is None:
        return DecodedFrame(_convert(default_converter().to_rgb8, fields, "converted to rgb8"), "rgb")
    # splitting each row into pixels and channels keeps the view: no copy, padded rows included
    return DecodedFrame(_rows(fields).reshape(fields.height, fields.width, -1), order)


def compressed_to_frame(data: Any, max_pixels: int | None = None) -> DecodedFrame:
    """CompressedImage data (JPEG or PNG) -> its frame in OpenCV's BGR, the size checked from the header first.

    Decoded with OpenCV's imdecode, as both libraries do, but always to three channels:
    their wrappers hand a grey JPEG to a BGR conversion and fail on it."""
    import cv2

    buffer = data_bytes(data)
    if buffer.size == 0:
        raise ImageDecodeError("compressed image has no data")
    try:
        width, height = compressed_size(buffer)
    except HeaderError as error:
        raise ImageDecodeError(f"compressed image ({buffer.size} bytes) could not be decoded: {error}") from None
    check_pixels(width, height, max_pixels)
    try:
        image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    except cv2.error as error:
        raise ImageDecodeError(f"compressed image ({buffer.size} bytes) could not be decoded: {error}") from None
    if image is None:
        raise ImageDecodeError(f"compressed image ({buffer.size} bytes) could not be decoded")
    return DecodedFrame(image, "bgr")


def decode_frame(msg: Any, transport: str, max_pixels: int | None) -> DecodedFrame:
    """The node's and replay's input (Image for ``raw``, CompressedImage for ``compressed``)
    -> its frame in the order it arrived in. Raises ``ImageDecodeError`` naming the problem."""
    if transport == "compressed":
        return compressed_to_frame(msg.data, max_pixels)
    return image_to_frame(msg, max_pixels)


# ---------------------------------------------------------------- arrays -> fields

def image_fields(array: np.ndarray, encoding: str) -> ImageFields:
    """An output array -> Image fields; ``data`` is the array itself (C-contiguous, native
    byte order), so that each message type can take its bytes with at most one copy."""
    channel_bytes, channels = pixel_layout(encoding)
    match = _GENERIC.fullmatch(encoding)
    kind = {"U": "u", "S": "i", "F": "f"}[match.group(1)[-1]] if match else "u"
    if (array.dtype.kind, array.dtype.itemsize) != (kind, channel_bytes):
        raise ValueError(f"{encoding} needs {kind}{channel_bytes * 8} channels, got an array of {array.dtype}")
    if (1 if array.ndim == 2 else array.shape[2]) != channels or array.ndim not in (2, 3):
        raise ValueError(f"{encoding} needs {channels} channel(s), got an array of shape {array.shape}")
    array = np.ascontiguousarray(array)
    height, width = array.shape[:2]
    big_endian = array.dtype.byteorder == ">" or (array.dtype.byteorder == "=" and sys.byteorder == "big")
    return ImageFields(height=height, width=width, encoding=encoding, is_bigendian=int(big_endian and channel_bytes > 1),
                       step=width * channels * channel_bytes, data=array)

