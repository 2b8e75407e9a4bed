"""Procedural street scenes with exact depth and labels: a dataset that needs no
download (tests, smoke training) and camera sequences for the replay tool and node.

Camera: pinhole, OpenCV axes (x right, y down, z forward), at car height looking
along the road; ``pose`` is world_from_camera in the world frame of
``street_scene`` (x right, y up, z along the road, ground y = 0). Depth is the
camera-frame z in metres; sky, and anything beyond ``max_depth`` (a sensor's
range), is 0 = invalid. Labels follow the KITTI6 preset: 0 sky, 1 building,
2 road, 3 sidewalk, 4 vegetation, 5 car.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .render import render
from .scene import StreetScene, make_street_scene

DEFAULT_HFOV_DEG = 80.0   # about KITTI's colour cameras


DEFAULT_CAMERA_HEIGHT = 1.65


@dataclass(frozen=True)
class SyntheticFrame:
    image: np.ndarray   # (H, W, 3) uint8 RGB
    depth: np.ndarray   # (H, W) float32 metres, 0 = invalid (sky, beyond max_depth)
    labels: np.ndarray  # (H, W) uint8 KITTI6 ids
    K: np.ndarray       # (3, 3) float64 intrinsics, pixel centres at integer coordinates
    pose: np.ndarray    # (4, 4) float64 world_from_camera


def intrinsics(width: int, height: int, hfov_deg: float = DEFAULT_HFOV_DEG) -> np.ndarray:
    """Square pixels, principal point at the image centre."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if not 1.0 <= hfov_deg <= 170.0:
        raise ValueError(f"hfov_deg must be within 1..170, got {hfov_deg}")
    f = (width / 2) / np.tan(np.radians(hfov_deg) / 2)
    return np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])


def camera_pose(x: float, height: float, z: float, pitch_deg: float = 0.0, yaw_deg: float = 0.0) -> np.ndarray:
    """world_from_camera for a camera at (x, height, z) looking along +z, pitched down by
    ``pitch_deg`` and turned left by ``yaw_deg``."""
    flip = np.diag([1.0, -1.0, 1.0])  # camera y points down, world y up
    p, y = np.radians(pitch_deg), np.radians(yaw_deg)
    pitch = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    yaw = np.array([[np.cos(y), 0, -np.sin(y)], [0, 1, 0], [np.sin(y), 0, np.cos(y)]])
    pose = np.eye(4)
    pose[:3, :3] = yaw @ pitch @ flip
    pose[:3, 3] = (x, height, z)
    return pose


def render_view(scene: StreetScene, K: np.ndarray, pose: np.ndarray, width: int, height: int,
                noise_seed: int, max_depth: float = 80.0) -> SyntheticFrame:
    image, t, labels = render(scene, K, pose, width, height, np.random.default_rng(noise_seed))
    depth = np.where(np.isfinite(t) & (t <= max_depth), t, 0.0).astype(np.float32)
    return SyntheticFrame(image, depth, labels, K, pose)


def render_street_scene(seed: int, width: int, height: int, *, hfov_deg: float = DEFAULT_HFOV_DEG,
                        camera_height: float = DEFAULT_CAMERA_HEIGHT, pitch_deg: float | None = None,
                        max_depth: float = 80.0) -> SyntheticFrame:
    """One random street seen from its start; a seed gives the same street and camera
    at any resolution. ``pitch_deg=None`` draws a small random pitch (0..2 degrees down)."""
    rng = np.random.default_rng(seed)
    scene = make_street_scene(rng, seed, length=0.0, lane_clear_until=0.0)
    pitch = rng.uniform(0.0, 2.0) if pitch_deg is None else pitch_deg
    x = scene.camera_lane_x + rng.uniform(-0.3, 0.3)
    pose = camera_pose(x, camera_height, 0.0, pitch, rng.uniform(-2.0, 2.0))
    return render_view(scene, intrinsics(width, height, hfov_deg), pose, width, height, seed, max_depth)


def render_sequence(num_frames: int, width: int, height: int, seed: int, *, speed: float = 8.0,
                    fps: float = 10.0, hfov_deg: float = DEFAULT_HFOV_DEG,
                    camera_height: float = DEFAULT_CAMERA_HEIGHT, max_depth: float = 80.0) -> Iterator[SyntheticFrame]:
    """Frames of a camera driving along one street at ``speed`` m/s, ``fps`` frames a
    second, with a gentle weave and pitch bob so that consecutive frames differ smoothly."""
    if num_frames < 0 or speed < 0 or fps <= 0:
        raise ValueError(f"need num_frames >= 0, speed >= 0 and fps > 0, got {num_frames}, {speed}, {fps}")
    rng = np.random.default_rng(seed)
    path_length = num_frames * speed / fps
    scene = make_street_scene(rng, seed, length=path_length, lane_clear_until=path_length + 10.0)
    K = intrinsics(width, height, hfov_deg)
    phase = rng.uniform(0, 2 * np.pi)
    for index in range(num_frames):
        time = index / fps
        weave = 0.25 * np.sin(0.3 * time + phase)
        heading = np.degrees(np.arctan(0.25 * 0.3 * np.cos(0.3 * time + phase) / max(speed, 1e-3)))
        pose = camera_pose(scene.camera_lane_x + weave, camera_height, speed * time,
                           1.0 + 0.3 * np.sin(2.1 * time + phase), -heading)
        # sensor noise differs per frame, deterministically
        yield render_view(scene, K, pose, width, height, seed * 100_003 + index, max_depth)
