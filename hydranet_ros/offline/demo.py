"""The demo's input: a synthetic street-scene camera sequence written as a rosbag2.

The bag looks like a recording from a real camera driver (JPEG
CompressedImage or raw Image, plus CameraInfo) and also carries the
renderer's exact depth and labels as ground-truth topics, so replaying it
evaluates the model as well as showing it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol

import numpy as np

from ..messages.stamps import Header
from ..messages.topics import COMPRESSED_TYPE
from .bagio import BagWriter, camera_info_message, compressed_message, image_message
from .sources import frame_stamp_ns, synthetic_msgtype

FRAME_ID = "camera_optical_frame"
# a fixed start keeps demo bags byte-for-byte reproducible (2023-11-14T22:13:20Z)
START_NS = 1_700_000_000 * 1_000_000_000


@dataclass(frozen=True)
class DemoTopics:
    image: str = "/camera/image_raw/compressed"
    camera_info: str = "/camera/camera_info"
    gt_depth: str = "/camera/ground_truth/depth"
    gt_labels: str = "/camera/ground_truth/labels"

    @classmethod
    def for_transport(cls, compressed: bool) -> "DemoTopics":
        return cls() if compressed else cls(image="/camera/image_raw")


class CameraFrame(Protocol):
    """What ``render_sequence`` yields (``data.synthetic.SyntheticFrame``)."""

    image: np.ndarray   # (H, W, 3) uint8 RGB
    depth: np.ndarray   # (H, W) float32 metres
    labels: np.ndarray  # (H, W) uint8 class ids
    K: np.ndarray       # (3, 3) intrinsics


def write_camera_bag(path: Path, frames: Iterable[CameraFrame], topics: DemoTopics, fps: float = 10.0,
                     storage: str = "sqlite3", distro: str = "humble", start_ns: int = START_NS) -> int:
    """Write ``frames`` as a camera recording with ground truth; returns the number of frames.

    Ground truth is logged just after its image with the same header stamp, as
    a simulator or a labelled dataset player would publish it."""
    count = 0
    with BagWriter(path, storage=storage, distro=distro) as bag:
        ts = bag.typestore
        for index, frame in enumerate(frames):
            stamp = frame_stamp_ns(start_ns, index, fps)
            header = Header(stamp, FRAME_ID)
            height, width = frame.image.shape[:2]
            image = (compressed_message(ts, frame.image, header) if synthetic_msgtype(topics.image) == COMPRESSED_TYPE
                     else image_message(ts, frame.image, "rgb8", header))
            bag.write(topics.image, image, stamp)
            bag.write(topics.camera_info, camera_info_message(ts, header, width, height, frame.K), stamp)
            bag.write(topics.gt_depth, image_message(ts, frame.depth.astype(np.float32), "32FC1", header), stamp + 1)
            bag.write(topics.gt_labels, image_message(ts, frame.labels.astype(np.uint8), "mono8", header), stamp + 1)
            count += 1
    return count


def render_demo_frames(num_frames: int, width: int, height: int, seed: int) -> Iterable[CameraFrame]:
    from ..synthetic.camera import render_sequence

    return render_sequence(num_frames=num_frames, width=width, height=height, seed=seed)
