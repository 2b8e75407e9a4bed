"""hydranet_node with real rclpy: every encoding in, every output topic checked, live
parameters, the lifecycle, the camera's QoS, signals.

These start the node in-process on its own rclpy context, publish images from a probe
node and check each output's encoding, size, header and values against the predictor
run directly. They need rclpy: a sourced ROS 2, or on Linux x86_64 the pip ROS 2
wheels that the README's test command installs; each test skips (with the reason)
where neither is there. A small random-weight model and 64x48 images, which the
default transport delivers whole, keep them quick.
"""
from __future__ import annotations

import array
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import pytest
from conftest import make_card, make_model

from hydranet_ros.inference.predictor import load_predictor
from hydranet_ros.inference.weights import CARD_KEY, save_weights
from hydranet_ros.messages.image import array_to_fields, decode_image
from hydranet_ros.messages.topics import DEPTH_CAMERA_INFO_TOPIC, LABEL_INFO_TOPIC, OUTPUT_SPECS

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
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image
    from std_msgs.msg import Header

    from hydranet_ros.node import ros_messages
    from hydranet_ros.node.node import HydraNetNode
except ImportError as error:
    rclpy = None
    MISSING = str(error)
else:
    MISSING = ""
    RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
    BEST_EFFORT = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST)
    LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)

pytestmark = pytest.mark.skipif(
    rclpy is None, reason=f"rclpy cannot be imported ({MISSING}): source ROS 2 (/opt/ros/<distro>/setup.bash) "
                          "or, on Linux x86_64, install the pip ROS 2 wheels: pip install -e '.[test,ros]'")

WIDTH, HEIGHT = 64, 48
TIMEOUT_S = 30.0
ALL_OUTPUTS = {f"publish_{spec.name}": True for spec in OUTPUT_SPECS}
_stamps = itertools.count(1)
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


def encode(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """An RGB frame as a camera would send it in ``encoding``."""
    if encoding == "rgb8":
        return rgb
    if encoding == "bgr8":
        return rgb[:, :, ::-1]
    if encoding == "rgba8":
        return np.dstack([rgb, np.full((HEIGHT, WIDTH), 255, np.uint8)])
    if encoding == "bgra8":
        return np.dstack([rgb[:, :, ::-1], np.full((HEIGHT, WIDTH), 255, np.uint8)])
    if encoding == "mono8":
        return rgb[:, :, 1]
    if encoding == "mono16":
        return rgb[:, :, 1].astype(np.uint16) * 257
    if encoding in ("rgb16", "bgr16"):
        wide = rgb.astype(np.uint16) * 257
        return wide if encoding == "rgb16" else wide[:, :, ::-1]
    if encoding in ("yuv422", "yuv422_yuy2"):
        return np.random.default_rng(0).integers(16, 235, (HEIGHT, WIDTH, 2), dtype=np.uint8)
    raise AssertionError(encoding)


def image_msg(pixels: np.ndarray, encoding: str, stamp: int, frame_id: str = "camera_optical") -> "Image":
    fields = array_to_fields(np.ascontiguousarray(pixels), encoding)
    msg = Image(header=Header(stamp=Time(sec=stamp, nanosec=1234), frame_id=frame_id),
                height=fields.height, width=fields.width, encoding=fields.encoding,
                is_bigendian=fields.is_bigendian, step=fields.step)
    msg.data = array.array("B", fields.data)
    return msg


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
        run = self.node.running
        expected = self.node.get_parameter("qos_reliability").value
        if expected == "auto":
            offered = self.input_pub.qos_profile.reliability
            expected = "reliable" if offered == ReliabilityPolicy.RELIABLE else "best_effort"
        assert self.spin_until(lambda: run.reliability == expected
                               and self.input_pub.get_subscription_count() > 0
                               and all(run.image_pubs[n].get_subscription_count() > 0
                                       for n in self.names if n in run.image_pubs)), "discovery timed out"

    def _listen(self, msg_type, topic: str, key: str) -> None:
        self.probe.create_subscription(msg_type, topic, lambda msg: self.received[key].append(msg), RELIABLE)

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
        stamp = next(_stamps)
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

    def lifecycle_state(self) -> str:
        return self.call(GetState, "get_state", GetState.Request()).current_state.label

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.probe.destroy_node()
        if self.context.ok():
            rclpy.shutdown(context=self.context)


@pytest.fixture
def harness_factory(module_weights):
    made: list[Harness] = []

    def make(**kwargs) -> Harness:
        made.append(Harness(module_weights, **kwargs))
        return made[-1]
    yield make
    for harness in made:
        harness.close()


@pytest.fixture(scope="module")
def shared(module_weights):
    """One node for the per-encoding tests: starting one per encoding would dominate the run."""
    if rclpy is None:
        pytest.skip("rclpy cannot be imported")
    harness = Harness(module_weights)
    yield harness
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


# ----- outputs ----------------------------------------------------------------------

ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "rgb16", "bgr16", "yuv422", "yuv422_yuy2")


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_output_for_each_encoding(shared, reference, encoding):
    stamp = next(_stamps)
    sent = image_msg(encode(rgb_frame(stamp), encoding), encoding, stamp)
    rgb = decode_image(sent.height, sent.width, sent.encoding, sent.is_bigendian, sent.step, sent.data)
    shared.image_pub.publish(sent)
    names = tuple(spec.name for spec in OUTPUT_SPECS)
    check_outputs(shared.outputs_for(stamp, names), sent, rgb, reference)


def test_depth_camera_info_follows_the_depth_image(shared):
    info = CameraInfo(header=Header(frame_id="camera_optical"), width=WIDTH, height=HEIGHT,
                      distortion_model="plumb_bob", d=[0.1, -0.05, 0.0, 0.0, 0.0],
                      k=[50.0, 0.0, 32.0, 0.0, 51.0, 24.0, 0.0, 0.0, 1.0],
                      r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                      p=[50.0, 0.0, 32.0, 0.0, 0.0, 51.0, 24.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    assert shared.spin_until(lambda: shared.info_pub.get_subscription_count() > 0)
    shared.info_pub.publish(info)
    assert shared.spin_until(lambda: shared.node.running.camera_info is not None)
    stamp, sent, _ = shared.publish_frame()
    out = shared.outputs_for(stamp, ("depth", "camera_info"))["camera_info"]
    assert out.header.stamp == sent.header.stamp and out.header.frame_id == sent.header.frame_id
    assert (out.width, out.height) == (WIDTH, HEIGHT)    # outputs are at input resolution
    np.testing.assert_allclose(out.k, info.k)
    np.testing.assert_allclose(out.p, info.p)
    np.testing.assert_allclose(out.d, info.d)
    assert out.distortion_model == "plumb_bob"


def _latched_classes(harness: Harness, timeout: float = 5.0) -> list[Any]:
    got: list[Any] = []
    # subscribing after the node published: only transient-local delivery gets it here
    subscription = harness.probe.create_subscription(ros_messages.LABEL_INFO_TYPE, LABEL_INFO_TOPIC, got.append,
                                                     LATCHED)
    harness.spin_until(lambda: bool(got), timeout=timeout)
    harness.probe.destroy_subscription(subscription)
    return got


def test_class_names_are_latched(shared, reference):
    got = _latched_classes(shared)
    assert got, "no latched label info"
    names = list(reference.card.class_names)
    if ros_messages.LabelInfo is not None:
        class_map = {c.class_id: c.class_name for c in got[0].class_map}
        assert [class_map[i] for i in range(len(names))] == names and class_map[255] == "unlabeled"
    else:
        data = json.loads(got[0].data)
        assert [c["name"] for c in data["classes"][:len(names)]] == names
        assert [tuple(c["colour"]) for c in data["classes"][:len(names)]] == [tuple(c) for c in reference.card.palette]


def _bad_frames(stamp: int) -> list[tuple[str, "Image"]]:
    """(reason the node must give, frame) for each kind of bad raw frame."""
    unsupported = image_msg(rgb_frame(0), "rgb8", stamp)
    unsupported.encoding = "bogus_encoding"
    short = image_msg(rgb_frame(0), "rgb8", stamp)
    short.data = array.array("B", bytes(short.data)[:100])
    empty = image_msg(rgb_frame(0), "rgb8", stamp)
    empty.width, empty.step, empty.data = 0, 0, array.array("B")
    too_big = image_msg(np.zeros((HEIGHT * 2, WIDTH * 2, 3), np.uint8), "rgb8", stamp)
    return [("unsupported encoding", unsupported), ("expected step x height", short), ("empty image", empty),
            ("exceeds the limit", too_big)]


def test_bad_frames_are_dropped_counted_and_survived(harness_factory, reference):
    harness = harness_factory(max_input_pixels=WIDTH * HEIGHT)
    stats = harness.node.running.stats
    for reason, msg in _bad_frames(next(_stamps)):
        before = stats.bad
        harness.image_pub.publish(msg)
        assert harness.spin_until(lambda: stats.bad == before + 1), reason
        assert reason in stats.last_error
    stamp, sent, rgb = harness.publish_frame()
    check_outputs(harness.outputs_for(stamp, ("depth", "labels")), sent, rgb, reference)


def test_unsubscribed_outputs_are_not_computed(harness_factory):
    # a warm-up that takes a while (seconds on a CPU): were it still running when the
    # harness returns, its passes would show up below
    harness = harness_factory(subscribe=("depth",), warmup_size="640x480")
    predictor = harness.node.running.predictor
    requested: list[tuple[str, ...]] = []
    predict = predictor.predict

    def recording_predict(image, outputs, *args, **kwargs):
        requested.append(tuple(outputs))
        return predict(image, outputs, *args, **kwargs)
    # configure returned after the warm-up, so every call recorded here is a frame's
    predictor.predict = recording_predict
    stamp, _, _ = harness.publish_frame()
    harness.outputs_for(stamp, ("depth",))
    assert requested == [("depth",)]
    assert not harness.received["overlay"] and not harness.received["labels"]


def test_nobody_listening_costs_no_inference(harness_factory):
    harness = harness_factory(subscribe=(), publish_depth_camera_info=False)
    stats = harness.node.running.stats
    harness.publish_frame()
    assert harness.spin_until(lambda: stats.idle == 1)
    assert stats.processed == 0


def test_compressed_input(harness_factory, reference):
    harness = harness_factory(input_transport="compressed")
    stamp = next(_stamps)
    rgb = rgb_frame(stamp)
    ok, png = cv2.imencode(".png", rgb[:, :, ::-1])
    assert ok
    sent = CompressedImage(header=Header(stamp=Time(sec=stamp, nanosec=5), frame_id="cam"), format="png")
    sent.data = array.array("B", png.tobytes())
    harness.compressed_pub.publish(sent)
    outputs = harness.outputs_for(stamp, ("depth", "overlay"))
    proxy = image_msg(rgb, "rgb8", stamp, frame_id="cam")
    proxy.header = sent.header
    check_outputs(outputs, proxy, rgb, reference)

    corrupt = CompressedImage(header=sent.header, format="jpeg")
    corrupt.data = array.array("B", b"\xff\xd8 definitely not a jpeg")
    stats = harness.node.running.stats
    before = stats.bad
    harness.compressed_pub.publish(corrupt)
    assert harness.spin_until(lambda: stats.bad == before + 1)
    assert "could not be decoded" in stats.last_error


def test_newest_frame_wins_under_a_burst(harness_factory):
    harness = harness_factory(subscribe=("depth",))
    stamps = [next(_stamps) for _ in range(30)]
    for stamp in stamps:
        harness.image_pub.publish(image_msg(rgb_frame(stamp), "rgb8", stamp))
    harness.outputs_for(stamps[-1], ("depth",))       # the newest frame is always processed
    stats = harness.node.running.stats
    assert harness.spin_until(lambda: stats.received == stats.processed + stats.dropped + stats.idle)
    got = [msg.header.stamp.sec for msg in harness.received["depth"]]
    assert got == sorted(got)                          # never an older frame after a newer one


def _diagnostics(harness: Harness) -> list[Any]:
    """The node's diagnostic statuses published from now on (at least one)."""
    statuses: list[Any] = []
    subscription = harness.probe.create_subscription(DiagnosticArray, "/diagnostics",
                                                     lambda msg: statuses.extend(msg.status), RELIABLE)
    name = f"{harness.node.get_name()}: inference"
    harness.spin_until(lambda: any(s.name == name for s in statuses), timeout=10.0)
    harness.probe.destroy_subscription(subscription)
    ours = [s for s in statuses if s.name == name]
    assert ours, "no diagnostics from the node"
    return ours


def test_diagnostics_report_the_counters_and_the_lifecycle_state(harness_factory):
    harness = harness_factory()
    values = {kv.key: kv.value for kv in _diagnostics(harness)[-1].values}
    assert {"device", "frame rate (Hz)", "frames dropped (newer frame arrived)", "frames bad (could not decode)"} \
        <= set(values)
    assert values["lifecycle state"] == "active"
    assert harness.change_state("deactivate")
    last = _diagnostics(harness)[-1]
    assert {kv.key: kv.value for kv in last.values}["lifecycle state"] == "inactive"
    assert "inactive" in last.message


# ----- parameters ---------------------------------------------------------------------

def _expected_changes(reference, display: dict[str, Any], rgb: np.ndarray, names: tuple[str, ...]):
    reference.set_display(**display)
    return reference.predict(rgb, names)


@pytest.mark.parametrize("name, value, output", [
    ("overlay_alpha", 0.0, "overlay"),
    ("depth_colormap", "viridis", "depth_colour"),
    ("depth_display_max", 0.5, "depth_colour"),     # depth values: times the frame's largest depth
    ("depth_display_min", 0.3, "depth_colour"),
])
def test_a_live_display_parameter_changes_the_next_output(harness_factory, reference, name, value, output):
    # the random weights' depths are small: a display range that fits them makes a change visible
    top = float(reference.predict(rgb_frame(0), ("depth",)).depth.max())
    if name.startswith("depth_display"):
        value *= top
    display = dict(overlay_alpha=0.5, depth_colormap="turbo", depth_range=(0.0, 1.5 * top))
    harness = harness_factory(subscribe=(output,), depth_display_max=1.5 * top)
    result = harness.set_param(name, value)
    assert result.successful, result.reason
    assert harness.node.get_parameter(name).value == value
    changed = dict(display)
    if name.startswith("depth_display"):
        lo, hi = display["depth_range"]
        changed["depth_range"] = (value, hi) if name.endswith("min") else (lo, value)
    else:
        changed[name] = value
    stamp, sent, rgb = harness.publish_frame()
    got = as_array(harness.outputs_for(stamp, (output,))[output])
    before = getattr(_expected_changes(reference, display, rgb, (output,)), output)
    after = getattr(_expected_changes(reference, changed, rgb, (output,)), output)
    assert not np.array_equal(before, after), "the test's change must be visible"
    np.testing.assert_array_equal(got, after)


def test_live_output_switches(harness_factory):
    harness = harness_factory(subscribe=("depth", "overlay", "segm_colour"), publish_segm_colour=False)
    assert "segm_colour" not in harness.node.running.image_pubs   # off: not even advertised
    assert harness.set_param("publish_overlay", False).successful
    assert harness.set_param("publish_segm_colour", True).successful
    run = harness.node.running
    assert harness.spin_until(lambda: run.image_pubs["segm_colour"].get_subscription_count() > 0)
    stamp, _, _ = harness.publish_frame()
    harness.outputs_for(stamp, ("depth", "segm_colour"))
    harness.spin_for(0.5)
    assert stamp not in harness.stamps_of("overlay")

    # camera info: switched off, the next frame has a depth image but no depth/camera_info
    harness.info_pub.publish(CameraInfo(width=WIDTH, height=HEIGHT, k=[50.0, 0, 32, 0, 50, 24, 0, 0, 1]))
    assert harness.spin_until(lambda: run.camera_info is not None)
    stamp, _, _ = harness.publish_frame()
    harness.outputs_for(stamp, ("depth", "camera_info"))
    assert harness.set_param("publish_depth_camera_info", False).successful
    stamp, _, _ = harness.publish_frame()
    harness.outputs_for(stamp, ("depth",))
    harness.spin_for(0.5)
    assert stamp not in harness.stamps_of("camera_info")

    # the latched classes go with their switch and come back with it
    assert harness.set_param("publish_label_info", False).successful
    assert not _latched_classes(harness, timeout=1.0)
    assert harness.set_param("publish_label_info", True).successful
    assert _latched_classes(harness)


def test_live_log_period(harness_factory, capfd):
    harness = harness_factory(subscribe=("depth",))
    harness.spin_for(0.5)
    assert "fps on cpu" not in capfd.readouterr().err          # log_period 0: no status lines
    assert harness.set_param("log_period", 0.2).successful
    harness.spin_for(1.0)
    assert "active: 0.0 fps on cpu" in capfd.readouterr().err
    assert harness.set_param("log_period", 0.0).successful
    harness.spin_for(0.6)
    assert "fps on cpu" not in capfd.readouterr().err


@pytest.mark.parametrize("name, value, fragment", [
    ("overlay_alpha", 1.5, "out of range"),                     # the descriptor's range
    ("overlay_alpha", "opaque", "expected a number"),           # the node's own rule
    ("depth_display_min", 50.0, "must be below depth_display_max"),
    ("publish_depth", False, "nothing to publish"),
    ("weights", "/nonexistent.safetensors", "read at configure"),
    ("device", "cuda", "read at configure"),
    ("qos_reliability", "reliable", "read at configure"),
    ("autostart", False, "read-only"),
])
def test_a_refused_set_keeps_the_old_value_and_says_why(harness_factory, name, value, fragment):
    only_depth = {**{key: False for key in ALL_OUTPUTS}, "publish_depth": True, "publish_depth_camera_info": False}
    harness = harness_factory(subscribe=("depth",), depth_display_max=40.0, **only_depth)
    old = harness.node.get_parameter(name).value
    result = harness.set_param(name, value)
    assert not result.successful and fragment in result.reason, result.reason
    assert harness.node.get_parameter(name).value == old
    stamp, _, _ = harness.publish_frame()
    harness.outputs_for(stamp, ("depth",))   # and the node carries on


def test_describe_shows_ranges_and_read_only(harness_factory):
    harness = harness_factory(start=False)
    names = ["overlay_alpha", "qos_depth", "autostart", "depth_colormap"]
    descriptors = dict(zip(names, harness.call(DescribeParameters, "describe_parameters",
                                               DescribeParameters.Request(names=names)).descriptors))
    alpha = descriptors["overlay_alpha"].floating_point_range[0]
    assert (alpha.from_value, alpha.to_value) == (0.0, 1.0)
    assert descriptors["qos_depth"].integer_range[0].from_value == 1
    assert descriptors["autostart"].read_only and not descriptors["overlay_alpha"].read_only
    assert "viridis" in descriptors["depth_colormap"].additional_constraints


def test_misspelt_overrides_are_named_with_the_closest_parameter(harness_factory, capfd):
    harness_factory(start=False, devcie="cpu", weigths="/x.safetensors")
    err = capfd.readouterr().err
    assert "'devcie' is not a parameter of hydranet_node" in err and "did you mean 'device'?" in err
    assert "did you mean 'weights'?" in err


# ----- lifecycle ------------------------------------------------------------------------

def test_lifecycle_walk(harness_factory, reference):
    harness = harness_factory(subscribe=("depth",), start=False, autostart=False)
    node = harness.node
    assert harness.lifecycle_state() == "unconfigured" and node.running is None
    assert not harness.change_state("activate")                # wrong state: refused, nothing changes
    assert harness.lifecycle_state() == "unconfigured"

    assert harness.change_state("configure")
    assert harness.lifecycle_state() == "inactive"
    assert not harness.change_state("configure")               # already configured
    harness.wait_until_listening()
    stamp, _, _ = harness.publish_frame()
    harness.spin_for(1.0)
    assert not harness.received["depth"] and node.running.stats.received == 0   # inactive: nothing

    assert harness.change_state("activate")
    stamp, sent, rgb = harness.publish_frame()
    check_outputs(harness.outputs_for(stamp, ("depth",)), sent, rgb, reference)

    assert harness.change_state("deactivate")
    stamp, _, _ = harness.publish_frame()
    harness.spin_for(1.0)
    assert stamp not in harness.stamps_of("depth")

    assert harness.change_state("activate")
    stamp, _, _ = harness.publish_frame()
    harness.outputs_for(stamp, ("depth",))

    predictor = weakref.ref(node.running.predictor)
    assert harness.change_state("deactivate") and harness.change_state("cleanup")
    assert harness.lifecycle_state() == "unconfigured" and node.running is None
    assert predictor() is None                                 # the model is freed
    assert harness.change_state("shutdown")
    assert node.finalized.is_set() and harness.lifecycle_state() == "finalized"


def test_a_failed_configure_names_the_problem_and_a_fix_lets_it_succeed(harness_factory, module_weights, tmp_path):
    missing = tmp_path / "missing.safetensors"
    harness = harness_factory(start=False, autostart=False, overlay_alpha=2.0, weights=str(missing))
    assert not harness.change_state("configure")
    assert harness.lifecycle_state() == "unconfigured"
    assert "parameter 'overlay_alpha'" in harness.node.failure and str(missing) in harness.node.failure
    assert "configure failed" in _diagnostics(harness)[-1].message
    assert harness.set_param("overlay_alpha", 0.25).successful          # unconfigured: may be set
    assert harness.set_param("weights", str(module_weights)).successful
    assert harness.change_state("configure") and harness.node.failure == ""
    assert harness.node.running.predictor.overlay_alpha == 0.25


def test_a_weights_card_that_builds_no_network_is_a_weights_problem(harness_factory, module_weights, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(module_weights), framework="pt") as handle:
        metadata = dict(handle.metadata())
    card = json.loads(metadata[CARD_KEY])
    card["model"]["decoder_width"] = -5
    bad = tmp_path / "bad_card.safetensors"
    save_file(load_file(str(module_weights)), str(bad), metadata={**metadata, CARD_KEY: json.dumps(card)})
    harness = harness_factory(start=False, autostart=False, weights=str(bad))
    assert not harness.change_state("configure")
    assert "parameter 'weights'" in harness.node.failure and str(bad) in harness.node.failure
    assert "device" not in harness.node.failure.split(":")[0]


# ----- the camera's QoS ---------------------------------------------------------------

def test_auto_qos_follows_the_camera(harness_factory, reference):
    harness = harness_factory(subscribe=("depth",), camera_qos=BEST_EFFORT)
    assert harness.node.running.reliability == "best_effort"
    stamp, sent, rgb = harness.publish_frame()
    check_outputs(harness.outputs_for(stamp, ("depth",)), sent, rgb, reference)
    # a reliable camera replaces it: the subscription becomes reliable
    harness.probe.destroy_publisher(harness.image_pub)
    harness.image_pub = harness.input_pub = harness.probe.create_publisher(Image, "image", RELIABLE)
    harness.wait_until_listening()
    assert harness.node.running.reliability == "reliable"
    stamp, _, _ = harness.publish_frame()
    harness.outputs_for(stamp, ("depth",))


def test_a_camera_the_subscription_cannot_match_is_diagnosed(harness_factory):
    harness = harness_factory(subscribe=("depth",), camera_qos=BEST_EFFORT, qos_reliability="reliable", start=False)
    assert harness.node.start()
    harness.node.starved_after_s = 0.5
    run = harness.node.running
    assert harness.spin_until(lambda: "qos_reliability" in run.starved_note, timeout=10.0), run.starved_note
    assert "cannot match" in run.starved_note
    assert "qos_reliability" in _diagnostics(harness)[-1].message


# ----- the executable -------------------------------------------------------------------

def _run_node(*ros_args: str) -> subprocess.Popen:
    # unbuffered log output, so the test sees each line as soon as the node says it
    env = {**os.environ, "RCUTILS_LOGGING_BUFFERED_STREAM": "0", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "hydranet_ros.node.main", "--ros-args", *ros_args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


class Output:
    """A subprocess's output lines, read as they come."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.lines = proc, []
        self._reader = threading.Thread(target=lambda: self.lines.extend(proc.stdout), daemon=True)
        self._reader.start()

    def wait_for(self, text: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not any(text in line for line in self.lines):
            assert self.proc.poll() is None, self.text
            time.sleep(0.05)
        assert any(text in line for line in self.lines), self.text

    @property
    def text(self) -> str:
        self._reader.join(timeout=0.1)
        return "".join(self.lines)


def test_executable_exits_with_error_on_missing_weights(tmp_path):
    missing = tmp_path / "nope.safetensors"
    proc = _run_node("-p", f"weights:={missing}", "-p", "device:=cpu")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out
    assert str(missing) in out and "weights" in out


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_the_warm_up_ends_the_node_cleanly(module_weights, signum):
    # a 1920x1080 warm-up pass takes seconds on a CPU: the signal comes in the middle of it
    proc = _run_node("-p", f"weights:={module_weights}", "-p", "device:=cpu", "-p", "backend:=eager",
                     "-p", "warmup_size:=1920x1080", "-r", f"__ns:=/hydranet_signal_{os.getpid()}")
    out = Output(proc)
    out.wait_for("warming up at 1920x1080")
    proc.send_signal(signum)
    sent = time.monotonic()
    assert proc.wait(timeout=30) == 0, out.text
    assert time.monotonic() - sent < 10.0, out.text
    assert "warmed up" not in out.text, "the signal came after the warm-up; the test proves nothing"
    assert "Traceback" not in out.text and "terminate called" not in out.text, out.text


def test_ctrl_c_while_running_and_warnings_in_the_ros_log(module_weights):
    proc = _run_node("-p", f"weights:={module_weights}", "-p", "device:=cpu", "-p", "devcie:=cpu",
                     "-p", "precision:=fp16", "-p", "backend:=eager", "-p", "warmup_size:=''",
                     "-r", f"__ns:=/hydranet_sigint_{os.getpid()}")
    out = Output(proc)
    out.wait_for("active: publishing")
    # a misspelt parameter is named; the predictor's fallback warning reaches the ROS log
    assert "'devcie' is not a parameter of hydranet_node and is ignored; did you mean 'device'?" in out.text
    fallback = [line for line in out.lines if "falling back to fp32" in line]
    assert fallback and fallback[0].startswith("[WARN]") and "hydranet_node]" in fallback[0], out.text
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0, out.text
    assert "Traceback" not in out.text, out.text


def test_a_lifecycle_shutdown_ends_the_process(module_weights):
    namespace = f"/hydranet_shutdown_{os.getpid()}"
    proc = _run_node("-p", f"weights:={module_weights}", "-p", "device:=cpu", "-p", "backend:=eager",
                     "-p", "warmup_size:=''", "-r", f"__ns:={namespace}")
    out = Output(proc)
    out.wait_for("active: publishing")
    context = Context()
    rclpy.init(context=context)
    try:
        probe = Node("shutdown_probe", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(probe)
        client = probe.create_client(ChangeState, f"{namespace}/hydranet_node/change_state")
        assert client.wait_for_service(timeout_sec=30.0)
        future = client.call_async(ChangeState.Request(transition=Transition(label="shutdown")))
        executor.spin_until_future_complete(future, timeout_sec=30.0)
        assert future.result() is not None and future.result().success
        executor.shutdown()
        probe.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    assert proc.wait(timeout=30) == 0, out.text
