"""Output messages from arrays (messages.builders), for rosbags and rclpy message classes,
and the other shared conventions: stamps, label info, topic names."""
from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest

from hydranet_ros.messages import label_info, stamps, topics
from hydranet_ros.messages.builders import depth_camera_info, image_message, ros_message_types
from hydranet_ros.messages.image import image_to_array
from hydranet_ros.messages.stamps import Header, header_of
from hydranet_ros.offline.bagio import IMAGE_TYPE, camera_info_message, make_header, ros2_typestore, typestore_types

DEPTH = np.linspace(0.5, 80.0, 48 * 64, dtype=np.float32).reshape(48, 64)
OVERLAY = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)


def rclpy_types():
    pytest.importorskip("sensor_msgs.msg", reason="sensor_msgs (ROS 2) is not installed; runs under colcon test")
    return ros_message_types()


@pytest.mark.parametrize("pixels, encoding, step", [(DEPTH, "32FC1", 64 * 4), (OVERLAY, "rgb8", 64 * 3),
                                                    (OVERLAY[:, :, 0].copy(), "mono8", 64)])
def test_rosbags_image_message_is_a_view_and_round_trips(pixels, encoding, step):
    ts = ros2_typestore()
    msg = image_message(typestore_types(ts), make_header(ts, Header(5_000_000_007, "cam")), pixels, encoding)
    assert np.shares_memory(msg.data, pixels)        # no copy before serialisation
    assert (msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian) == (encoding, 48, 64, step, 0)
    back = ts.deserialize_cdr(ts.serialize_cdr(msg, IMAGE_TYPE), IMAGE_TYPE)
    assert header_of(back) == Header(5_000_000_007, "cam")
    np.testing.assert_array_equal(image_to_array(back), pixels)


def test_wrong_array_for_the_encoding_is_refused():
    ts = ros2_typestore()
    with pytest.raises(ValueError, match="32FC1 needs f32"):
        image_message(typestore_types(ts), make_header(ts, Header(0, "")), OVERLAY[:, :, 0], "32FC1")
    with pytest.raises(ValueError, match="rgb8 needs 3 channel"):
        image_message(typestore_types(ts), make_header(ts, Header(0, "")), OVERLAY[:, :, :2], "rgb8")


def test_rclpy_image_message_copies_each_output_once():
    types = rclpy_types()
    from std_msgs.msg import Header as RosHeader

    header = RosHeader(frame_id="cam")
    big = np.random.default_rng(1).random((540, 960), dtype=np.float32)     # 2 MB
    image_message(types, header, DEPTH, "32FC1")   # imports and caches outside the measurement
    tracemalloc.start()
    msg = image_message(types, header, big, "32FC1")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # one copy of the 2 MB array: tobytes() then array.array (or rclpy's own copy) would peak at twice that
    assert big.nbytes <= peak < 1.5 * big.nbytes
    assert msg.header is header and (msg.encoding, msg.step) == ("32FC1", 960 * 4)
    assert bytes(msg.data) == big.tobytes()


def test_depth_camera_info_for_both_families():
    ts = ros2_typestore()
    info = camera_info_message(ts, Header(1, "cam"), 64, 48, np.array([[50.0, 0, 32], [0, 51.0, 24], [0, 0, 1]]),
                               d=(0.1, -0.05, 0.0, 0.0, 0.01))
    header = make_header(ts, Header(2, "cam"))
    out = depth_camera_info(typestore_types(ts), header, info)
    assert out.header is header and out.k is info.k and out.roi is info.roi and out.distortion_model == "plumb_bob"
    types = rclpy_types()
    from sensor_msgs.msg import CameraInfo, RegionOfInterest
    from std_msgs.msg import Header as RosHeader

    source = CameraInfo(width=64, height=48, distortion_model="plumb_bob", d=[0.1, 0.0, 0.0, 0.0, 0.0],
                        k=list(info.k), r=list(info.r), p=list(info.p), binning_x=2, binning_y=2,
                        roi=RegionOfInterest(x_offset=1, y_offset=2, width=30, height=20, do_rectify=True))
    ros_header = RosHeader(frame_id="depth")
    ros_out = depth_camera_info(types, ros_header, source)
    assert ros_out.header == ros_header and ros_out.roi == source.roi and ros_out.binning_x == 2
    np.testing.assert_array_equal(ros_out.k, source.k)
    np.testing.assert_array_equal(ros_out.p, source.p)


def test_stamps():
    assert stamps.stamp_to_ns(12, 345) == 12_000_000_345
    assert stamps.ns_to_stamp(12_000_000_345) == (12, 345)
    assert stamps.ns_to_stamp(stamps.stamp_to_ns(1_700_000_000, 999_999_999)) == (1_700_000_000, 999_999_999)


def test_label_entries_and_json_fallback():
    entries = label_info.label_entries(["road", "car"], [(128, 64, 128), (0, 0, 142)])
    assert [(e.class_id, e.name) for e in entries] == [(0, "road"), (1, "car"), (255, "unlabeled")]
    data = json.loads(label_info.label_info_json(entries))
    assert data["unlabeled_id"] == 255
    assert data["classes"][1] == {"id": 1, "name": "car", "colour": [0, 0, 142]}


@pytest.mark.parametrize("topic, msgtype, namespace", [
    ("/camera/image_raw", "sensor_msgs/msg/Image", "/camera"),
    ("/camera/image_raw/compressed", topics.COMPRESSED_TYPE, "/camera"),
    ("/car/front/image_rect_color", "sensor_msgs/msg/Image", "/car/front"),
    ("/image_raw", "sensor_msgs/msg/Image", "/"),
    ("/image_raw/compressed", topics.COMPRESSED_TYPE, "/"),
    ("image", "sensor_msgs/msg/Image", ""),           # relative stays relative: the node's own namespace
    ("cam/image/", "sensor_msgs/msg/Image", "cam"),
])
def test_camera_namespace(topic, msgtype, namespace):
    assert topics.camera_namespace(topic, msgtype) == namespace


@pytest.mark.parametrize("image_topic, expected", [
    ("/camera/image_raw", "/camera/camera_info"),
    ("/front/left/image_rect", "/front/left/camera_info"),
    ("/image", "/camera_info"),
    ("image", "camera_info"),
    ("cam/image/", "cam/camera_info"),
])
def test_camera_info_beside_the_image(image_topic, expected):
    assert topics.camera_info_beside(image_topic) == expected


def test_topic_names():
    assert topics.join_topic("/camera", "depth/image") == "/camera/depth/image"
    assert topics.join_topic("/", "depth/image") == "/depth/image"
    assert topics.join_topic("robot/cam/", "/overlay/image") == "/robot/cam/overlay/image"
    assert topics.topic_in("front", "depth/image") == "front/depth/image" and topics.topic_in("", "image") == "image"
    assert topics.topic_in("/", "camera_info") == "/camera_info"
    assert topics.input_topic("raw") == "image" and topics.input_topic("compressed") == "image/compressed"
    assert len({spec.topic for spec in topics.OUTPUT_SPECS}) == len(topics.OUTPUT_SPECS)


def test_output_specs_are_the_predictors_image_outputs():
    # one table cannot feed the other: inference and messages may not import each other
    # (test_architecture), so the two lists of names are held equal here, order included
    from hydranet_ros.inference.predictor import OUTPUTS

    assert tuple(spec.name for spec in topics.OUTPUT_SPECS) == OUTPUTS
