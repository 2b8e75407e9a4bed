"""The node under test, in-process with a probe node on a private rclpy context: shared by
the test_node_ros*.py files. Each test there skips (with the reason) where rclpy cannot be
imported: a sourced ROS 2, or on Linux x86_64 the pip ROS 2 wheels, provide it."""
from __future__ import annotations

import itertools
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from conftest import make_card, make_model

from hydranet_ros.inference.predictor import load_predictor
from hydranet_ros.inference.weights import save_weights
from hydranet_ros.messages.builders import image_message, ros_message_types
from hydranet_ros.messages.topics import DEPTH_CAMERA_INFO_TOPIC, LABEL_INFO_TOPIC, OUTPUT_SPECS, POINTS_TOPIC

try:
    import rclpy
    from builtin_interfaces.msg import Time
    from diagnostic_msgs.msg import DiagnosticArray
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState, GetState
    from rcl_interfaces.srv import DescribeParameters, SetParameters
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
    from std_msgs.msg import Header

    from hydranet_ros.node import ros_messages
    from hydranet_ros.node.node import HydraNetNode
except ImportError as error:
    rclpy = None
    MISSING = str(error)
    RELIABLE = BEST_EFFORT = LATCHED = None   # the tests that use them skip
else:
    MISSING = ""
    RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
    BEST_EFFORT = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST)
    LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)

# the README's test command without a sourced ROS 2 (test_install checks they agree)
ROS_WHEELS_INSTALL = "python3 -m pip install -e '.[torch,test,ros]'"
ROS_SKIP = pytest.mark.skipif(
    rclpy is None, reason=f"rclpy cannot be imported ({MISSING}): source ROS 2 (/opt/ros/<distro>/setup.bash) "
                          f"or, on Linux x86_64, install the pip ROS 2 wheels: {ROS_WHEELS_INSTALL}")

WIDTH, HEIGHT = 64, 48
TIMEOUT_S = 30.0
ALL_OUTPUTS = {f"publish_{spec.name}": True for spec in OUTPUT_SPECS}
_stamps = itertools.count(1)


def next_stamp() -> int:
    """A stamp (seconds) no other frame of this run carries."""
    return next(_stamps)
_namespaces = itertools.count(1)


@pytest.fixture(scope="module")
def module_weights(tmp_path_factory) -> Path:
    card = make_card()
    path = tmp_path_factory.mktemp("weights") / "random_kitti6.safetensors"
    save_weights(path, make_model(card), card)
    return path


@pytest.fixture
def reference(module_weights):
    """The predictor the node wraps, run directly: what every output must equal."""
    return load_predictor(module_weights, device="cpu", precision="auto", backend="eager")


def rgb_frame(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def image_msg(pixels: np.ndarray, encoding: str, stamp: int, frame_id: str = "camera_optical") -> "Image":
    """A camera frame, built as the node builds its outputs."""
    header = Header(stamp=Time(sec=stamp, nanosec=1234), frame_id=frame_id)
    return image_message(ros_message_types(), header, np.ascontiguousarray(pixels), encoding)


def as_array(msg: "Image") -> np.ndarray:
    dtype = np.float32 if msg.encoding == "32FC1" else np.uint8
    flat = np.frombuffer(bytes(msg.data), dtype=dtype)
    channels = flat.size // (msg.height * msg.width)
    shape = (msg.height, msg.width) if channels == 1 else (msg.height, msg.width, channels)
    return flat.reshape(shape)


class Harness:
    """The node under test plus a probe node, on a private context and namespace."""

    def __init__(self, default_weights: Path, subscribe: tuple[str, ...] | None = None, start: bool = True,
                 camera_qos: "QoSProfile | None" = None, **params: Any) -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.namespace = f"/hydranet_test_{os.getpid()}_{next(_namespaces)}"
        # warm-up at the test size: the path runs, without a 640x480 CPU pass per node; eager
        # PyTorch: the CPU's default (onnxruntime) exports the network first, seconds per node
        values = {"weights": str(default_weights), "device": "cpu", "backend": "eager", "log_period": 0.0,
                  "warmup_size": f"{WIDTH}x{HEIGHT}", **ALL_OUTPUTS, **params}
        self.node = HydraNetNode(context=self.context, namespace=self.namespace,
                                 parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
        self.probe = Node("probe", context=self.context, namespace=self.namespace)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.probe)
        self.received: dict[str, list[Any]] = defaultdict(list)
        self.names = [spec.name for spec in OUTPUT_SPECS] if subscribe is None else list(subscribe)
        for spec in OUTPUT_SPECS:
            if spec.name in self.names:
                self._listen(Image, spec.topic, spec.name)
        self._listen(CameraInfo, DEPTH_CAMERA_INFO_TOPIC, "camera_info")
        self._listen(PointCloud2, POINTS_TOPIC, "points")
        camera_qos = camera_qos or RELIABLE
        self.image_pub = self.probe.create_publisher(Image, "image", camera_qos)
        self.compressed_pub = self.probe.create_publisher(CompressedImage, "image/compressed", camera_qos)
        self.info_pub = self.probe.create_publisher(CameraInfo, "camera_info", RELIABLE)
        self.input_pub = self.compressed_pub if params.get("input_transport") == "compressed" else self.image_pub
        if start:
            self.start()

    def start(self) -> None:
        """Configure and activate (what autostart does), then wait until the camera and the
        outputs are matched and the subscription follows the camera's QoS."""
        assert self.node.start(), self.node.failure
        self.wait_until_listening()

    def wait_until_listening(self) -> None:
        camera = self.node.running.first
        expected = self.node.get_parameter("qos_reliability").value
        if expected == "auto":
            offered = self.input_pub.qos_profile.reliability
            expected = "reliable" if offered == ReliabilityPolicy.RELIABLE else "best_effort"
        assert self.spin_until(lambda: camera.reliability == expected
                               and self.input_pub.get_subscription_count() > 0
                               and all(camera.image_pubs[n].get_subscription_count() > 0
                                       for n in self.names if n in camera.image_pubs)), "discovery timed out"

    def _listen(self, msg_type, topic: str, key: str, into: dict | None = None) -> None:
        into = self.received if into is None else into
        self.probe.create_subscription(msg_type, topic, lambda msg: into[key].append(msg), RELIABLE)

    def camera(self, name: str, outputs: tuple[str, ...]) -> "ProbeCamera":
        """A named camera of the node's ``cameras``: its publishers, and listeners on ``outputs``
        (image outputs, ``points``, ``camera_info``) under its name."""
        camera = ProbeCamera(name, self.probe.create_publisher(Image, f"{name}/image", RELIABLE),
                             self.probe.create_publisher(CameraInfo, f"{name}/camera_info", RELIABLE))
        topics = {spec.name: (Image, spec.topic) for spec in OUTPUT_SPECS}
        topics.update(points=(PointCloud2, POINTS_TOPIC), camera_info=(CameraInfo, DEPTH_CAMERA_INFO_TOPIC))
        for key in outputs:
            msg_type, topic = topics[key]
            self._listen(msg_type, f"{name}/{topic}", key, camera.received)
        return camera

    def spin_until(self, done: Callable[[], bool], timeout: float = TIMEOUT_S) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done():
                return True
            self.executor.spin_once(timeout_sec=0.02)
        return done()

    def spin_for(self, seconds: float) -> None:
        self.spin_until(lambda: False, timeout=seconds)

    def outputs_for(self, stamp: int, names: tuple[str, ...]) -> dict[str, "Image"]:
        """The output messages carrying ``stamp``, waiting until every one in ``names`` came."""
        def found() -> dict[str, Image]:
            return {name: msg for name in names for msg in self.received[name] if msg.header.stamp.sec == stamp}
        assert self.spin_until(lambda: len(found()) == len(names)), \
            f"outputs for stamp {stamp}: got {sorted(found())}, wanted {sorted(names)}"
        return found()

    def publish_frame(self) -> tuple[int, "Image", np.ndarray]:
        stamp = next_stamp()
        rgb = rgb_frame(stamp)
        sent = image_msg(rgb, "rgb8", stamp)
        self.image_pub.publish(sent)
        return stamp, sent, rgb

    def stamps_of(self, name: str) -> set[int]:
        return {msg.header.stamp.sec for msg in self.received[name]}

    def call(self, service_type, name: str, request) -> Any:
        """Call one of the node's services from the probe, as `ros2 param` or `ros2 lifecycle` would."""
        client = self.probe.create_client(service_type, f"{self.namespace}/hydranet_node/{name}")
        try:
            assert self.spin_until(lambda: client.service_is_ready()), f"service {name} not available"
            future = client.call_async(request)
            assert self.spin_until(future.done), f"service {name} did not answer"
            return future.result()
        finally:
            self.probe.destroy_client(client)

    def set_param(self, name: str, value: Any):
        request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        return self.call(SetParameters, "set_parameters", request).results[0]

    def change_state(self, label: str) -> bool:
        return self.call(ChangeState, "change_state", ChangeState.Request(transition=Transition(label=label))).success

    def describe(self, names: list[str]) -> dict[str, Any]:
        """The parameters' descriptors, as `ros2 param describe` gets them."""
        answer = self.call(DescribeParameters, "describe_parameters", DescribeParameters.Request(names=names))
        return dict(zip(names, answer.descriptors))

    def lifecycle_state(self) -> str:
        return self.call(GetState, "get_state", GetState.Request()).current_state.label

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.probe.destroy_node()
        if self.context.ok():
            rclpy.shutdown(context=self.context)


class ProbeCamera:
    """One named camera on the probe: what it publishes and what the node sent back for it."""

    def __init__(self, name: str, image_pub: Any, info_pub: Any) -> None:
        self.name, self.image_pub, self.info_pub = name, image_pub, info_pub
        self.received: dict[str, list[Any]] = defaultdict(list)

    def publish(self, pixels: np.ndarray) -> "Image":
        """A frame with a stamp of its own and the camera's frame_id; the message sent."""
        sent = image_msg(pixels, "rgb8", next_stamp(), frame_id=f"{self.name}_optical")
        self.image_pub.publish(sent)
        return sent

    def got(self, key: str, stamp: int) -> list[Any]:
        return [msg for msg in self.received[key] if msg.header.stamp.sec == stamp]


@pytest.fixture
def harness_factory(module_weights):
    made: list[Harness] = []

    def make(**kwargs) -> Harness:
        made.append(Harness(module_weights, **kwargs))
        return made[-1]
    yield make
    for harness in made:
        harness.close()


def check_outputs(outputs: dict[str, "Image"], sent: "Image", rgb: np.ndarray, reference) -> None:
    expected = reference.predict(rgb, tuple(outputs))
    for spec in OUTPUT_SPECS:
        if spec.name not in outputs:
            continue
        msg = outputs[spec.name]
        assert msg.encoding == spec.encoding, spec.name
        assert (msg.width, msg.height) == (sent.width, sent.height), spec.name
        assert msg.header.stamp == sent.header.stamp and msg.header.frame_id == sent.header.frame_id, spec.name
        want = getattr(expected, spec.name)
        got = as_array(msg)
        assert got.shape == want.shape, spec.name
        if spec.encoding == "32FC1":
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
            assert np.all(np.isfinite(got)) and np.all(got >= 0)
        else:
            np.testing.assert_array_equal(got, want, err_msg=spec.name)
    if "labels" in outputs:
        labels = as_array(outputs["labels"])
        assert labels.max() < reference.card.model.num_classes


def latched_classes(harness: Harness, timeout: float = 5.0) -> list[Any]:
    got: list[Any] = []
    # subscribing after the node published: only transient-local delivery gets it here
    subscription = harness.probe.create_subscription(ros_messages.LABEL_INFO_TYPE, LABEL_INFO_TOPIC, got.append,
                                                     LATCHED)
    harness.spin_until(lambda: bool(got), timeout=timeout)
    harness.probe.destroy_subscription(subscription)
    return got


def diagnostics_of(harness: Harness, every: bool = False) -> list[Any]:
    """The node's diagnostic statuses published from now on (at least one): its main status,
    or with ``every`` all of the node's statuses (those of each camera too)."""
    statuses: list[Any] = []
    subscription = harness.probe.create_subscription(DiagnosticArray, "/diagnostics",
                                                     lambda msg: statuses.extend(msg.status), RELIABLE)
    name = f"{harness.node.get_name()}: inference"
    harness.spin_until(lambda: any(s.name == name for s in statuses), timeout=10.0)
    harness.probe.destroy_subscription(subscription)
    ours = [s for s in statuses if s.name == name or (every and s.name.startswith(f"{harness.node.get_name()}: "))]
    assert ours, "no diagnostics from the node"
    return ours
