"""The live node and hydranet_replay carry the same messages for the same frames.

The real node runs in-process under rclpy; a probe publishes camera frames and a
CameraInfo and records every output. The same frames, with the same headers,
go into a bag that hydranet_replay reads. Message by message, the node's topics
and the replay's output bag must agree: encoding, size, step, byte order, header,
data bytes, depth/camera_info field by field, the labelled point cloud, and the
classes on segmentation/label_info (once on both sides). Topic names agree relative
to the camera's namespace (the node's namespace; the image topic's parent in a bag).
Tiny random weights, 64x48 frames, reliable QoS.
"""
from __future__ import annotations

import itertools
import json
import os
import time
from collections import defaultdict
from typing import Any

import numpy as np
import pytest
from replay_helpers import HEIGHT, WIDTH, K, make_images, read_bag

from hydranet_ros.messages.stamps import Header, header_of
from hydranet_ros.messages.label_info import LABEL_INFO_TYPE
from hydranet_ros.messages.topics import DEPTH_CAMERA_INFO_TOPIC, LABEL_INFO_TOPIC, OUTPUT_SPECS, POINTS_TOPIC
from hydranet_ros.offline.bagio import BagWriter, camera_info_message, image_message
from hydranet_ros.offline.replay import main as replay_main

NOT_SOURCED = ("ROS 2 is not sourced: rclpy cannot be imported. This runs under `colcon test` "
               "or after `source /opt/ros/<distro>/setup.bash`")
TIMEOUT_S = 60.0
FRAME_ID = "cam_optical"
# one frame per camera encoding family the node and replay both read
FRAMES = (("rgb8", 1), ("bgr8", 2), ("mono8", 3))
_namespaces = itertools.count(1)


def camera_pixels(rgb: np.ndarray, encoding: str) -> np.ndarray:
    return {"rgb8": rgb, "bgr8": np.ascontiguousarray(rgb[:, :, ::-1]),
            "mono8": np.ascontiguousarray(rgb[:, :, 1])}[encoding]


@pytest.fixture
def ros():
    rclpy = pytest.importorskip("rclpy", reason=NOT_SOURCED)
    pytest.importorskip("sensor_msgs.msg", reason=NOT_SOURCED)
    return rclpy


def run_node(rclpy: Any, weights, frames: list[tuple[np.ndarray, str, int]], info_k: np.ndarray
             ) -> tuple[str, dict[str, dict[int, Any]]]:
    """Publish ``frames`` (pixels, encoding, stamp sec) to the node; its outputs by topic and stamp."""
    from builtin_interfaces.msg import Time
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
    from std_msgs.msg import Header as RosHeader

    from hydranet_ros.messages.builders import image_message, ros_message_types
    from hydranet_ros.node.node import HydraNetNode
    from hydranet_ros.node.ros_messages import LABEL_INFO_TYPE as NODE_LABEL_INFO_TYPE

    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    context = Context()
    rclpy.init(context=context)
    namespace = f"/agreement_{os.getpid()}_{next(_namespaces)}"
    params = {"weights": str(weights), "device": "cpu", "log_period": 0.0, "warmup_size": "", "publish_points": True,
              **{f"publish_{spec.name}": True for spec in OUTPUT_SPECS}}
    node = HydraNetNode(context=context, namespace=namespace,
                        parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    assert node.start(), node.failure   # configure and activate, as autostart does
    probe = Node("probe", context=context, namespace=namespace)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(probe)
    received: dict[str, dict[int, Any]] = defaultdict(dict)

    def listen(msg_type, topic):
        probe.create_subscription(msg_type, topic, lambda m: received[topic].setdefault(m.header.stamp.sec, m),
                                  reliable)

    def spin_until(done) -> bool:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline and not done():
            executor.spin_once(timeout_sec=0.02)
        return done()

    try:
        topics = [spec.topic for spec in OUTPUT_SPECS] + [DEPTH_CAMERA_INFO_TOPIC, POINTS_TOPIC]
        for spec in OUTPUT_SPECS:
            listen(Image, spec.topic)
        listen(CameraInfo, DEPTH_CAMERA_INFO_TOPIC)
        listen(PointCloud2, POINTS_TOPIC)
        # published at activation, before this subscription: it comes from the latched history.
        # Kept in arrival order, as the std_msgs/String fallback has no header
        labels = received[LABEL_INFO_TOPIC]
        probe.create_subscription(NODE_LABEL_INFO_TYPE, LABEL_INFO_TOPIC,
                                  lambda m: labels.setdefault(len(labels), m), latched)
        image_pub = probe.create_publisher(Image, "image", reliable)
        info_pub = probe.create_publisher(CameraInfo, "camera_info", reliable)
        assert spin_until(lambda: image_pub.get_subscription_count() > 0 and info_pub.get_subscription_count() > 0
                          and all(probe.count_publishers(f"{namespace}/{t}") > 0 for t in topics)
                          and probe.count_publishers(f"{namespace}/{LABEL_INFO_TOPIC}") > 0), "discovery"
        types = ros_message_types()
        for pixels, encoding, sec in frames:
            header = RosHeader(stamp=Time(sec=sec, nanosec=1234), frame_id=FRAME_ID)
            # a camera driver sends its CameraInfo with every frame; it must arrive before the frame does
            info = camera_info_message_ros(types, header, info_k)
            info_pub.publish(info)
            assert spin_until(lambda: (latest := camera_info_of(node)) is not None
                              and latest.header.stamp.sec == sec), "camera_info not received"
            image_pub.publish(image_message(types, header, pixels, encoding))
            assert spin_until(lambda: all(sec in received[t] for t in topics)), \
                f"outputs for stamp {sec}: {[t for t in topics if sec not in received[t]]} missing"
        assert spin_until(lambda: len(labels) > 0), "no latched label_info"
    finally:
        executor.shutdown()
        node.destroy_node()
        probe.destroy_node()
        if context.ok():
            rclpy.shutdown(context=context)
    return namespace, received


def camera_info_of(node: Any) -> Any:
    """The latest CameraInfo the node holds for its one camera (None while unconfigured)."""
    return node.running.first.camera_info if node.running is not None else None


def camera_info_message_ros(types, header, k: np.ndarray):
    """The same CameraInfo as bagio.camera_info_message writes into the bag, as an rclpy message."""
    from sensor_msgs.msg import RegionOfInterest

    p = np.hstack([k, np.zeros((3, 1))])
    return types.camera_info(header=header, height=HEIGHT, width=WIDTH, distortion_model="plumb_bob",
                             d=[0.0] * 5, k=k.reshape(-1).tolist(), r=np.eye(3).reshape(-1).tolist(),
                             p=p.reshape(-1).tolist(), binning_x=0, binning_y=0,
                             roi=RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


def write_bag(path, frames: list[tuple[np.ndarray, str, int]], k: np.ndarray) -> None:
    with BagWriter(path) as bag:
        for pixels, encoding, sec in frames:
            header = Header(sec * 1_000_000_000 + 1234, FRAME_ID)
            log_time = header.stamp_ns + 1_000_000
            bag.write("/camera/camera_info", camera_info_message(bag.typestore, header, WIDTH, HEIGHT, k), log_time)
            bag.write("/camera/image_raw", image_message(bag.typestore, pixels, encoding, header), log_time + 1)


def announced_classes(msg: Any) -> list[tuple[int, str]]:
    """(id, name) per class of a label_info message: vision_msgs/LabelInfo, or the std_msgs/String
    JSON the node sends where vision_msgs is not installed."""
    if hasattr(msg, "class_map"):
        return [(c.class_id, c.class_name) for c in msg.class_map]
    return [(c["id"], c["name"]) for c in json.loads(msg.data)["classes"]]


def as_bytes(data: Any) -> bytes:
    return np.asarray(data, dtype=np.uint8).tobytes()


def test_replay_bag_and_node_topics_carry_the_same_messages(ros, tmp_path, capsys, weights_file):
    frames = [(camera_pixels(image, encoding), encoding, sec)
              for (encoding, sec), image in zip(FRAMES, make_images(len(FRAMES), seed=5))]
    namespace, live = run_node(ros, weights_file, frames, K)

    source, out = tmp_path / "in", tmp_path / "out"
    write_bag(source, frames, K)
    code = replay_main([str(source), "--weights", str(weights_file), "-o", str(out), "--outputs", "all",
                        "--device", "cpu", "--warmup", "0", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    bag = read_bag(out)
    offline = {topic: {header_of(msg).stamp_ns // 1_000_000_000: msg for _, msg in messages}
               for topic, messages in bag.items()}

    # the classes: once on both sides. The node stamps them with its clock at activation, the bag
    # with the first frame (replay has no node clock), so the stamps cannot agree; the rest must
    node_labels, bag_labels = list(live[LABEL_INFO_TOPIC].values()), bag[f"/camera/{LABEL_INFO_TOPIC}"]
    assert len(node_labels) == len(bag_labels) == 1
    node_msg, (log_time, bag_msg) = node_labels[0], bag_labels[0]
    assert bag_msg.__msgtype__ == LABEL_INFO_TYPE and log_time == bag["/camera/image_raw"][0][0]
    assert announced_classes(node_msg) == announced_classes(bag_msg)
    if hasattr(node_msg, "class_map"):   # vision_msgs installed: the node sends the bag's type
        assert (node_msg.threshold, node_msg.header.frame_id) == (bag_msg.threshold, bag_msg.header.frame_id)

    for relative in [spec.topic for spec in OUTPUT_SPECS] + [DEPTH_CAMERA_INFO_TOPIC, POINTS_TOPIC]:
        bag_topic = f"/camera/{relative}"   # beside the camera, as the node is beside its camera
        assert sorted(offline[bag_topic]) == sorted(live[relative]) == [sec for _, _, sec in frames], relative
        for sec in live[relative]:
            node_msg, bag_msg = live[relative][sec], offline[bag_topic][sec]
            assert (node_msg.header.stamp.sec, node_msg.header.stamp.nanosec, node_msg.header.frame_id) == \
                (bag_msg.header.stamp.sec, bag_msg.header.stamp.nanosec, bag_msg.header.frame_id), relative
            if relative == DEPTH_CAMERA_INFO_TOPIC:
                for field in ("height", "width", "distortion_model", "binning_x", "binning_y"):
                    assert getattr(node_msg, field) == getattr(bag_msg, field), field
                for field in ("d", "k", "r", "p"):
                    np.testing.assert_array_equal(np.asarray(getattr(node_msg, field)),
                                                  np.asarray(getattr(bag_msg, field)), err_msg=field)
                for field in ("x_offset", "y_offset", "height", "width", "do_rectify"):
                    assert getattr(node_msg.roi, field) == getattr(bag_msg.roi, field), f"roi.{field}"
                continue
            if relative == POINTS_TOPIC:
                for field in ("height", "width", "point_step", "row_step", "is_bigendian", "is_dense"):
                    assert getattr(node_msg, field) == getattr(bag_msg, field), f"points {field}"
                assert [(f.name, f.offset, f.datatype, f.count) for f in node_msg.fields] == \
                    [(f.name, f.offset, f.datatype, f.count) for f in bag_msg.fields]
                assert node_msg.width > 0
                assert as_bytes(node_msg.data) == as_bytes(bag_msg.data), f"points data at stamp {sec}"
                continue
            for field in ("encoding", "height", "width", "step", "is_bigendian"):
                assert getattr(node_msg, field) == getattr(bag_msg, field), f"{relative} {field}"
            assert as_bytes(node_msg.data) == as_bytes(bag_msg.data), f"{relative} data at stamp {sec}"
