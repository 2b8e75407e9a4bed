"""What a configured node holds, and what its inference thread does with the frames:
load the weights, warm up, decode, predict the outputs somebody listens to (the
frames of several cameras that have one size and channel order in one pass), publish.
Frames go to the predictor in the order they arrived in (bgr8, a JPEG's BGR ...):
the predictor turns them into RGB on the device.

The node (``node.py``) builds a ``Running`` at configure and drops it at cleanup; the
functions here run in the inference thread and only read it.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch
from rclpy.logging import LoggingSeverity

from ..common.pinhole import CameraError, PinholeK
from ..inference.backends import PER_CHANNEL_ORDER
from ..inference.batch import predict_frames
from ..inference.points import PointsOptions
from ..inference.predictor import POINTS, Prediction, load_predictor
from ..messages.builders import MessageTypes, depth_camera_info, image_message
from ..messages.image import DecodedFrame, ImageDecodeError, decode_frame
from ..messages.point_cloud import camera_for_frame, point_cloud_message
from ..messages.stamps import stamp_to_ns
from ..messages.topics import OUTPUT_SPECS
from .batch_stats import BatchStats
from .cameras import Camera
from .health import select_outputs, stamp_latency
from .parameters import NodeConfig, ParamError, fallback_notes, resolve_weights
from .worker import InferenceWorker

# at most one log line per this many seconds for each kind of per-frame problem
THROTTLE_S = 5.0
WARMUP_PASSES = 2
# every image output, so that each post-processing kernel is compiled or captured too
OUTPUTS_TO_WARM = tuple(spec.name for spec in OUTPUT_SPECS)
# the channel orders frames come in, by transport: a JPEG or PNG is always OpenCV's BGR, a raw
# frame mostly rgb8 or bgr8 (rgba8, bgra8 and mono8 cameras capture on their first frame)
WARMUP_CHANNELS = {"compressed": ("bgr",), "raw": ("rgb", "bgr")}


@dataclass
class Running:
    """Everything a configured node holds. ``config`` and ``points_options`` change with
    live parameters and are replaced whole, so the inference thread reads consistent values."""

    config: NodeConfig
    predictor: Any
    cameras: dict[str, Camera]          # by name; one named "" with `cameras: []`
    points_options: PointsOptions
    types: MessageTypes
    device: str = ""
    worker: InferenceWorker | None = None
    batches: BatchStats = field(default_factory=BatchStats)
    active: bool = False
    status_timer: Any = None

    @property
    def first(self) -> Camera:
        """The first camera (with `cameras: []` the only one): the status line and start-up log name it."""
        return next(iter(self.cameras.values()))

    def set_device(self, description: str) -> None:
        self.device = description
        for camera in self.cameras.values():
            camera.stats.device = description


def load_node_predictor(config: NodeConfig, logger: Any):
    """The predictor for ``config``; a ``ParamError`` naming the parameter to fix."""
    path = resolve_weights(config.weights)
    try:
        predictor = load_predictor(path, **config.predictor_options())
    except (OSError, ValueError) as error:  # WeightsError is a ValueError
        raise ParamError([("weights", f"cannot load {path}: {error}")]) from error
    except RuntimeError as error:
        # CUDA errors and out of memory while moving the model are the device's; anything
        # else (a card whose numbers build no network) is the file's
        on_cuda = "cuda" in config.device or (config.device == "auto" and torch.cuda.is_available())
        if on_cuda and ("CUDA" in str(error) or isinstance(error, torch.cuda.OutOfMemoryError)):
            raise ParamError([("device", f"cannot run {path} on {config.device}: {error}")]) from error
        raise ParamError([("weights", f"cannot load {path}: {type(error).__name__}: {error}")]) from error
    for note in fallback_notes(config, predictor.precision, predictor.backend):
        logger.log(note, LoggingSeverity.WARN)
    return predictor


def device_description(predictor: Any) -> str:
    """Device, precision and the backend that runs now: a failed compile or capture
    switches to eager at any frame, and diagnostics must say so."""
    name = f" ({torch.cuda.get_device_name(predictor.device)})" if predictor.device.type == "cuda" else ""
    return f"{predictor.device}{name} {predictor.precision} {predictor.backend}"


def note_backend(run: Running, logger: Any) -> None:
    if not run.device.endswith(f" {run.predictor.backend}"):
        run.set_device(device_description(run.predictor))
        logger.log(f"the backend failed at run time; now on {run.device}", LoggingSeverity.WARN)


def warm_up(run: Running, stopping: Callable[[], bool], logger: Any) -> None:
    """Compile, capture and autotune for the camera's size before its first frame, one pass
    at a time so that a shutdown need not wait for the rest; with several cameras for each
    batch size they may run in (a fixed-shape backend captures each), and for each channel
    order the transport usually brings (``warmup_channels``)."""
    if run.config.warmup_size is None:
        return
    width, height = run.config.warmup_size
    start = time.perf_counter()
    logger.info(f"warming up at {width}x{height}")
    frame = np.zeros((height, width, 3), np.uint8)
    orders = warmup_channels(run.config.input_transport, run.predictor.backend)
    passes = [(batch, channels) for batch in range(1, len(run.cameras) + 1) for channels in orders
              for _ in range(WARMUP_PASSES)]
    for batch, channels in passes:
        if stopping():
            return
        try:
            predict_frames(run.predictor, [frame] * batch, OUTPUTS_TO_WARM, channels=channels)
        except Exception as error:  # noqa: BLE001 - e.g. out of memory at this size: frames may still fit
            if not stopping():
                logger.error(f"warm-up at {width}x{height} failed, continuing without: "
                             f"{type(error).__name__}: {error}")
            return
    note_backend(run, logger)
    logger.info(f"warmed up at {width}x{height} in {time.perf_counter() - start:.1f} s on {run.device}")


def warmup_channels(transport: str, backend: str) -> tuple[str, ...]:
    """The channel orders to warm up: every order the transport usually brings where the
    backend compiles or captures each anew, else the first (the network runs any order)."""
    orders = WARMUP_CHANNELS[transport]
    return orders if backend in PER_CHANNEL_ORDER else orders[:1]


def frame_failed(run: Running, error: Exception, logger: Any) -> None:
    """An error outside any one camera's frame: every camera counts it."""
    for camera in run.cameras.values():
        camera.stats.frame_error(f"{type(error).__name__}: {error}")
    logger.error(f"frame failed: {type(error).__name__}: {error}", throttle_duration_sec=THROTTLE_S)


@dataclass
class FrameJob:
    """One camera's frame, decoded in its own channel order, and what to make of it."""

    camera: Camera
    msg: Any                            # kept: the frame's pixels may be a view of its data
    frame: DecodedFrame
    outputs: tuple[str, ...]            # image outputs somebody listens to
    info_wanted: bool
    pinhole: PinholeK | None            # set when its points are wanted and can be made

    @property
    def batch_key(self) -> tuple[tuple[int, int], str]:
        """Frames run together when they have one size and one channel order."""
        return self.frame.size, self.frame.channels


def process_frames(run: Running, msgs: dict[str, Any], logger: Any, now_ns: Callable[[], int]) -> None:
    """The frames waiting when the inference thread was free (one per camera): decode each,
    run those of one size and channel order together, publish each camera's outputs with
    its own header."""
    if not run.active:
        return   # deactivated after the frames were parked
    jobs = []
    for name, msg in msgs.items():
        camera = run.cameras[name]
        with _counted(run, [camera], logger):
            job = _prepare(run, camera, msg, logger)
            if job is not None:
                jobs.append(job)
    for job in [job for job in jobs if not job.outputs and job.pinhole is None]:
        _publish(run, job, None, 0.0, now_ns)   # depth/camera_info only: nothing to compute
    groups: dict[tuple[tuple[int, int], str], list[FrameJob]] = {}
    for job in jobs:
        if job.outputs or job.pinhole is not None:
            groups.setdefault(job.batch_key, []).append(job)
    for group in groups.values():
        with _counted(run, [job.camera for job in group], logger):
            _run_group(run, group, logger, now_ns)


@contextmanager
def _counted(run: Running, cameras: list[Camera], logger: Any) -> Iterator[None]:
    """An unexpected error in one camera's frame (or one batch) is counted for those cameras
    only; the others' frames still run. While the node stops it is left to the worker."""
    try:
        yield
    except Exception as error:  # noqa: BLE001 - one broken frame must not stop the other cameras
        if run.worker is not None and run.worker.stopping:
            raise
        reason = f"{type(error).__name__}: {error}"
        for camera in cameras:
            camera.stats.frame_error(reason)
        logger.error(f"frame failed ({', '.join(c.label for c in cameras)}): {reason}",
                     throttle_duration_sec=THROTTLE_S)


def _wanted(run: Running, camera: Camera) -> tuple[tuple[str, ...], bool, bool]:
    """The image outputs, depth/camera_info and points that somebody listens to."""
    config = run.config
    counts = {name: pub.get_subscription_count() for name, pub in camera.image_pubs.items()}
    info = (config.publish_depth_camera_info and camera.info_pub is not None and camera.camera_info is not None
            and camera.info_pub.get_subscription_count() > 0)
    points = config.publish_points and camera.points_pub is not None and camera.points_pub.get_subscription_count() > 0
    return select_outputs(config.outputs, counts), info, points


def _prepare(run: Running, camera: Camera, msg: Any, logger: Any) -> FrameJob | None:
    """Decode ``msg`` if anything of it is wanted; None (counted) when there is nothing to do."""
    outputs, info_wanted, points_wanted = _wanted(run, camera)
    if not outputs and not info_wanted and not points_wanted:
        camera.stats.frame_idle()
        return None
    config = run.config
    try:
        frame = decode_frame(msg, config.input_transport, config.max_input_pixels)
    except ImageDecodeError as error:
        camera.stats.frame_bad(str(error))
        logger.error(f"bad frame dropped ({camera.label}): {error}", throttle_duration_sec=THROTTLE_S)
        return None
    width, height = frame.size
    if camera.frame_size not in (None, (width, height)):
        old_width, old_height = camera.frame_size
        reason = (f"{camera.label} changed from {old_width}x{old_height} to {width}x{height}; a fixed-shape "
                  "backend compiles or captures each new size")
        camera.stats.frame_resized(reason)
        logger.log(reason, LoggingSeverity.WARN, throttle_duration_sec=THROTTLE_S)
    camera.frame_size = (width, height)
    pinhole = None
    if points_wanted:
        try:
            pinhole = camera_for_frame(camera.camera_info, width, height)
        except CameraError as error:
            camera.stats.frame_without_points(str(error))
            logger.log(f"no points for this frame ({camera.label}): {error}", LoggingSeverity.WARN,
                       throttle_duration_sec=THROTTLE_S)
    if not outputs and not info_wanted and pinhole is None:
        return None
    return FrameJob(camera, msg, frame, outputs, info_wanted, pinhole)


def _run_group(run: Running, group: list[FrameJob], logger: Any, now_ns: Callable[[], int]) -> None:
    """Frames of one size and channel order through the network in one pass, then each
    camera's outputs."""
    names = {name for job in group for name in job.outputs}
    outputs = tuple(spec.name for spec in OUTPUT_SPECS if spec.name in names)
    if any(job.pinhole is not None for job in group):
        outputs += (POINTS,)
    start = time.perf_counter()
    try:
        predictions = predict_frames(run.predictor, [job.frame.pixels for job in group], outputs,
                                     cameras=[job.pinhole for job in group], points=run.points_options,
                                     channels=group[0].frame.channels)
    except torch.cuda.OutOfMemoryError as error:
        torch.cuda.empty_cache()
        width, height = group[0].frame.size
        reason = f"GPU out of memory on {len(group)} frame(s) of {width}x{height}: {error}"
        for job in group:
            job.camera.stats.frame_out_of_memory(reason)
        logger.error(f"frame dropped, {reason}", throttle_duration_sec=THROTTLE_S)
        return
    inference_s = time.perf_counter() - start
    note_backend(run, logger)
    run.batches.batch_done(len(group), inference_s)
    for job, prediction in zip(group, predictions):
        _publish(run, job, prediction, inference_s, now_ns)


def _publish(run: Running, job: FrameJob, prediction: Prediction | None, inference_s: float,
             now_ns: Callable[[], int]) -> None:
    """Every output carries the input's stamp and frame_id unchanged."""
    camera, header, types = job.camera, job.msg.header, run.types
    for spec in OUTPUT_SPECS:
        if spec.name in job.outputs:
            camera.image_pubs[spec.name].publish(image_message(types, header, getattr(prediction, spec.name),
                                                               spec.encoding))
    if job.info_wanted:
        camera.info_pub.publish(depth_camera_info(types, header, camera.camera_info))
    if job.pinhole is not None and prediction is not None and prediction.points is not None:
        camera.points_pub.publish(point_cloud_message(types, header, prediction.points))
    camera.stats.frame_done(inference_s, stamp_latency(stamp_to_ns(header.stamp.sec, header.stamp.nanosec), now_ns()))
