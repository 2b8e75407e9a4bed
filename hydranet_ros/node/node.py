"""The ROS 2 node, ``hydranet_node``: a managed (lifecycle) node.

``configure`` reads and checks the parameters, loads the weights and warms up in
the inference thread; ``activate`` starts processing and publishing; ``deactivate``
ignores frames and publishes nothing; ``cleanup`` frees the model and its GPU memory;
``shutdown`` ends the process (``main.py``). With ``autostart`` (the default) the
process configures and activates at once, so it runs like a plain node.

A thin rclpy shell: decisions live in ``parameters``, ``health`` and ``qos`` (tested
without ROS), the per-frame work in ``frames`` and the messages in ``ros_messages``.
The subscription only parks the newest frame in the inference thread's slot
(``worker``), so a slow GPU drops frames rather than queueing them.

The module is longer than most because it is one state machine: the transitions and
the publishers, subscriptions and timers they create and destroy stay together.
"""
from __future__ import annotations

import gc
import threading
import time
from typing import Any, Callable

import torch

from ..messages.topics import CAMERA_INFO_TOPIC, DEPTH_CAMERA_INFO_TOPIC, LABEL_INFO_TOPIC, OUTPUT_SPECS, input_topic
from .health import STARVED_AFTER_S, Stats, format_log_line, lifecycle_health, starvation
from .parameters import NODE_NAME, PARAMS, PARAMS_BY_NAME, NodeConfig, ParamError, check_change, load_config, \
    resolve_weights
from .qos import CAMERA_INFO_QOS, DIAGNOSTICS_QOS, LATCHED_QOS, PUBLISHER_QOS, QosChoice, subscription_qos
from .worker import InferenceWorker

# rclpy is imported here, not lazily, because the node class derives from it; the
# guard only exists so that `hydranet_node --help` works where ROS 2 is not sourced
# (main.py reports ROS_IMPORT_ERROR then).
try:
    from diagnostic_msgs.msg import DiagnosticArray
    from rcl_interfaces.msg import SetParametersResult
    from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
    from rclpy.logging import LoggingSeverity
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image

    from .frames import Running, device_description, frame_failed, load_node_predictor, process_frame, warm_up
    from .ros_logging import forward_package_logs, stop_forwarding
    from .ros_messages import LABEL_INFO_TYPE, LabelInfo, diagnostic_array, label_info_msg, qos_profile, \
        reliability_name
    from .ros_parameters import declare_parameters, warn_unknown_overrides
except ImportError as _error:  # pragma: no cover - exercised only without ROS 2
    ROS_IMPORT_ERROR: ImportError | None = _error
    LifecycleNode = object  # type: ignore[assignment,misc]
else:
    ROS_IMPORT_ERROR = None

# how often diagnostics are published and the camera's QoS and silence are checked
HEARTBEAT_S = 1.0
# how long cleanup waits for a frame in progress; at exit (and after a failed
# configure) only EXIT_WAIT_S: a pass that takes longer ends on its own
CLEANUP_WAIT_S = 10.0
EXIT_WAIT_S = 2.0
# while no frame comes, say why at most this often
STARVED_LOG_PERIOD_S = 60.0


class TransitionFailed(Exception):
    """A transition that cannot complete; the message says why (and goes to the log)."""


class HydraNetNode(LifecycleNode):
    """Subscribes to ``image`` (or ``image/compressed``) and publishes depth, labels and overlays."""

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
        run = Running(config=config, predictor=predictor, stats=Stats(device=device_description(predictor)))
        run.worker = InferenceWorker(lambda msg: process_frame(run, msg, self.get_logger(), self._now_ns),
                                     lambda stopping: warm_up(run, stopping, self.get_logger()),
                                     lambda error: frame_failed(run, error, self.get_logger()))
        self._run = run
        self._subscribe(run, subscription_qos(config, self._offered_reliabilities(config)))
        self._sync_outputs(run, None)
        run.worker.start()
        if not run.worker.wait_warmed(give_up=self._stop_requested.is_set):
            self._release(EXIT_WAIT_S)
            raise TransitionFailed("interrupted during the warm-up")
        self.failure = ""
        self.get_logger().info(
            f"configured: {predictor.card.model.num_classes} classes on {run.stats.device}; listening on "
            f"'{run.subscription.topic_name}' ({config.input_transport}, {run.reliability})")

    def _activate(self) -> None:
        run = self._run
        run.listening_since = time.monotonic()
        if run.label_pub is not None:
            run.label_pub.publish(label_info_msg(run.predictor.card, self.get_clock().now().to_msg()))
        run.active = True
        self.get_logger().info(f"active: publishing {', '.join(run.config.outputs) or 'camera info only'}")

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
        for subscription in (run.subscription, run.info_sub):
            if subscription is not None:
                self.destroy_subscription(subscription)
        for publisher in (*run.image_pubs.values(), run.info_pub, run.label_pub):
            if publisher is not None:
                self.destroy_lifecycle_publisher(publisher)
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
        run.predictor.set_display(**config.display_options())   # first: it may refuse
        old, run.config = run.config, config
        self._sync_outputs(run, old)

    # ----- publishers and subscriptions -----------------------------------------

    def _subscribe(self, run: Running, choice: QosChoice) -> None:
        """(Re)subscribe to the camera with ``choice``; the old subscription goes once the new one exists."""
        message_type = CompressedImage if run.config.input_transport == "compressed" else Image
        old = run.subscription
        run.subscription = self.create_subscription(message_type, input_topic(run.config.input_transport),
                                                    self._on_image, qos_profile(choice))
        run.reliability = choice.reliability
        if old is not None:
            self.destroy_subscription(old)

    def _sync_outputs(self, run: Running, old: NodeConfig | None) -> None:
        """Create what the config switches on (live switches included) and the status timer.
        An image output switched off keeps its publisher and gets nothing; the latched
        classes go with their switch, so that a late joiner does not get them."""
        config, publisher_qos = run.config, qos_profile(PUBLISHER_QOS)
        missing = [spec for spec in OUTPUT_SPECS if spec.name in config.outputs and spec.name not in run.image_pubs]
        if missing:
            pubs = dict(run.image_pubs)
            pubs.update({spec.name: self._lifecycle_publisher(run, Image, spec.topic, publisher_qos)
                         for spec in missing})
            run.image_pubs = pubs   # replaced whole: the inference thread reads it unlocked
        if config.publish_depth_camera_info and run.info_pub is None:
            run.info_pub = self._lifecycle_publisher(run, CameraInfo, DEPTH_CAMERA_INFO_TOPIC, publisher_qos)
            run.info_sub = self.create_subscription(CameraInfo, CAMERA_INFO_TOPIC, self._on_camera_info,
                                                    qos_profile(CAMERA_INFO_QOS))
        if config.publish_label_info and run.label_pub is None:
            run.label_pub = self._lifecycle_publisher(run, LABEL_INFO_TYPE, LABEL_INFO_TOPIC, qos_profile(LATCHED_QOS))
            if LabelInfo is None:
                self.get_logger().log(f"vision_msgs is not installed; {LABEL_INFO_TOPIC} carries std_msgs/String "
                                      "JSON instead of vision_msgs/LabelInfo", LoggingSeverity.WARN)
            if run.active:
                run.label_pub.publish(label_info_msg(run.predictor.card, self.get_clock().now().to_msg()))
        elif not config.publish_label_info and run.label_pub is not None:
            self.destroy_lifecycle_publisher(run.label_pub)
            run.label_pub = None
        if old is None or old.log_period != config.log_period:
            if run.status_timer is not None:
                self.destroy_timer(run.status_timer)
            run.status_timer = (self.create_timer(config.log_period, self._log_status)
                                if config.log_period > 0 else None)

    def _lifecycle_publisher(self, run: Running, message_type: type, topic: str, qos: Any) -> Any:
        publisher = self.create_lifecycle_publisher(message_type, topic, qos)
        if run.active:   # switched on live: the activation it missed
            publisher.on_activate(None)
        return publisher

    def _offered_reliabilities(self, config: NodeConfig) -> list[str]:
        """What each publisher on the camera topic offers, for ``qos_reliability: auto``."""
        topic = self.resolve_topic_name(input_topic(config.input_transport))
        return [reliability_name(info.qos_profile.reliability) for info in self.get_publishers_info_by_topic(topic)]

    # ----- callbacks (executor thread) ------------------------------------------

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _on_image(self, msg: Any) -> None:
        run = self._run
        if run is not None and run.active:
            run.stats.frame_received(replaced=run.worker.slot.put(msg))

    def _on_camera_info(self, msg: Any) -> None:
        run = self._run
        if run is not None:
            run.camera_info = msg

    def _heartbeat(self) -> None:
        """Once a second: follow the camera's QoS, say why frames do not come, publish diagnostics."""
        run = self._run
        judged = None
        if run is not None:
            self._follow_camera_qos(run)
            if run.active:
                judged = self._judge(run)
        pairs = [("lifecycle state", self.state)] + (run.stats.snapshot().as_pairs() if run is not None else [])
        self._diagnostics_pub.publish(diagnostic_array(
            f"{self.get_name()}: inference", lifecycle_health(self.state, self.failure, judged),
            run.stats.device if run is not None else "", pairs, self.get_clock().now().to_msg()))

    def _follow_camera_qos(self, run: Running) -> None:
        offered = self._offered_reliabilities(run.config)
        if not offered:
            return   # the camera is gone: keep what suited it, for when it comes back
        choice = subscription_qos(run.config, offered)
        if choice.reliability != run.reliability:
            self._subscribe(run, choice)
            self.get_logger().info(f"the publishers on '{run.subscription.topic_name}' call for a "
                                   f"{choice.reliability} subscription (qos_reliability auto): resubscribed")

    def _judge(self, run: Running):
        snap = run.stats.snapshot()
        topic = run.subscription.topic_name
        health = run.judge.judge(snap, topic)
        waited = (snap.seconds_since_frame if snap.seconds_since_frame is not None
                  else time.monotonic() - run.listening_since)
        offered = self.count_publishers(topic)
        # Subscription.get_publisher_count (matched publishers) is missing in Humble's rclpy
        matched = run.subscription.get_publisher_count() if hasattr(run.subscription, "get_publisher_count") \
            else offered
        note = starvation(topic, offered, matched, waited, run.reliability, self.starved_after_s)
        if note:
            self.get_logger().log(note, LoggingSeverity.WARN, throttle_duration_sec=STARVED_LOG_PERIOD_S)
        run.starved_note = note or ""
        if note:
            health.level, health.message = "warn", note
        return health

    def _log_status(self) -> None:
        run = self._run
        if run is not None:
            self.get_logger().info(f"{self.state}: {format_log_line(run.stats.snapshot())}")

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
