"""What a configured node holds, and what its inference thread does with each frame:
load the weights, warm up, decode, predict the outputs somebody listens to, publish.

The node (``node.py``) builds a ``Running`` at configure and drops it at cleanup; the
functions here run in the inference thread and only read it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from rclpy.logging import LoggingSeverity

from ..inference.predictor import load_predictor
from ..messages.image import ImageDecodeError, decode_input
from ..messages.stamps import stamp_to_ns
from ..messages.topics import OUTPUT_SPECS
from .health import HealthJudge, Stats, select_outputs, stamp_latency
from .parameters import NodeConfig, ParamError, fallback_notes, resolve_weights
from .ros_messages import depth_camera_info_msg, image_msg
from .worker import InferenceWorker

# at most one log line per this many seconds for each kind of per-frame problem
THROTTLE_S = 5.0
WARMUP_PASSES = 2


@dataclass
class Running:
    """Everything a configured node holds. ``config`` and ``image_pubs`` change with live
    parameters and are replaced whole, so the inference thread reads consistent values."""

    config: NodeConfig
    predictor: Any
    stats: Stats
    worker: InferenceWorker | None = None
    judge: HealthJudge = field(default_factory=HealthJudge)
    active: bool = False
    subscription: Any = None
    reliability: str = ""
    listening_since: float = field(default_factory=time.monotonic)
    image_pubs: dict[str, Any] = field(default_factory=dict)
    info_pub: Any = None
    info_sub: Any = None
    label_pub: Any = None
    status_timer: Any = None
    camera_info: Any = None
    starved_note: str = ""


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
    if not run.stats.device.endswith(f" {run.predictor.backend}"):
        run.stats.device = device_description(run.predictor)
        logger.log(f"the backend failed at run time; now on {run.stats.device}", LoggingSeverity.WARN)


def warm_up(run: Running, stopping: Callable[[], bool], logger: Any) -> None:
    """Compile, capture and autotune for the camera's size before its first frame, one pass
    at a time so that a shutdown need not wait for the rest."""
    if run.config.warmup_size is None:
        return
    width, height = run.config.warmup_size
    start = time.perf_counter()
    logger.info(f"warming up at {width}x{height}")
    for _ in range(WARMUP_PASSES):
        if stopping():
            return
        try:
            run.predictor.warmup(height, width, iterations=1)
        except Exception as error:  # noqa: BLE001 - e.g. out of memory at this size: frames may still fit
            if not stopping():
                logger.error(f"warm-up at {width}x{height} failed, continuing without: "
                             f"{type(error).__name__}: {error}")
            return
    note_backend(run, logger)
    logger.info(f"warmed up at {width}x{height} in {time.perf_counter() - start:.1f} s on {run.stats.device}")


def frame_failed(run: Running, error: Exception, logger: Any) -> None:
    run.stats.frame_error(f"{type(error).__name__}: {error}")
    logger.error(f"frame failed: {type(error).__name__}: {error}", throttle_duration_sec=THROTTLE_S)


def _wanted_outputs(run: Running) -> tuple[tuple[str, ...], bool]:
    config, pubs = run.config, run.image_pubs
    counts = {name: pub.get_subscription_count() for name, pub in pubs.items()}
    wanted = select_outputs(config.outputs, counts)
    info_wanted = (config.publish_depth_camera_info and run.info_pub is not None and run.camera_info is not None
                   and run.info_pub.get_subscription_count() > 0)
    return wanted, info_wanted


def process_frame(run: Running, msg: Any, logger: Any, now_ns: Callable[[], int]) -> None:
    """Decode one camera message, predict what somebody listens to and publish it."""
    if not run.active:
        return   # deactivated after the frame was parked
    wanted, info_wanted = _wanted_outputs(run)
    if not wanted and not info_wanted:
        run.stats.frame_idle()
        return
    config = run.config
    try:
        rgb = decode_input(msg, config.input_transport, config.max_input_pixels)
    except ImageDecodeError as error:
        run.stats.frame_bad(str(error))
        logger.error(f"bad frame dropped: {error}", throttle_duration_sec=THROTTLE_S)
        return

    start = time.perf_counter()
    try:
        prediction = run.predictor.predict(rgb, wanted) if wanted else None
    except torch.cuda.OutOfMemoryError as error:
        torch.cuda.empty_cache()
        reason = f"GPU out of memory on a {rgb.shape[1]}x{rgb.shape[0]} frame: {error}"
        run.stats.frame_out_of_memory(reason)
        logger.error(f"frame dropped, {reason}", throttle_duration_sec=THROTTLE_S)
        return
    inference_s = time.perf_counter() - start
    note_backend(run, logger)

    header = msg.header   # every output carries the input's stamp and frame_id unchanged
    pubs = run.image_pubs
    for spec in OUTPUT_SPECS:
        if spec.name in wanted:
            pubs[spec.name].publish(image_msg(header, getattr(prediction, spec.name), spec.encoding))
    if info_wanted:
        height, width = rgb.shape[:2]
        # outputs are at input resolution today; scaling keeps this right if that changes
        out_height, out_width = getattr(prediction, wanted[0]).shape[:2] if wanted else (height, width)
        run.info_pub.publish(depth_camera_info_msg(run.camera_info, header, (width, height), (out_width, out_height)))
    run.stats.frame_done(inference_s, stamp_latency(stamp_to_ns(header.stamp.sec, header.stamp.nanosec), now_ns()))
