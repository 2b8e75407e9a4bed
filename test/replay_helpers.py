"""Small bags, videos and image folders for the replay and bagio tests."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
from rosbags.highlevel import AnyReader, AnyReaderError

from hydranet_ros.messages.stamps import Header
from hydranet_ros.offline.bagio import BagWriter, camera_info_message, compressed_message, image_message

WIDTH, HEIGHT = 64, 48
START_NS = 1_600_000_000_000_000_000
PERIOD_NS = 100_000_000
FRAME_ID = "cam_optical"
K = np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]])


def make_images(count: int, seed: int = 0, width: int = WIDTH, height: int = HEIGHT) -> list[np.ndarray]:
    """Smooth random RGB images (JPEG of pure noise would be a poor stand-in for a camera)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(count, 6, 8, 3), dtype=np.uint8)
    return [cv2.resize(s, (width, height), interpolation=cv2.INTER_LINEAR) for s in small]


def camera_message(ts: Any, image: np.ndarray, encoding: str, header: Header) -> Any:
    """``image`` (RGB) in a camera's encoding: rgb8, bgr8, mono8 or jpeg/png (CompressedImage)."""
    if encoding in ("jpeg", "png"):
        return compressed_message(ts, image, header, fmt=encoding)
    if encoding == "bgr8":
        return image_message(ts, np.ascontiguousarray(image[:, :, ::-1]), "bgr8", header)
    if encoding == "mono8":
        return image_message(ts, np.ascontiguousarray(image[:, :, 1]), "mono8", header)
    return image_message(ts, image, encoding, header)


def write_camera_bag(path: Path, images: list[np.ndarray], encoding: str = "rgb8", storage: str = "sqlite3",
                     topic: str | None = None, camera_info: bool = True, corrupt: set[int] = frozenset(),
                     extra: Callable[[BagWriter, int, Header, int], None] | None = None) -> list[Header]:
    """A camera recording; frame i has stamp START_NS + i * PERIOD_NS and is logged 1 ms later.
    ``corrupt`` frames are written as garbage bytes; ``extra(bag, i, header, log_time)`` adds messages."""
    topic = topic or ("/camera/image_raw/compressed" if encoding in ("jpeg", "png") else "/camera/image_raw")
    headers = []
    with BagWriter(path, storage=storage) as bag:
        for i, image in enumerate(images):
            header = Header(START_NS + i * PERIOD_NS, FRAME_ID)
            log_time = header.stamp_ns + 1_000_000
            msg = camera_message(bag.typestore, image, encoding, header)
            if i in corrupt:
                bag.write_serialized(topic, msg.__msgtype__, b"\x00\x01\x00\x00\xff\xff\xff\x7fgarbage", log_time)
            else:
                bag.write(topic, msg, log_time)
            if camera_info:
                bag.write("/camera/camera_info", camera_info_message(bag.typestore, header, WIDTH, HEIGHT, K),
                          log_time + 10)
            if extra is not None:
                extra(bag, i, header, log_time)
            headers.append(header)
    return headers


def read_bag(path: Path) -> dict[str, list[tuple[int, Any]]]:
    """topic -> [(log time, message, or None when it cannot be deserialised)] in log order."""
    result: dict[str, list[tuple[int, Any]]] = {}
    with AnyReader([path]) as reader:
        for connection, log_time, raw in reader.messages():
            try:
                msg = reader.deserialize(raw, connection.msgtype)
            except AnyReaderError:
                msg = None
            result.setdefault(connection.topic, []).append((log_time, msg))
    return result


def write_video(path: Path, images: list[np.ndarray], fps: float = 10.0) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (images[0].shape[1],
                                                                               images[0].shape[0]))
    assert writer.isOpened()
    for image in images:
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()


def count_video_frames(path: Path) -> tuple[int, int, int]:
    """(frames, width, height) as OpenCV reads them back."""
    capture = cv2.VideoCapture(str(path))
    count, size = 0, (0, 0)
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        count, size = count + 1, (frame.shape[1], frame.shape[0])
    capture.release()
    return count, *size
