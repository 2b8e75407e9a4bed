"""Several same-size frames through the network in one pass, each with its own outputs on
the host: what a node serving several cameras does with one model, and what
``hydranet_bench --cameras`` measures.

One frame takes ``Predictor.predict``'s own path (a backend's input buffer, one
upload). Several go up as one (N, H, W, C) batch for ``predict_batch``
(``Predictor.upload``): on CUDA each frame is copied once, into its slot of a reused
pinned staging buffer, and the batch is uploaded once, into a CUDA graph's own input
when the backend has one; on the CPU the frames are stacked in one copy. Each output
comes back in one copy for the whole batch and is handed out per frame as a view.
Each frame may bring its own camera for the ``points`` output, or none: a frame
without one gets no points (it is run with another frame's intrinsics, and that part
of the cloud is not copied back).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from ..common.pinhole import PinholeK
from .points import PointsOptions, frame_points, host_points
from .predictor import POINTS, Prediction, Predictor, check_image


def predict_frames(predictor: Predictor, frames: Sequence[np.ndarray], outputs: Iterable[str],
                   cameras: Sequence[PinholeK | None] | None = None, points: PointsOptions | None = None,
                   channels: str = "rgb") -> list[Prediction]:
    """Same-size uint8 frames -> one ``Prediction`` per frame, as ``predict`` gives for each.
    ``cameras``: one per frame (None: that frame gets no points); needed for ``points``."""
    outputs = tuple(outputs)
    per_frame = list(cameras) if cameras is not None else [None] * len(frames)
    if len(per_frame) != len(frames):
        raise ValueError(f"{len(per_frame)} cameras for {len(frames)} frames")
    known = [camera for camera in per_frame if camera is not None]
    if POINTS in outputs and not known:
        outputs = tuple(name for name in outputs if name != POINTS)
    if len(frames) == 1:
        return [predictor.predict(frames[0], outputs, channels, camera=per_frame[0], points=points)]
    images = predictor.upload([check_image(frame, channels) for frame in frames], channels)  # ValueError: mixed sizes
    wants_points = POINTS in outputs
    batch_cameras = [camera if camera is not None else known[0] for camera in per_frame] if wants_points else None
    tensors = predictor.predict_batch(images, outputs, channels, camera=batch_cameras, points=points)
    grid = tensors.pop(POINTS, None)
    organized = (points or PointsOptions()).organized
    clouds = {i: f"{POINTS}:{i}" for i, camera in enumerate(per_frame) if camera is not None and grid is not None}
    for i, key in clouds.items():
        tensors[key] = frame_points(grid[i], organized)
    host = predictor.to_host(tensors)
    images_out = [name for name in tensors if name not in clouds.values()]
    num_classes = predictor.card.model.num_classes
    return [Prediction(**{name: host[name][i] for name in images_out},
                       points=host_points(host[clouds[i]], num_classes) if i in clouds else None)
            for i in range(len(frames))]
