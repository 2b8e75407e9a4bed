"""Reading and writing image, depth and label files: datasets, replay's folders, the face
tool, segeval's labels and the benchmark's chart all use these.

Every read failure is an ``ImageFileError`` naming the file; every write is atomic."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from .atomic import atomic_write

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ImageFileError(ValueError):
    """A file that cannot be used (unreadable, wrong kind of image, sizes that disagree);
    ``source`` is the file."""

    def __init__(self, source: object, reason: str) -> None:
        self.source = str(source)
        super().__init__(f"{source}: {reason}")


def is_image_file(path: Path) -> bool:
    """An image file by its suffix; hidden files (editor and OS droppings) are not."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file()


def image_files(directory: Path, recursive: bool = True) -> list[Path]:
    """The image files in (or anywhere below) ``directory``, sorted."""
    paths = Path(directory).rglob("*") if recursive else Path(directory).iterdir()
    return sorted(p for p in paths if is_image_file(p))


def _imread(path: Path, flags: int) -> np.ndarray:
    if not path.is_file():
        raise ImageFileError(path, "file not found")
    # imdecode from bytes: cv2.imread cannot open non-ASCII paths on every platform
    data = np.fromfile(str(path), dtype=np.uint8)
    if data.size == 0:  # imdecode asserts on an empty buffer instead of returning None
        raise ImageFileError(path, "empty file (0 bytes)")
    try:
        array = cv2.imdecode(data, flags)
    except cv2.error as error:
        raise ImageFileError(path, f"not a readable image ({error})") from None
    if array is None or array.size == 0:
        raise ImageFileError(path, "not a readable image (corrupt or unsupported format)")
    return array


def read_bgr(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 BGR, OpenCV's own order; grey images are expanded and 16-bit ones reduced to 8 bits."""
    return _imread(path, cv2.IMREAD_COLOR)  # always 3-channel 8-bit BGR


def read_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; grey images are expanded and 16-bit ones reduced to 8 bits."""
    return cv2.cvtColor(read_bgr(path), cv2.COLOR_BGR2RGB)


def resize_rgb(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> (height, width, 3); area averaging when shrinking (no aliasing)."""
    if tuple(image.shape[:2]) == tuple(size):
        return image
    shrink = image.shape[0] >= size[0] and image.shape[1] >= size[1]
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def read_uint16(path: Path) -> np.ndarray:
    """A single-channel 16-bit image (depth and disparity maps), undecoded."""
    array = _imread(path, cv2.IMREAD_UNCHANGED)
    if array.ndim != 2 or array.dtype != np.uint16:
        raise ImageFileError(path, f"expected a single-channel 16-bit image, got {array.dtype} with shape {array.shape}")
    return array


def read_label_ids(path: Path) -> np.ndarray:
    """A single-channel 8-bit image of class ids (colour-coded label images are rejected)."""
    array = _imread(path, cv2.IMREAD_UNCHANGED)
    if array.ndim != 2 or array.dtype != np.uint8:
        raise ImageFileError(path, f"expected a single-channel 8-bit id image, got {array.dtype} "
                          f"with shape {array.shape} (colour-coded labels are not supported)")
    return array


def read_scaled_depth_png(path: Path, scale: float) -> np.ndarray:
    """Metric depth from a 16-bit PNG storing depth / scale (0 stays 0 = invalid)."""
    return read_uint16(path).astype(np.float32) * np.float32(scale)


def read_depth_file(path: Path, png_scale: float) -> np.ndarray:
    """Metric depth from .png (uint16 x png_scale), .npy (float metres) or .tif/.tiff
    (float metres, or integers x png_scale)."""
    suffix = path.suffix.lower()
    if suffix == ".png":
        return read_scaled_depth_png(path, png_scale)
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise ImageFileError(path, f"not a readable .npy array ({error})") from None
        array = np.squeeze(array)
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
            raise ImageFileError(path, f"expected a 2-D numeric depth array, got {array.dtype} {array.shape}")
        return array.astype(np.float32)
    if suffix in (".tif", ".tiff"):
        array = _imread(path, cv2.IMREAD_UNCHANGED)
        if array.ndim != 2:
            raise ImageFileError(path, f"expected a single-channel depth image, got shape {array.shape}")
        if np.issubdtype(array.dtype, np.floating):
            return array.astype(np.float32)
        return array.astype(np.float32) * np.float32(png_scale)
    raise ImageFileError(path, f"unsupported depth format {suffix!r} (use .png, .npy or .tiff)")


def write_image(path: Path, image: np.ndarray, params: tuple[int, ...] = ()) -> None:
    """Encode ``image`` (as OpenCV takes it: BGR, grey or 16-bit) by the file's suffix and write
    it atomically; ``params`` are OpenCV's (e.g. ``(cv2.IMWRITE_JPEG_QUALITY, 95)``). Encoding
    happens in memory first: the temporary file's name has no suffix for OpenCV to go by."""
    try:
        ok, encoded = cv2.imencode(path.suffix, image, list(params))
    except cv2.error as error:   # no encoder for the suffix, or an image it cannot take
        raise OSError(f"could not encode {path.name}: {error.err}") from None
    if not ok:
        raise OSError(f"could not encode {path.name}")
    atomic_write(path, lambda tmp: tmp.write_bytes(encoded.tobytes()))


def image_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 array -> the contract's (3, H, W) uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
