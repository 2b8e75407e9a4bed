"""hydranet_node's labelled point cloud with real rclpy: a point's z is the depth image at its
pixel and its x, y follow from the camera's K; a camera_info that cannot back-project gives no
points and says why; class names the model lacks are refused by name, at configure and live."""
from __future__ import annotations

import numpy as np
from node_harness import (HEIGHT, ROS_SKIP, WIDTH, as_array, diagnostics_of, harness_factory,  # noqa: F401
                          module_weights, rclpy, reference)

from hydranet_ros.messages.point_cloud import cloud_array

if rclpy is not None:
    from sensor_msgs.msg import CameraInfo, PointField
    from std_msgs.msg import Header

pytestmark = ROS_SKIP

FX = FY = 50.0
CX, CY = 32.0, 24.0
K = [FX, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0]
NO_POINTS = "frames without points (camera_info)"


def camera_info(k=K, width: int = WIDTH, height: int = HEIGHT) -> "CameraInfo":
    return CameraInfo(header=Header(frame_id="camera_optical"), width=width, height=height, k=k)


def give_camera_info(harness, info: "CameraInfo") -> None:
    assert harness.spin_until(lambda: harness.info_pub.get_subscription_count() > 0)
    harness.info_pub.publish(info)
    assert harness.spin_until(lambda: harness.node.running.first.camera_info is not None
                              and list(harness.node.running.first.camera_info.k) == list(info.k))


def points_for(harness, outputs: tuple[str, ...] = ("depth", "labels", "points")):
    """A frame through the node: (message sent, rgb, {output: message})."""
    assert harness.spin_until(lambda: harness.node.running.first.points_pub.get_subscription_count() > 0)
    stamp, sent, rgb = harness.publish_frame()
    return sent, rgb, harness.outputs_for(stamp, outputs)


def test_a_points_z_is_the_depth_at_its_pixel_and_x_y_follow_from_k(harness_factory):
    harness = harness_factory(subscribe=("depth", "labels"), publish_points=True, points_organized=True,
                              points_stride=2)
    give_camera_info(harness, camera_info())
    sent, rgb, outputs = points_for(harness)
    msg = outputs["points"]
    assert msg.header.stamp == sent.header.stamp and msg.header.frame_id == sent.header.frame_id
    fields = {f.name: (f.offset, f.datatype, f.count) for f in msg.fields}
    assert fields == {"x": (0, PointField.FLOAT32, 1), "y": (4, PointField.FLOAT32, 1),
                      "z": (8, PointField.FLOAT32, 1), "rgb": (12, PointField.FLOAT32, 1),
                      "label": (16, PointField.UINT8, 1)}
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (HEIGHT // 2, WIDTH // 2, 20, 20 * WIDTH // 2)
    assert not msg.is_bigendian

    cloud = cloud_array(msg)
    assert cloud.shape == (24, 32)
    depth = as_array(outputs["depth"])[::2, ::2]
    kept = np.isfinite(cloud["z"])
    assert kept.mean() > 0.9                                # random weights: nearly every depth is positive
    np.testing.assert_array_equal(cloud["z"][kept], depth[kept])
    u = np.arange(0, WIDTH, 2, dtype=np.float32)[None, :]
    v = np.arange(0, HEIGHT, 2, dtype=np.float32)[:, None]
    np.testing.assert_allclose(cloud["x"][kept], ((u - CX) * depth / FX)[kept], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cloud["y"][kept], ((v - CY) * depth / FY)[kept], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(cloud["label"][kept], as_array(outputs["labels"])[::2, ::2][kept])
    pixels = rgb[::2, ::2].astype(np.uint32)
    packed = (pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2]
    np.testing.assert_array_equal(cloud["rgb"][kept].view(np.uint32), packed[kept])


def test_a_camera_info_that_cannot_back_project_gives_no_points_and_says_why(harness_factory):
    harness = harness_factory(subscribe=("depth",), publish_points=True)
    stats = harness.node.running.first.stats
    _, _, outputs = points_for(harness, ("depth",))               # no camera_info yet: the depth still comes
    assert stats.without_points == 1 and "no camera_info received yet" in stats.last_error

    give_camera_info(harness, camera_info(k=[0.0] * 9))
    stamp = points_for(harness, ("depth",))[0].header.stamp.sec
    assert stats.without_points == 2 and "no usable focal length" in stats.last_error
    status = diagnostics_of(harness)[-1]
    assert {kv.key: kv.value for kv in status.values}[NO_POINTS] == "2"
    assert "without points" in status.message and "focal length" in status.message

    give_camera_info(harness, camera_info(width=2 * WIDTH, height=2 * HEIGHT))
    points_for(harness, ("depth",))
    assert stats.without_points == 3 and "camera_info is for 128x96 images, the frame is 64x48" in stats.last_error
    harness.spin_for(0.3)
    assert not harness.received["points"] and stamp in harness.stamps_of("depth")

    give_camera_info(harness, camera_info())                      # a usable one: points again
    _, _, outputs = points_for(harness, ("depth", "points"))
    assert outputs["points"].width > 0 and stats.without_points == 3


def test_dense_cloud_with_live_options(harness_factory, reference):
    harness = harness_factory(subscribe=("depth", "labels"), publish_points=True)
    give_camera_info(harness, camera_info())
    _, _, outputs = points_for(harness)
    cloud, depth = cloud_array(outputs["points"]), as_array(outputs["depth"])[::4, ::4]
    kept = np.isfinite(depth) & (depth > 0)
    assert cloud.shape == (1, int(kept.sum())) and np.isfinite(cloud["z"]).all()   # every 4th pixel, kept only

    # a depth limit and a stride, changed live
    limit = float(np.median(depth[kept]))
    assert harness.set_param("points_max_depth", limit).successful
    assert harness.set_param("points_stride", 2).successful
    _, _, outputs = points_for(harness)
    cloud, depth = cloud_array(outputs["points"]), as_array(outputs["depth"])[::2, ::2]
    assert cloud.shape == (1, int(np.count_nonzero((depth > 0) & (depth <= limit))))
    assert cloud["z"].max() <= limit

    # a class left out, by its name; a name the model lacks is refused by name
    labels = as_array(outputs["labels"])[::2, ::2]
    common = int(np.bincount(labels.ravel()).argmax())
    refused = harness.set_param("points_exclude_classes", [reference.card.class_names[common], "lava"])
    assert not refused.successful and "'lava'" in refused.reason and "points_exclude_classes" in refused.reason
    assert harness.set_param("points_max_depth", 0.0).successful
    assert harness.set_param("points_exclude_classes", [reference.card.class_names[common]]).successful
    _, _, outputs = points_for(harness)
    cloud, labels = cloud_array(outputs["points"]), as_array(outputs["labels"])[::2, ::2]
    assert common not in cloud["label"]
    assert cloud.shape == (1, int(np.count_nonzero(labels != common)))


def test_a_class_the_model_lacks_fails_configure_naming_it(harness_factory):
    harness = harness_factory(start=False, publish_points=True, points_exclude_classes=["sky", "lava"])
    assert not harness.node.start()
    assert "points_exclude_classes" in harness.node.failure and "'lava'" in harness.node.failure
    assert "'sky'" not in harness.node.failure.split("classes are")[0]
    assert harness.node.running is None
