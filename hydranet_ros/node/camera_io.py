"""Each camera's subscriptions and publishers on the node: made at configure and when a
live parameter switches an output on, resubscribed when the camera's QoS changes,
judged once a second. A mixin of ``HydraNetNode`` (it calls the node's rclpy
``create_*`` methods); the per-frame work is in ``frames``.
"""
from __future__ import annotations

import time
from typing import Any

from rclpy.logging import LoggingSeverity
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from ..messages.topics import CAMERA_INFO_TOPIC, DEPTH_CAMERA_INFO_TOPIC, LABEL_INFO_TOPIC, OUTPUT_SPECS, \
    POINTS_TOPIC, input_topic
from .cameras import Camera
from .frames import Running
from .health import Health, starvation
from .parameters import NodeConfig
from .qos import CAMERA_INFO_QOS, LATCHED_QOS, PUBLISHER_QOS, QosChoice, subscription_qos
from .ros_messages import LABEL_INFO_TYPE, LabelInfo, label_info_msg, qos_profile, reliability_name

# while no frame comes, say why at most this often
STARVED_LOG_PERIOD_S = 60.0


class CameraIO:
    """The per-camera half of ``HydraNetNode`` (which sets ``starved_after_s``)."""

    starved_after_s: float

    def _subscribe(self, run: Running, camera: Camera, choice: QosChoice) -> None:
        """(Re)subscribe to the camera with ``choice``; the old subscription goes once the new one exists."""
        message_type = CompressedImage if run.config.input_transport == "compressed" else Image
        old = camera.subscription
        camera.subscription = self.create_subscription(
            message_type, camera.topic(input_topic(run.config.input_transport)),
            lambda msg, name=camera.name: self._on_image(name, msg), qos_profile(choice))
        camera.reliability = choice.reliability
        if old is not None:
            self.destroy_subscription(old)

    def _sync_outputs(self, run: Running) -> None:
        """Create what the config switches on, for every camera (live switches included).
        An output switched off keeps its publisher and gets nothing; the latched classes go
        with their switch, so that a late joiner does not get them."""
        for camera in run.cameras.values():
            self._sync_camera(run, camera)
        if not run.config.publish_label_info:
            for camera in run.cameras.values():
                if camera.label_pub is not None:
                    self.destroy_lifecycle_publisher(camera.label_pub)
                    camera.label_pub = None

    def _sync_camera(self, run: Running, camera: Camera) -> None:
        config, publisher_qos = run.config, qos_profile(PUBLISHER_QOS)
        missing = [spec for spec in OUTPUT_SPECS if spec.name in config.outputs and spec.name not in camera.image_pubs]
        if missing:
            pubs = dict(camera.image_pubs)
            pubs.update({spec.name: self._lifecycle_publisher(run, Image, camera.topic(spec.topic), publisher_qos)
                         for spec in missing})
            camera.image_pubs = pubs   # replaced whole: the inference thread reads it unlocked
        if config.publish_depth_camera_info and camera.info_pub is None:
            camera.info_pub = self._lifecycle_publisher(run, CameraInfo, camera.topic(DEPTH_CAMERA_INFO_TOPIC),
                                                        publisher_qos)
        if config.publish_points and camera.points_pub is None:
            camera.points_pub = self._lifecycle_publisher(run, PointCloud2, camera.topic(POINTS_TOPIC), publisher_qos)
        if config.wants_camera_info and camera.info_sub is None:
            camera.info_sub = self.create_subscription(
                CameraInfo, camera.topic(CAMERA_INFO_TOPIC),
                lambda msg, name=camera.name: self._on_camera_info(name, msg), qos_profile(CAMERA_INFO_QOS))
        if config.publish_label_info and camera.label_pub is None:
            camera.label_pub = self._lifecycle_publisher(run, LABEL_INFO_TYPE, camera.topic(LABEL_INFO_TOPIC),
                                                         qos_profile(LATCHED_QOS))
            if LabelInfo is None:
                self.get_logger().log(f"vision_msgs is not installed; {LABEL_INFO_TOPIC} carries std_msgs/String "
                                      "JSON instead of vision_msgs/LabelInfo", LoggingSeverity.WARN, once=True)
            if run.active:
                self._publish_classes(run, camera)

    def _publish_classes(self, run: Running, camera: Camera) -> None:
        camera.label_pub.publish(label_info_msg(run.predictor.card, self.get_clock().now().to_msg()))

    def _lifecycle_publisher(self, run: Running, message_type: type, topic: str, qos: Any) -> Any:
        publisher = self.create_lifecycle_publisher(message_type, topic, qos)
        if run.active:   # switched on live: the activation it missed
            publisher.on_activate(None)
        return publisher

    def _destroy_camera(self, camera: Camera) -> None:
        for subscription in camera.subscriptions():
            self.destroy_subscription(subscription)
        for publisher in camera.publishers():
            self.destroy_lifecycle_publisher(publisher)

    def _offered_reliabilities(self, config: NodeConfig, camera: Camera) -> list[str]:
        """What each publisher on the camera's image topic offers, for ``qos_reliability: auto``."""
        topic = self.resolve_topic_name(camera.topic(input_topic(config.input_transport)))
        return [reliability_name(info.qos_profile.reliability) for info in self.get_publishers_info_by_topic(topic)]

    # ----- callbacks (executor thread) ------------------------------------------

    def _on_image(self, name: str, msg: Any) -> None:
        run = self._run
        if run is not None and run.active:
            run.cameras[name].stats.frame_received(replaced=run.worker.slot.put(name, msg))

    def _on_camera_info(self, name: str, msg: Any) -> None:
        run = self._run
        if run is not None:
            run.cameras[name].camera_info = msg

    # ----- once a second ----------------------------------------------------------

    def _follow_camera_qos(self, run: Running, camera: Camera) -> None:
        offered = self._offered_reliabilities(run.config, camera)
        if not offered:
            return   # the camera is gone: keep what suited it, for when it comes back
        choice = subscription_qos(run.config, offered)
        if choice.reliability != camera.reliability:
            self._subscribe(run, camera, choice)
            self.get_logger().info(f"the publishers on '{camera.subscription.topic_name}' call for a "
                                   f"{choice.reliability} subscription (qos_reliability auto): resubscribed")

    def _judge(self, camera: Camera) -> Health:
        """The camera's health since the last heartbeat, and why no frame comes if none does."""
        snap = camera.stats.snapshot()
        topic = camera.subscription.topic_name
        health = camera.judge.judge(snap, topic)
        waited = (snap.seconds_since_frame if snap.seconds_since_frame is not None
                  else time.monotonic() - camera.listening_since)
        offered = self.count_publishers(topic)
        # Subscription.get_publisher_count (matched publishers) is missing in Humble's rclpy
        matched = camera.subscription.get_publisher_count() \
            if hasattr(camera.subscription, "get_publisher_count") else offered
        note = starvation(topic, offered, matched, waited, camera.reliability, self.starved_after_s)
        if note:
            self.get_logger().log(note, LoggingSeverity.WARN, throttle_duration_sec=STARVED_LOG_PERIOD_S)
        camera.starved_note = note or ""
        if note:
            health.level, health.message = "warn", note
        return health
