"""The ROS 2 node, ``hydranet_node``: a managed (lifecycle) node.

``configure`` reads and checks the parameters, loads the weights and warms up in
the inference thread; ``activate`` starts processing and publishing; ``deactivate``
ignores frames and publishes nothing; ``cleanup`` frees the model and its GPU memory;
``shutdown`` ends the process (``main.py``). With ``autostart`` (the default) the
process configures and activates at once, so it runs like a plain node.

One node serves one camera (``cameras: []``: ``image`` in, ``depth/image`` ... out) or
several (``cameras: [front, left]``: ``front/image`` in, ``front/depth/image`` ... out)
with one model. A thin rclpy shell: decisions live in ``parameters``, ``health`` and
``qos`` (tested without ROS), the per-frame work in ``frames``, each camera's topics in
``camera_io`` and the messages in ``messages/`` and ``ros_messages``. The subscriptions
only park each camera's newest frame in the inference thread's slots (``worker``), so
a slow GPU drops frames rather than queueing them. The module runs past 300 lines
because the transitions, the live-parameter callback and the heartbeat all change the
node's own rclpy state (publishers, timers, the running model) and read best together.
"""
from __future__ import annotations

import gc
import threading
import time
from typing import Any, Callable

import torch

from ..messages.builders import ros_message_types
from .camera_slots import CameraSlots
from .cameras import Camera, camera_list
from .health import STARVED_AFTER_S, Stats, format_log_line, lifecycle_health, worst_health
from .parameters import NODE_NAME, PARAMS, PARAMS_BY_NAME, NodeConfig, ParamError, check_change, load_config, \
    resolve_weights
from .qos import DIAGNOSTICS_QOS, subscription_qos
from .worker import InferenceWorker

# rclpy is imported here, not lazily, because the node class derives from it; the
# guard only exists so that `hydranet_node --help` works where ROS 2 is not sourced
# (main.py reports ROS_IMPORT_ERROR then).
try:
    from diagnostic_msgs.msg import DiagnosticArray
    from rcl_interfaces.msg import SetParametersResult
    from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
    from rclpy.logging import LoggingSeverity

    from .camera_io import CameraIO
    from .frames import Running, device_description, frame_failed, load_node_predictor, process_frames, warm_up
    from .ros_logging import forward_package_logs, stop_forwarding
    from .ros_messages import diagnostic_array, diagnostic_status, qos_profile
    from .ros_parameters import declare_parameters, warn_unknown_overrides
except ImportError as _error:  # pragma: no cover - exercised only without ROS 2
    ROS_IMPORT_ERROR: ImportError | None = _error
    LifecycleNode = CameraIO = object  # type: ignore[assignment,misc]
else:
    ROS_IMPORT_ERROR = None

# how often diagnostics are published and the camera's QoS and silence are checked
HEARTBEAT_S = 1.0
# how long cleanup waits for a frame in progress; at exit (and after a failed
# configure) only EXIT_WAIT_S: a pass that takes longer ends on its own
CLEANUP_WAIT_S = 10.0
EXIT_WAIT_S = 2.0


class TransitionFailed(Exception):
    """A transition that cannot complete; the message says why (and goes to the log)."""


class HydraNetNode(CameraIO, LifecycleNode):
    """Subscribes to each camera's ``image`` (or ``image/compressed``) and publishes depth,
    labels, overlays and the labelled point cloud."""

    def __init__(self, stop_requested: threading.Event | None = None, **node_options: Any) -> None:
        """``stop_requested`` set (by a signal handler) interrupts a configure that waits for
        the warm-up; ``node_options`` go to rclpy's Node."""
        super().__init__(NODE_NAME, **node_options)
        self._rejected = declare_parameters(self)
        warn_unknown_overrides(self)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._stop_requested = stop_requested or threading.Event()
        self._run: Running | None = None
        self._lingering: list[InferenceWorker] = []   # stopped but still busy in a long pass
        self.state = "unconfigured"
        self.failure = ""   # why the last configure failed; cleared by one that succeeds
        self.finalized = threading.Event()
        self.starved_after_s = STARVED_AFTER_S   # frames missing this long with publishers: say why
        self._log_handler = forward_package_logs(self.get_logger())
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", qos_profile(DIAGNOSTICS_QOS))
        self.create_timer(HEARTBEAT_S, self._heartbeat)

    @property
    def running(self) -> Running | None:
        """What configure built, or None while unconfigured."""
        return self._run

    @property
    def autostart(self) -> bool:
        return bool(self.get_parameter("autostart").value)

    def start(self) -> bool:
        """configure, then activate, as ``autostart`` does; False (the reason is in the log
        and in ``failure``) if either fails."""
        return (self.trigger_configure() == TransitionCallbackReturn.SUCCESS
                and self.trigger_activate() == TransitionCallbackReturn.SUCCESS)

    # ----- lifecycle transitions ------------------------------------------------
    # rclpy turns an exception in a transition into ERROR without a word, so each
    # transition logs its own reason: an expected failure returns FAILURE (the node
    # stays where it was), anything else ERROR, after which on_error frees what was
    # built and the node is unconfigured.

    def _transition(self, name: str, action: Callable[[], None], new_state: str) -> "TransitionCallbackReturn":
        try:
            action()
        except (TransitionFailed, ParamError) as error:
            self.get_logger().error(f"{name} failed: {error}")
            self.failure = str(error) if name == "configure" else self.failure
            return TransitionCallbackReturn.FAILURE
        except Exception as error:  # noqa: BLE001 - a bug must not leave the node half-built
            self.get_logger().error(f"{name} failed: {type(error).__name__}: {error}")
            self.failure = f"{name} failed: {type(error).__name__}: {error}"
            return TransitionCallbackReturn.ERROR
        self.state = new_state
        return TransitionCallbackReturn.SUCCESS

    def on_configure(self, state) -> "TransitionCallbackReturn":
        return self._transition("configure", self._configure, "inactive")

    def on_activate(self, state) -> "TransitionCallbackReturn":
        result = super().on_activate(state)   # enables the lifecycle publishers
        if result != TransitionCallbackReturn.SUCCESS:
            return result
        return self._transition("activate", self._activate, "active")

    def on_deactivate(self, state) -> "TransitionCallbackReturn":
        return self._transition("deactivate", lambda: self._deactivate(state), "inactive")

    def on_cleanup(self, state) -> "TransitionCallbackReturn":
        return self._transition("cleanup", self._cleanup, "unconfigured")

    def on_shutdown(self, state) -> "TransitionCallbackReturn":
        self._release(EXIT_WAIT_S)
        self.state = "finalized"
        self.finalized.set()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state) -> "TransitionCallbackReturn":
        self._release(EXIT_WAIT_S)
        self.state = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def _configure(self) -> None:
        # every problem at once, the weights file's included, so that one round of fixes does
        problems = list(self._rejected.items())
        values = self._values()
        try:
            config = load_config(values)
        except ParamError as error:
            problems += [problem for problem in error.problems if problem[0] not in self._rejected]
        try:
            resolve_weights(str(values["weights"]).strip())
        except ParamError as error:
            problems += error.problems
        if problems:
            raise ParamError(problems)
        predictor = load_node_predictor(config, self.get_logger())
        points = config.points_options(predictor.class_names)   # the card's names: known only now
        device = device_description(predictor)
        names = camera_list(config.cameras)
        run = Running(config=config, predictor=predictor, points_options=points, types=ros_message_types(),
                      device=device, cameras={name: Camera(name, Stats(device=device)) for name in names})
        run.worker = InferenceWorker(lambda msgs: process_frames(run, msgs, self.get_logger(), self._now_ns),
                                     lambda stopping: warm_up(run, stopping, self.get_logger()),
                                     lambda error: frame_failed(run, error, self.get_logger()),
                                     CameraSlots(names, gather_s=config.batch_wait_s))
        self._run = run
        for camera in run.cameras.values():
            self._subscribe(run, camera, subscription_qos(config, self._offered_reliabilities(config, camera)))
        self._sync_outputs(run)
        self._sync_status_timer(run, None)
        run.worker.start()
        if not run.worker.wait_warmed(give_up=self._stop_requested.is_set):
            self._release(EXIT_WAIT_S)
            raise TransitionFailed("interrupted during the warm-up")
        self.failure = ""
        listening = ", ".join(f"'{camera.subscription.topic_name}'" for camera in run.cameras.values())
        self.get_logger().info(
            f"configured: {predictor.card.model.num_classes} classes on {run.device}; listening on "
            f"{listening} ({config.input_transport}, {run.first.reliability})")

    def _activate(self) -> None:
        run = self._run
        for camera in run.cameras.values():
            camera.listening_since = time.monotonic()
            if camera.label_pub is not None:
                self._publish_classes(run, camera)
        run.active = True
        outputs = [*run.config.outputs, *(["points"] if run.config.publish_points else [])]
        self.get_logger().info(f"active: publishing {', '.join(outputs) or 'camera info only'}")

    def _deactivate(self, state) -> None:
        self._run.active = False
        self._run.worker.slot.clear()
        if super().on_deactivate(state) != TransitionCallbackReturn.SUCCESS:
            raise TransitionFailed("a publisher could not be deactivated")
        self.get_logger().info("inactive: frames are ignored and nothing is published")

    def _cleanup(self) -> None:
        self._release(CLEANUP_WAIT_S)
        self.get_logger().info("cleaned up: the model and its memory are freed")

    def _release(self, wait_s: float) -> bool:
        """Stop the inference thread, destroy what configure made and free the model and its
        GPU memory. Idempotent. False if the thread is still busy in a long pass after
        ``wait_s``: it is left to end on its own."""
        run, self._run = self._run, None
        if run is None:
            return True
        run.active = False
        ended = run.worker.stop(wait_s)
        if not ended:
            self._lingering.append(run.worker)
            self.get_logger().log("the inference thread is still busy (a long warm-up or frame); it ends "
                                  "on its own and frees the model then", LoggingSeverity.WARN)
        for camera in run.cameras.values():
            self._destroy_camera(camera)
        if run.status_timer is not None:
            self.destroy_timer(run.status_timer)
        on_gpu = run.predictor.device.type == "cuda"
        run.predictor = None
        gc.collect()
        if on_gpu:
            torch.cuda.empty_cache()
        return ended

    # ----- parameters -----------------------------------------------------------

    def _values(self) -> dict[str, Any]:
        return {spec.name: self.get_parameter(spec.name).value for spec in PARAMS}

    def _on_set_parameters(self, parameters: list) -> "SetParametersResult":
        """A set at run time, judged by the start-up rules; a live one takes effect at once."""
        changes = {p.name: p.value for p in parameters if p.name in PARAMS_BY_NAME}
        if not changes:
            return SetParametersResult(successful=True)
        run = self._run
        try:
            config = check_change(self._values(), changes, configured=run is not None)
            if run is not None and config is not None:
                self._apply_live(run, config)
        except (ParamError, ValueError) as error:
            return SetParametersResult(successful=False, reason=str(error))
        for name in changes:
            self._rejected.pop(name, None)
        return SetParametersResult(successful=True)

    def _apply_live(self, run: Running, config: NodeConfig) -> None:
        # first what may refuse the change: class names the model lacks, a display range
        points = config.points_options(run.predictor.class_names)
        run.predictor.set_display(**config.display_options())
        old, run.config, run.points_options = run.config, config, points
        run.worker.slot.gather_s = config.batch_wait_s
        self._sync_outputs(run)
        self._sync_status_timer(run, old)

    def _sync_status_timer(self, run: Running, old: NodeConfig | None) -> None:
        if old is None or old.log_period != run.config.log_period:
            if run.status_timer is not None:
                self.destroy_timer(run.status_timer)
            run.status_timer = (self.create_timer(run.config.log_period, self._log_status)
                                if run.config.log_period > 0 else None)

    # ----- once a second ----------------------------------------------------------

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _heartbeat(self) -> None:
        """Once a second: follow each camera's QoS, say why frames do not come, publish diagnostics."""
        run = self._run
        judged: list[tuple[str, Any]] = []
        if run is not None:
            for camera in run.cameras.values():
                self._follow_camera_qos(run, camera)
                if run.active:
                    judged.append((camera.name, self._judge(camera)))
        overall = worst_health(judged) if len(judged) > 1 else (judged[0][1] if judged else None)
        name, stamp = f"{self.get_name()}: inference", self.get_clock().now().to_msg()
        pairs = [("lifecycle state", self.state)]
        cameras = list(run.cameras.values()) if run is not None else []
        if len(cameras) == 1:
            pairs += cameras[0].stats.snapshot().as_pairs()
        elif cameras:
            pairs += [("device", run.device), ("cameras", ", ".join(run.cameras))]
        if run is not None:
            pairs += run.batches.snapshot().as_pairs()
        device = run.device if run is not None else ""
        statuses = [diagnostic_status(name, lifecycle_health(self.state, self.failure, overall), device, pairs)]
        if len(cameras) > 1:
            health = dict(judged)
            statuses += [diagnostic_status(
                f"{self.get_name()}: camera {camera.name}",
                health.get(camera.name) or lifecycle_health(self.state, self.failure, None), device,
                [("image topic", camera.subscription.topic_name), *camera.stats.snapshot().as_pairs()])
                for camera in cameras]
        self._diagnostics_pub.publish(diagnostic_array(statuses, stamp))

    def _log_status(self) -> None:
        run = self._run
        if run is None:
            return
        if len(run.cameras) == 1:
            line = format_log_line(run.first.stats.snapshot())
        else:
            line = "; ".join(f"{camera.name}: {format_log_line(camera.stats.snapshot())}"
                             for camera in run.cameras.values())
        self.get_logger().info(f"{self.state}: {line}; {run.batches.snapshot().summary()}")

    # ----- shutdown -------------------------------------------------------------

    def close(self, wait_s: float = CLEANUP_WAIT_S) -> bool:
        """Stop the inference thread and free the model. False if an inference thread (this
        one, or one a failed configure left) is still busy after ``wait_s``: the process
        should then exit without waiting for it."""
        self._release(wait_s)
        return not any(worker.alive for worker in self._lingering)

    def destroy_node(self) -> None:
        self.close()
        stop_forwarding(self._log_handler)
        super().destroy_node()
