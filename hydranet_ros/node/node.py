"""The ROS 2 node: ``ros2 run hydranet_ros hydranet_node``.

A thin rclpy shell: decisions live in ``node_logic`` (tested without ROS),
pixels in ``predictor`` and message fields in ``image_codec``. The subscription
only parks the newest message in a one-slot holder; a worker thread runs the
model on whatever is newest, so a slow GPU drops frames rather than queueing them.
"""
from __future__ import annotations

import array
import gc
import sys
import threading
import time
from typing import Any, Sequence

import numpy as np
import torch

from ..inference.shipped import PACKAGE
from ..messages.camera_info import Intrinsics, scale_intrinsics
from ..messages.image import ImageDecodeError, array_to_fields, decode_input
from ..messages.label_info import label_entries, label_info_json
from ..messages.stamps import stamp_to_ns
from ..messages.topics import CAMERA_INFO_TOPIC, DEPTH_CAMERA_INFO_TOPIC, LABEL_INFO_TOPIC, OUTPUT_SPECS, input_topic
from .health import FrameSlot, HealthJudge, Stats, format_log_line, select_outputs, stamp_latency
from .parameters import (
    NODE_NAME,
    PARAMS,
    NodeConfig,
    ParamError,
    fallback_notes,
    format_usage,
    load_config,
    resolve_weights,
)
from .qos import CAMERA_INFO_QOS, LATCHED_QOS, PUBLISHER_QOS, QosChoice, subscription_qos

# rclpy is imported here, not lazily, because the node class derives from it; the
# guard only exists so that `hydranet_node --help` works where ROS 2 is not sourced.
try:
    import rclpy
    from rcl_interfaces.msg import ParameterDescriptor
    from rclpy.logging import LoggingSeverity, get_logger
    from rclpy.node import Node
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image, RegionOfInterest
    from std_msgs.msg import String
except ImportError as _error:  # pragma: no cover - exercised only without ROS 2
    rclpy = None
    _ROS_IMPORT_ERROR: ImportError | None = _error
    Node = object  # type: ignore[assignment,misc]
else:
    _ROS_IMPORT_ERROR = None

try:
    from rclpy.executors import ExternalShutdownException
except ImportError:  # pragma: no cover - no ROS 2, or a distribution without it
    class ExternalShutdownException(Exception):  # type: ignore[no-redef]
        pass

try:
    from vision_msgs.msg import LabelInfo, VisionClass
except ImportError:
    LabelInfo = VisionClass = None

try:
    import diagnostic_updater
    from diagnostic_msgs.msg import DiagnosticStatus
except ImportError:
    diagnostic_updater = None

# at most one log line per this many seconds for each kind of per-frame problem
THROTTLE_S = 5.0
# how long the worker waits for a frame before checking whether it should stop
WORKER_POLL_S = 0.5


def _share_dir() -> str | None:
    try:
        from ament_index_python.packages import get_package_share_directory
        return get_package_share_directory(PACKAGE)
    except (ImportError, LookupError):  # PackageNotFoundError is a KeyError
        return None


def _qos_profile(choice: QosChoice) -> "QoSProfile":
    reliability = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}
    durability = {"volatile": DurabilityPolicy.VOLATILE, "transient_local": DurabilityPolicy.TRANSIENT_LOCAL}
    history = {"keep_last": HistoryPolicy.KEEP_LAST, "keep_all": HistoryPolicy.KEEP_ALL}
    return QoSProfile(depth=choice.depth, reliability=reliability[choice.reliability],
                      durability=durability[choice.durability], history=history[choice.history])


def _image_msg(header: Any, pixels: np.ndarray, encoding: str) -> "Image":
    fields = array_to_fields(pixels, encoding)
    msg = Image(header=header, height=fields.height, width=fields.width, encoding=fields.encoding,
                is_bigendian=fields.is_bigendian, step=fields.step)
    # an array.array('B') is stored as is; bytes or a list would be checked element by element
    msg.data = array.array("B", fields.data)
    return msg


class HydraNetNode(Node):
    """Subscribes to ``image`` (or ``image/compressed``) and publishes depth, labels and overlays."""

    def __init__(self, **node_options: Any) -> None:
        super().__init__(NODE_NAME, **node_options)
        self.config = self._read_parameters()
        self._predictor = self._load_predictor()
        self._stats = Stats(device=self._device_description())
        self._judge = HealthJudge()
        self._slot: FrameSlot[Any] = FrameSlot()
        self._camera_info: CameraInfo | None = None
        self._input_topic = input_topic(self.config.input_transport)

        publisher_qos = _qos_profile(PUBLISHER_QOS)
        self._image_pubs = {spec.name: self.create_publisher(Image, spec.topic, publisher_qos)
                            for spec in OUTPUT_SPECS if spec.name in self.config.outputs}
        self._info_pub = self._label_pub = None
        if self.config.publish_depth_camera_info:
            self._info_pub = self.create_publisher(CameraInfo, DEPTH_CAMERA_INFO_TOPIC, publisher_qos)
            self.create_subscription(CameraInfo, CAMERA_INFO_TOPIC, self._on_camera_info,
                                     _qos_profile(CAMERA_INFO_QOS))
        if self.config.publish_label_info:
            self._label_pub = self._publish_label_info()

        message_type = CompressedImage if self.config.input_transport == "compressed" else Image
        self._subscription = self.create_subscription(
            message_type, self._input_topic, self._on_image, _qos_profile(subscription_qos(self.config)))

        self._updater = self._start_diagnostics()
        if self.config.log_period > 0:
            self.create_timer(self.config.log_period, self._log_status)

        self._worker = threading.Thread(target=self._work, name="hydranet_inference", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"{self._predictor.card.model.num_classes} classes on {self._stats.device}; listening on "
            f"'{getattr(self._subscription, 'topic_name', self._input_topic)}' "
            f"({self.config.input_transport}), publishing {', '.join(self.config.outputs)}")

    # ----- start-up -------------------------------------------------------------

    def _read_parameters(self) -> NodeConfig:
        for spec in PARAMS:
            descriptor = ParameterDescriptor(
                description=spec.description,
                additional_constraints=f"one of: {', '.join(spec.choices)}" if spec.choices else "",
                # node_logic checks and converts types, so `overlay_alpha: 1` is accepted as 1.0
                # and a wrong type is reported by name instead of as an rclpy exception
                dynamic_typing=True)
            self.declare_parameter(spec.name, spec.default, descriptor)
        return load_config({spec.name: self.get_parameter(spec.name).value for spec in PARAMS})

    def _load_predictor(self):
        from ..inference.predictor import load_predictor

        path = resolve_weights(self.config.weights, _share_dir())
        try:
            predictor = load_predictor(path, **self.config.predictor_options())
        except (OSError, ValueError) as error:  # WeightsError is a ValueError
            raise ParamError([("weights", f"cannot load {path}: {error}")]) from error
        except RuntimeError as error:  # CUDA errors, out of memory while moving the model
            raise ParamError([("device", f"cannot run {path} on {self.config.device}: {error}")]) from error
        for note in fallback_notes(self.config, predictor.precision, predictor.backend):
            self.get_logger().log(note, LoggingSeverity.WARN)
        return predictor

    def _device_description(self) -> str:
        """Device, precision and the backend that runs now: a failed compile or
        capture switches to eager at any frame, and diagnostics must say so."""
        device = self._predictor.device
        name = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
        return f"{device}{name} {self._predictor.precision} {self._predictor.backend}"

    def _note_backend(self) -> None:
        if not self._stats.device.endswith(f" {self._predictor.backend}"):
            self._stats.device = self._device_description()
            self.get_logger().log(f"the backend failed at run time; now on {self._stats.device}",
                                  LoggingSeverity.WARN)

    def _publish_label_info(self):
        card = self._predictor.card
        entries = label_entries(card.class_names, card.palette)
        qos = _qos_profile(LATCHED_QOS)
        if LabelInfo is not None:
            publisher = self.create_publisher(LabelInfo, LABEL_INFO_TOPIC, qos)
            msg = LabelInfo(class_map=[VisionClass(class_id=e.class_id, class_name=e.name) for e in entries],
                            threshold=0.0)   # labels are an argmax; no confidence threshold is applied
            msg.header.stamp = self.get_clock().now().to_msg()
        else:
            publisher = self.create_publisher(String, LABEL_INFO_TOPIC, qos)
            msg = String(data=label_info_json(entries))
            # log(..., WARN): `warn` is deprecated in newer rclpy and `warning` missing in older
            self.get_logger().log(f"vision_msgs is not installed; {LABEL_INFO_TOPIC} carries "
                                  "std_msgs/String JSON instead of vision_msgs/LabelInfo", LoggingSeverity.WARN)
        publisher.publish(msg)
        return publisher

    def _start_diagnostics(self):
        if diagnostic_updater is None:
            self.get_logger().info("diagnostic_updater is not installed; status only in the log")
            return None
        updater = diagnostic_updater.Updater(self)
        updater.setHardwareID(self._stats.device)
        updater.add("inference", self._diagnose)
        return updater

    # ----- callbacks (executor thread) ------------------------------------------

    def _on_image(self, msg: Any) -> None:
        self._stats.frame_received(replaced=self._slot.put(msg))

    def _on_camera_info(self, msg: "CameraInfo") -> None:
        self._camera_info = msg

    def _diagnose(self, stat):
        snap = self._stats.snapshot()
        health = self._judge.judge(snap, self._input_topic)
        levels = {"ok": DiagnosticStatus.OK, "warn": DiagnosticStatus.WARN, "error": DiagnosticStatus.ERROR}
        stat.summary(levels[health.level], health.message)
        for key, value in snap.as_pairs():
            stat.add(key, value)
        return stat

    def _log_status(self) -> None:
        self.get_logger().info(format_log_line(self._stats.snapshot()))

    # ----- worker thread --------------------------------------------------------

    def _warm_up(self) -> None:
        """Compile, capture and autotune for the camera's size before its first frame.
        It runs here, in the inference thread, because torch.compile keeps its CUDA
        graphs per thread; frames that arrive meanwhile wait in the slot (newest only)."""
        if self.config.warmup_size is None:
            return
        width, height = self.config.warmup_size
        start = time.perf_counter()
        try:
            self._predictor.warmup(height, width)
        except Exception as error:  # noqa: BLE001 - e.g. out of memory at this size: frames may still fit
            if self._slot.closed:
                return  # shut down while warming up: the predictor may be gone
            self.get_logger().error(f"warm-up at {width}x{height} failed, continuing without: "
                                    f"{type(error).__name__}: {error}")
            return
        if self._slot.closed:
            return
        self._note_backend()
        self.get_logger().info(f"warmed up at {width}x{height} in {time.perf_counter() - start:.1f} s "
                               f"on {self._stats.device}")

    def _work(self) -> None:
        self._warm_up()
        while not self._slot.closed:
            msg = self._slot.take(timeout=WORKER_POLL_S)
            if msg is None:
                continue
            try:
                self._process(msg)
            except Exception as error:  # noqa: BLE001 - one broken frame must not stop the node
                if self._slot.closed:
                    return  # shutting down: the context may already be gone
                self._stats.frame_error(f"{type(error).__name__}: {error}")
                self.get_logger().error(f"frame failed: {type(error).__name__}: {error}",
                                        throttle_duration_sec=THROTTLE_S)

    def _wanted_outputs(self) -> tuple[tuple[str, ...], bool]:
        counts = {name: pub.get_subscription_count() for name, pub in self._image_pubs.items()}
        wanted = select_outputs(self.config.outputs, counts)
        info_wanted = (self._info_pub is not None and self._camera_info is not None
                       and self._info_pub.get_subscription_count() > 0)
        return wanted, info_wanted

    def _process(self, msg: Any) -> None:
        wanted, info_wanted = self._wanted_outputs()
        if not wanted and not info_wanted:
            self._stats.frame_idle()
            return
        try:
            rgb = decode_input(msg, self.config.input_transport, self.config.max_input_pixels)
        except ImageDecodeError as error:
            self._stats.frame_bad(str(error))
            self.get_logger().error(f"bad frame dropped: {error}", throttle_duration_sec=THROTTLE_S)
            return

        start = time.perf_counter()
        try:
            prediction = self._predictor.predict(rgb, wanted) if wanted else None
        except torch.cuda.OutOfMemoryError as error:
            torch.cuda.empty_cache()
            reason = f"GPU out of memory on a {rgb.shape[1]}x{rgb.shape[0]} frame: {error}"
            self._stats.frame_out_of_memory(reason)
            self.get_logger().error(f"frame dropped, {reason}", throttle_duration_sec=THROTTLE_S)
            return
        inference_s = time.perf_counter() - start
        self._note_backend()

        header = msg.header   # every output carries the input's stamp and frame_id unchanged
        for spec in OUTPUT_SPECS:
            if spec.name in wanted:
                self._image_pubs[spec.name].publish(_image_msg(header, getattr(prediction, spec.name), spec.encoding))
        if info_wanted:
            height, width = rgb.shape[:2]
            # outputs are at input resolution today; scaling keeps this right if that changes
            out_height, out_width = (getattr(prediction, wanted[0]).shape[:2] if wanted else (height, width))
            self._info_pub.publish(self._depth_camera_info(header, (width, height), (out_width, out_height)))

        now_ns = self.get_clock().now().nanoseconds
        self._stats.frame_done(inference_s, stamp_latency(stamp_to_ns(header.stamp.sec, header.stamp.nanosec), now_ns))

    def _depth_camera_info(self, header: Any, input_size: tuple[int, int],
                           output_size: tuple[int, int]) -> "CameraInfo":
        source = self._camera_info
        roi = source.roi
        scaled = scale_intrinsics(
            Intrinsics(width=source.width, height=source.height, k=tuple(source.k), p=tuple(source.p),
                       roi=(roi.x_offset, roi.y_offset, roi.width, roi.height)),
            input_size, output_size)
        x, y, w, h = scaled.roi
        return CameraInfo(
            header=header, width=scaled.width, height=scaled.height,
            distortion_model=source.distortion_model, d=list(source.d), k=list(scaled.k),
            r=list(source.r), p=list(scaled.p), binning_x=source.binning_x, binning_y=source.binning_y,
            roi=RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h, do_rectify=roi.do_rectify))

    # ----- shutdown -------------------------------------------------------------

    def close(self) -> None:
        """Stop the worker and free the model (and its GPU memory). Idempotent."""
        slot = getattr(self, "_slot", None)
        if slot is not None:
            slot.close()
            worker = getattr(self, "_worker", None)
            if worker is not None and worker.is_alive():
                worker.join(timeout=10.0)
        if getattr(self, "_predictor", None) is not None:
            on_gpu = self._predictor.device.type == "cuda"
            self._predictor = None
            gc.collect()
            if on_gpu:
                torch.cuda.empty_cache()

    def destroy_node(self) -> None:
        self.close()
        super().destroy_node()


def _wants_help(argv: Sequence[str]) -> bool:
    user_args = list(argv)
    if "--ros-args" in user_args:
        user_args = user_args[:user_args.index("--ros-args")]
    return any(arg in ("-h", "--help") for arg in user_args)


def _try_shutdown() -> None:
    # rclpy.try_shutdown is not in every distribution; rclpy.ok() guards the plain call
    try_shutdown = getattr(rclpy, "try_shutdown", None)
    if try_shutdown is not None:
        try_shutdown()
    elif rclpy.ok():
        rclpy.shutdown()


def main(args: list[str] | None = None) -> int:
    """Entry point of ``hydranet_node``; ``args`` as for ``rclpy.init`` (default ``sys.argv``)."""
    argv = list(sys.argv if args is None else args)
    if _wants_help(argv):
        print(format_usage())
        return 0
    if rclpy is None:
        print(f"{NODE_NAME}: ROS 2 is not available ({_ROS_IMPORT_ERROR}); source your ROS 2 "
              "installation (e.g. /opt/ros/humble/setup.bash) first", file=sys.stderr)
        return 1

    from rclpy.executors import SingleThreadedExecutor

    rclpy.init(args=argv)
    node: HydraNetNode | None = None
    exit_code = 0
    try:
        node = HydraNetNode()
        # one executor thread for callbacks; inference runs on the node's own worker thread
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except ParamError as error:
        get_logger(NODE_NAME).fatal(f"cannot start: {error}")
        exit_code = 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        _try_shutdown()
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
