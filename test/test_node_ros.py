"""hydranet_node with real rclpy: every encoding in, every output topic checked against the
predictor run directly, bad frames, which outputs are computed, diagnostics."""
from __future__ import annotations

import array
import json

import cv2
import numpy as np
import pytest
from node_harness import (HEIGHT, ROS_SKIP, WIDTH, Harness, check_outputs, diagnostics_of, harness_factory,  # noqa: F401
                          image_msg, latched_classes, module_weights, next_stamp, rclpy, reference, rgb_frame)

from hydranet_ros.messages.image import image_to_rgb
from hydranet_ros.messages.topics import OUTPUT_SPECS

if rclpy is not None:
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image
    from std_msgs.msg import Header

    from hydranet_ros.node import ros_messages

pytestmark = ROS_SKIP


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




@pytest.fixture(scope="module")
def shared(module_weights):
    """One node for the per-encoding tests: starting one per encoding would dominate the run."""
    if rclpy is None:
        pytest.skip("rclpy cannot be imported")
    harness = Harness(module_weights)
    yield harness
    harness.close()



# ----- outputs ----------------------------------------------------------------------

ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "rgb16", "bgr16", "yuv422", "yuv422_yuy2")


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_output_for_each_encoding(shared, reference, encoding):
    stamp = next_stamp()
    sent = image_msg(encode(rgb_frame(stamp), encoding), encoding, stamp)
    rgb = image_to_rgb(sent)
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
    assert shared.spin_until(lambda: shared.node.running.first.camera_info is not None)
    stamp, sent, _ = shared.publish_frame()
    out = shared.outputs_for(stamp, ("depth", "camera_info"))["camera_info"]
    assert out.header.stamp == sent.header.stamp and out.header.frame_id == sent.header.frame_id
    assert (out.width, out.height) == (WIDTH, HEIGHT)    # outputs are at input resolution
    np.testing.assert_allclose(out.k, info.k)
    np.testing.assert_allclose(out.p, info.p)
    np.testing.assert_allclose(out.d, info.d)
    assert out.distortion_model == "plumb_bob"


def test_class_names_are_latched(shared, reference):
    got = latched_classes(shared)
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
    stats = harness.node.running.first.stats
    for reason, msg in _bad_frames(next_stamp()):
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
    stats = harness.node.running.first.stats
    harness.publish_frame()
    assert harness.spin_until(lambda: stats.idle == 1)
    assert stats.processed == 0


def test_compressed_input(harness_factory, reference):
    harness = harness_factory(input_transport="compressed")
    stamp = next_stamp()
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
    stats = harness.node.running.first.stats
    before = stats.bad
    harness.compressed_pub.publish(corrupt)
    assert harness.spin_until(lambda: stats.bad == before + 1)
    assert "could not be decoded" in stats.last_error


def test_newest_frame_wins_under_a_burst(harness_factory):
    harness = harness_factory(subscribe=("depth",))
    stamps = [next_stamp() for _ in range(30)]
    for stamp in stamps:
        harness.image_pub.publish(image_msg(rgb_frame(stamp), "rgb8", stamp))
    harness.outputs_for(stamps[-1], ("depth",))       # the newest frame is always processed
    stats = harness.node.running.first.stats
    assert harness.spin_until(lambda: stats.received == stats.processed + stats.dropped + stats.idle)
    got = [msg.header.stamp.sec for msg in harness.received["depth"]]
    assert got == sorted(got)                          # never an older frame after a newer one


def test_diagnostics_report_the_counters_and_the_lifecycle_state(harness_factory):
    harness = harness_factory()
    values = {kv.key: kv.value for kv in diagnostics_of(harness)[-1].values}
    assert {"device", "frame rate (Hz)", "frames dropped (newer frame arrived)", "frames bad (could not decode)"} \
        <= set(values)
    assert values["lifecycle state"] == "active"
    assert harness.change_state("deactivate")
    last = diagnostics_of(harness)[-1]
    assert {kv.key: kv.value for kv in last.values}["lifecycle state"] == "inactive"
    assert "inactive" in last.message
