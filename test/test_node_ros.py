"""hydranet_node with real rclpy: every encoding in, every output topic checked.

These start the node in-process on its own rclpy context, publish images from a
probe node and check each output's encoding, size, header and values against the
predictor run directly. They need a sourced ROS 2 (colcon test does that) and skip
elsewhere. A tiny random-weight model and 64x48 images keep CPU inference quick.
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
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

NOT_SOURCED = ("ROS 2 is not sourced: rclpy cannot be imported. These tests run under "
               "`colcon test` or after `source /opt/ros/<distro>/setup.bash`")
rclpy = pytest.importorskip("rclpy", reason=NOT_SOURCED)
pytest.importorskip("sensor_msgs.msg", reason=NOT_SOURCED)

import cv2  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from conftest import make_card, make_model  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header, String  # noqa: E402

from hydranet_ros.node import node as node_module  # noqa: E402
from hydranet_ros.inference.predictor import load_predictor  # noqa: E402
from hydranet_ros.inference.weights import save_weights  # noqa: E402
from hydranet_ros.messages.image import array_to_fields, decode_image  # noqa: E402
from hydranet_ros.messages.topics import DEPTH_CAMERA_INFO_TOPIC, LABEL_INFO_TOPIC, OUTPUT_SPECS  # noqa: E402
from hydranet_ros.node.node import HydraNetNode  # noqa: E402
from hydranet_ros.node.parameters import ParamError  # noqa: E402

WIDTH, HEIGHT = 64, 48
TIMEOUT_S = 30.0
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
ALL_OUTPUTS = {f"publish_{spec.name}": True for spec in OUTPUT_SPECS}
_stamps = itertools.count(1)
_namespaces = itertools.count(1)


@pytest.fixture(scope="module")
def module_weights(tmp_path_factory) -> Path:
    card = make_card()
    path = tmp_path_factory.mktemp("weights") / "random_kitti6.safetensors"
    save_weights(path, make_model(card), card)
    return path


@pytest.fixture(scope="module")
def reference(module_weights):
    """The predictor the node wraps, run directly: what every output must equal."""
    return load_predictor(module_weights, device="cpu")


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
        yuv = np.random.default_rng(0).integers(16, 235, (HEIGHT, WIDTH, 2), dtype=np.uint8)
        return yuv
    raise AssertionError(encoding)


def image_msg(pixels: np.ndarray, encoding: str, stamp: int, frame_id: str = "camera_optical") -> Image:
    fields = array_to_fields(np.ascontiguousarray(pixels), encoding)
    msg = Image(header=Header(stamp=Time(sec=stamp, nanosec=1234), frame_id=frame_id),
                height=fields.height, width=fields.width, encoding=fields.encoding,
                is_bigendian=fields.is_bigendian, step=fields.step)
    msg.data = array.array("B", fields.data)
    return msg


def as_array(msg: Image) -> np.ndarray:
    dtype = np.float32 if msg.encoding == "32FC1" else np.uint8
    flat = np.frombuffer(bytes(msg.data), dtype=dtype)
    channels = flat.size // (msg.height * msg.width)
    shape = (msg.height, msg.width) if channels == 1 else (msg.height, msg.width, channels)
    return flat.reshape(shape)


class Harness:
    """The node under test plus a probe node, on a private context and namespace."""

    def __init__(self, weights: Path, subscribe: tuple[str, ...] | None = None, **params: Any) -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        namespace = f"/hydranet_test_{os.getpid()}_{next(_namespaces)}"
        # warm-up at the test size: the path runs, without a 640x480 CPU pass per node
        values = {"weights": str(weights), "device": "cpu", "log_period": 0.0, "warmup_size": f"{WIDTH}x{HEIGHT}",
                  **ALL_OUTPUTS, **params}
        try:
            self.node = HydraNetNode(context=self.context, namespace=namespace,
                                     parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
        except BaseException:
            rclpy.shutdown(context=self.context)
            raise
        self.probe = Node("probe", context=self.context, namespace=namespace)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.probe)
        self.received: dict[str, list[Any]] = defaultdict(list)
        names = [spec.name for spec in OUTPUT_SPECS] if subscribe is None else list(subscribe)
        for spec in OUTPUT_SPECS:
            if spec.name in names:
                self._listen(Image, spec.topic, spec.name)
        self._listen(CameraInfo, DEPTH_CAMERA_INFO_TOPIC, "camera_info")
        self.image_pub = self.probe.create_publisher(Image, "image", RELIABLE)
        self.compressed_pub = self.probe.create_publisher(CompressedImage, "image/compressed", RELIABLE)
        self.info_pub = self.probe.create_publisher(CameraInfo, "camera_info", RELIABLE)
        input_pub = self.compressed_pub if params.get("input_transport") == "compressed" else self.image_pub
        assert self.spin_until(lambda: input_pub.get_subscription_count() > 0
                               and all(self.node._image_pubs[n].get_subscription_count() > 0
                                       for n in names if n in self.node._image_pubs)), "discovery timed out"

    def _listen(self, msg_type, topic: str, key: str) -> None:
        self.probe.create_subscription(msg_type, topic, lambda msg: self.received[key].append(msg), RELIABLE)

    def spin_until(self, done: Callable[[], bool], timeout: float = TIMEOUT_S) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done():
                return True
            self.executor.spin_once(timeout_sec=0.02)
        return done()

    def outputs_for(self, stamp: int, names: tuple[str, ...]) -> dict[str, Image]:
        """The output messages carrying ``stamp``, waiting until every one in ``names`` came."""
        def found() -> dict[str, Image]:
            return {name: msg for name in names for msg in self.received[name] if msg.header.stamp.sec == stamp}
        assert self.spin_until(lambda: len(found()) == len(names)), \
            f"outputs for stamp {stamp}: got {sorted(found())}, wanted {sorted(names)}"
        return found()

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
    harness = Harness(module_weights)
    yield harness
    harness.close()


def check_outputs(outputs: dict[str, Image], sent: Image, rgb: np.ndarray, reference) -> None:
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
    assert shared.spin_until(lambda: shared.node._camera_info is not None)
    stamp = next(_stamps)
    sent = image_msg(rgb_frame(stamp), "rgb8", stamp)
    shared.image_pub.publish(sent)
    got = shared.outputs_for(stamp, ("depth", "camera_info"))
    out = got["camera_info"]
    assert out.header.stamp == sent.header.stamp and out.header.frame_id == sent.header.frame_id
    assert (out.width, out.height) == (WIDTH, HEIGHT)    # outputs are at input resolution
    np.testing.assert_allclose(out.k, info.k)
    np.testing.assert_allclose(out.p, info.p)
    np.testing.assert_allclose(out.d, info.d)
    assert out.distortion_model == "plumb_bob"


def test_class_names_are_latched(shared, reference):
    label_type = node_module.LabelInfo or String
    got: list[Any] = []
    # subscribing after the node published: only transient-local delivery gets it here
    shared.probe.create_subscription(label_type, LABEL_INFO_TOPIC, got.append, LATCHED)
    assert shared.spin_until(lambda: bool(got)), "no latched label info"
    names = list(reference.card.class_names)
    if node_module.LabelInfo is not None:
        class_map = {c.class_id: c.class_name for c in got[0].class_map}
        assert [class_map[i] for i in range(len(names))] == names and class_map[255] == "unlabeled"
    else:
        data = json.loads(got[0].data)
        assert [c["name"] for c in data["classes"][:len(names)]] == names
        assert [tuple(c["colour"]) for c in data["classes"][:len(names)]] == [tuple(c) for c in reference.card.palette]


def _bad_frames(stamp: int) -> list[tuple[str, Image]]:
    """(reason the node must give, frame) for each kind of bad raw frame."""
    unsupported = image_msg(rgb_frame(0), "rgb8", stamp)
    unsupported.encoding = "bayer_rggb8"
    short = image_msg(rgb_frame(0), "rgb8", stamp)
    short.data = array.array("B", bytes(short.data)[:100])
    empty = image_msg(rgb_frame(0), "rgb8", stamp)
    empty.width, empty.step, empty.data = 0, 0, array.array("B")
    too_big = image_msg(np.zeros((HEIGHT * 2, WIDTH * 2, 3), np.uint8), "rgb8", stamp)
    return [("unsupported encoding", unsupported), ("expected step x height", short), ("empty image", empty),
            ("exceeds the limit", too_big)]


def test_bad_frames_are_dropped_counted_and_survived(harness_factory, reference):
    harness = harness_factory(max_input_pixels=WIDTH * HEIGHT)
    stats = harness.node._stats
    for reason, msg in _bad_frames(next(_stamps)):
        before = stats.bad
        harness.image_pub.publish(msg)
        assert harness.spin_until(lambda: stats.bad == before + 1), reason
        assert reason in stats.last_error
    stamp = next(_stamps)
    sent = image_msg(rgb_frame(stamp), "rgb8", stamp)
    harness.image_pub.publish(sent)
    check_outputs(harness.outputs_for(stamp, ("depth", "labels")), sent, rgb_frame(stamp), reference)


def test_unsubscribed_outputs_are_not_computed(harness_factory):
    harness = harness_factory(subscribe=("depth",))
    requested: list[tuple[str, ...]] = []
    predict = harness.node._predictor.predict

    def recording_predict(image, outputs):
        requested.append(tuple(outputs))
        return predict(image, outputs)
    harness.node._predictor.predict = recording_predict
    stamp = next(_stamps)
    harness.image_pub.publish(image_msg(rgb_frame(stamp), "rgb8", stamp))
    harness.outputs_for(stamp, ("depth",))
    assert requested == [("depth",)]
    assert not harness.received["overlay"] and not harness.received["labels"]


def test_nobody_listening_costs_no_inference(harness_factory):
    harness = harness_factory(subscribe=(), publish_depth_camera_info=False)
    stats = harness.node._stats
    harness.image_pub.publish(image_msg(rgb_frame(1), "rgb8", next(_stamps)))
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
    before = harness.node._stats.bad
    harness.compressed_pub.publish(corrupt)
    assert harness.spin_until(lambda: harness.node._stats.bad == before + 1)
    assert "could not be decoded" in harness.node._stats.last_error


def test_newest_frame_wins_under_a_burst(harness_factory):
    harness = harness_factory(subscribe=("depth",))
    stamps = [next(_stamps) for _ in range(30)]
    for stamp in stamps:
        harness.image_pub.publish(image_msg(rgb_frame(stamp), "rgb8", stamp))
    harness.outputs_for(stamps[-1], ("depth",))       # the newest frame is always processed
    stats = harness.node._stats
    assert harness.spin_until(lambda: stats.received == stats.processed + stats.dropped + stats.idle)
    got = [msg.header.stamp.sec for msg in harness.received["depth"]]
    assert got == sorted(got)                          # never an older frame after a newer one


def test_diagnostics_report_the_counters(shared):
    if node_module.diagnostic_updater is None:
        pytest.skip("diagnostic_updater is not installed")
    from diagnostic_msgs.msg import DiagnosticArray

    statuses: list[Any] = []
    shared.probe.create_subscription(DiagnosticArray, "/diagnostics",
                                     lambda msg: statuses.extend(msg.status), RELIABLE)

    def ours():
        return [s for s in statuses if "hydranet_node" in s.name
                and any(kv.key.startswith("frames bad") for kv in s.values)]
    assert shared.spin_until(lambda: bool(ours()), timeout=10.0)
    keys = {kv.key for kv in ours()[-1].values}
    assert {"device", "frame rate (Hz)", "frames dropped (newer frame arrived)"} <= keys


def test_bad_parameter_stops_the_node_naming_it(module_weights, tmp_path):
    context = Context()
    rclpy.init(context=context)
    try:
        with pytest.raises(ParamError, match="parameter 'overlay_alpha'"):
            HydraNetNode(context=context, parameter_overrides=[
                Parameter("weights", value=str(module_weights)), Parameter("overlay_alpha", value=2.0)])
        missing = tmp_path / "missing.safetensors"
        with pytest.raises(ParamError, match=f"parameter 'weights'.*{missing}"):
            HydraNetNode(context=context, parameter_overrides=[Parameter("weights", value=str(missing))])
    finally:
        rclpy.shutdown(context=context)


def _run_node(*ros_args: str) -> subprocess.Popen:
    # unbuffered log output, so the test sees "listening on" as soon as the node says it
    env = {**os.environ, "RCUTILS_LOGGING_BUFFERED_STREAM": "0", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "hydranet_ros.node.node", "--ros-args", *ros_args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def test_executable_exits_with_error_on_missing_weights(tmp_path):
    missing = tmp_path / "nope.safetensors"
    proc = _run_node("-p", f"weights:={missing}", "-p", "device:=cpu")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out
    assert str(missing) in out and "weights" in out


def test_executable_shuts_down_cleanly_on_ctrl_c(module_weights):
    proc = _run_node("-p", f"weights:={module_weights}", "-p", "device:=cpu",
                     "-r", f"__ns:=/hydranet_sigint_{os.getpid()}")
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any("listening on" in line for line in lines):
        assert proc.poll() is None, "".join(lines)
        time.sleep(0.1)
    assert any("listening on" in line for line in lines), "".join(lines)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0, "".join(lines)
    reader.join(timeout=5)
    assert not any("Traceback" in line for line in lines), "".join(lines)
