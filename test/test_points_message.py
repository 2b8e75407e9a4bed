"""PointCloud2 from the predictor's points (messages.point_cloud), for rosbags and rclpy message
classes, read back field by field; and the camera_info checks behind it."""
from __future__ import annotations

import tracemalloc
from types import SimpleNamespace

import numpy as np
import pytest

from hydranet_ros.common.pinhole import CameraError, PinholeK
from hydranet_ros.inference.points import point_dtype
from hydranet_ros.messages.builders import ros_message_types
from hydranet_ros.messages.point_cloud import camera_for_frame, cloud_array, point_cloud_message
from hydranet_ros.messages.stamps import Header, header_of
from hydranet_ros.offline.bagio import (
    POINT_CLOUD_TYPE,
    camera_info_message,
    make_header,
    ros2_typestore,
    typestore_types,
)

# PointField datatypes, as sensor_msgs defines them
FLOAT32, UINT8, UINT16 = 7, 2, 4


def make_points(shape: tuple[int, ...], classes: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    points = np.zeros(shape, point_dtype(classes))
    for name in "xyz":
        points[name] = rng.uniform(-10, 10, shape)
    colours = rng.integers(0, 1 << 24, shape, dtype=np.uint32)
    points["rgb"] = colours.view(np.float32)
    points["label"] = rng.integers(0, classes, shape)
    return points


def decode(msg) -> np.ndarray:
    """The test's own reading of a PointCloud2: offsets and types from its fields, little-endian.
    (sensor_msgs_py's read_points would do, but the pip ROS wheels do not ship it.)"""
    types = {FLOAT32: "<f4", UINT8: "<u1", UINT16: "<u2"}
    raw = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.row_step)
    out = {}
    for field in msg.fields:
        size = np.dtype(types[field.datatype]).itemsize
        columns = raw[:, : msg.width * msg.point_step].reshape(msg.height, msg.width, msg.point_step)
        out[field.name] = np.ascontiguousarray(columns[:, :, field.offset:field.offset + size]).view(
            types[field.datatype])[..., 0]
    return out


def assert_cloud(msg, points: np.ndarray, label_type: int = UINT8) -> None:
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, FLOAT32, 1), ("y", 4, FLOAT32, 1), ("z", 8, FLOAT32, 1), ("rgb", 12, FLOAT32, 1),
        ("label", 16, label_type, 1)]
    assert (msg.point_step, msg.is_bigendian) == (20, False)
    assert msg.row_step == 20 * msg.width
    fields = decode(msg)
    expected = points.reshape(msg.height, msg.width)
    for name in ("x", "y", "z", "rgb", "label"):
        np.testing.assert_array_equal(fields[name].view(np.uint32) if name == "rgb" else fields[name],
                                      expected[name].view(np.uint32) if name == "rgb" else expected[name])
    cloud = cloud_array(msg)   # the package's reader agrees, bit for bit (NaNs of dropped points included)
    assert cloud.dtype == points.dtype and cloud.tobytes() == expected.tobytes()


@pytest.mark.parametrize("shape, classes", [((50,), 6), ((4, 7), 6), ((0,), 6), ((30,), 300)])
def test_rosbags_cloud_round_trips(shape, classes):
    ts = ros2_typestore()
    points = make_points(shape, classes)
    if len(shape) == 2:
        points["x"][1, 2] = points["y"][1, 2] = points["z"][1, 2] = np.nan   # a dropped point of a grid
    msg = point_cloud_message(typestore_types(ts), make_header(ts, Header(7_000_000_001, "cam_optical")), points)
    assert np.shares_memory(msg.data, points) or points.size == 0   # a view until serialised
    back = ts.deserialize_cdr(ts.serialize_cdr(msg, POINT_CLOUD_TYPE), POINT_CLOUD_TYPE)
    assert header_of(back) == Header(7_000_000_001, "cam_optical")
    assert (back.height, back.width) == (shape if len(shape) == 2 else (1, shape[0]))
    assert back.is_dense == (len(shape) == 1)
    assert_cloud(back, points, UINT16 if classes > 255 else UINT8)


def test_rclpy_cloud_is_copied_once_and_round_trips():
    pytest.importorskip("sensor_msgs.msg", reason="sensor_msgs (ROS 2) is not installed; runs under colcon test")
    serialization = pytest.importorskip("rclpy.serialization", reason="rclpy is not installed")
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import Header as RosHeader

    types = ros_message_types()
    header = RosHeader(frame_id="cam_optical")
    points = make_points((120, 160))
    point_cloud_message(types, header, make_points((3,)))   # imports and caches outside the measurement
    tracemalloc.start()
    msg = point_cloud_message(types, header, points)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert points.nbytes <= peak < 1.5 * points.nbytes     # one copy of the 384 kB cloud
    assert msg.header is header and (msg.height, msg.width) == (120, 160)
    back = serialization.deserialize_message(serialization.serialize_message(msg), PointCloud2)
    assert back.header.frame_id == "cam_optical"
    assert_cloud(back, points)


def test_bad_points_are_refused():
    ts = ros2_typestore()
    types, header = typestore_types(ts), make_header(ts, Header(0, ""))
    with pytest.raises(ValueError, match="expected a structured"):
        point_cloud_message(types, header, np.zeros((5, 3), np.float32))
    with pytest.raises(ValueError, match="little-endian"):
        point_cloud_message(types, header, make_points((5,)).astype(point_dtype(6).newbyteorder(">")))


def test_camera_for_frame_says_why_there_are_no_points():
    ts = ros2_typestore()
    k = np.array([[50.0, 0, 32], [0, 51.0, 24], [0, 0, 1]])
    info = camera_info_message(ts, Header(1, "cam"), 64, 48, k)
    assert camera_for_frame(info, 64, 48) == PinholeK(50.0, 51.0, 32.0, 24.0, 64, 48)
    with pytest.raises(CameraError, match="no camera_info received yet"):
        camera_for_frame(None, 64, 48)
    with pytest.raises(CameraError, match="camera_info is for 64x48 images, the frame is 640x480"):
        camera_for_frame(info, 640, 480)
    with pytest.raises(CameraError, match="no usable focal length"):
        camera_for_frame(camera_info_message(ts, Header(1, "cam"), 64, 48, np.zeros((3, 3))), 64, 48)
    # rclpy's CameraInfo has the same fields
    rclpy_like = SimpleNamespace(k=list(k.reshape(-1)), width=64, height=48)
    assert camera_for_frame(rclpy_like, 64, 48).fy == 51.0
