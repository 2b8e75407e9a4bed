"""One hydranet_node serving several cameras with one network, with real rclpy: each camera
gets its own outputs with its own headers, frames of one size run as one batch, a camera
that stops does not stop the others, a camera that changes size is counted, and bad
camera names stop the start."""
from __future__ import annotations

import numpy as np
from node_harness import (HEIGHT, ROS_SKIP, WIDTH, as_array, diagnostics_of, harness_factory,  # noqa: F401
                          image_msg, module_weights, next_stamp, rclpy, reference)

if rclpy is not None:
    from sensor_msgs.msg import CameraInfo

pytestmark = ROS_SKIP

CAMERAS = ("front", "left", "right")
# front and left have one size, right another
SIZES = {"front": (HEIGHT, WIDTH), "left": (HEIGHT, WIDTH), "right": (HEIGHT // 2, WIDTH // 2)}


def frame(name: str, seed: int, size: tuple[int, int] | None = None) -> np.ndarray:
    height, width = size or SIZES[name]
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def start_cameras(harness, outputs=("depth",), names=CAMERAS) -> dict:
    cameras = {name: harness.camera(name, outputs) for name in names}
    assert harness.node.start(), harness.node.failure
    run = harness.node.running

    def listened(name: str) -> list:
        camera = run.cameras[name]
        return [camera.points_pub if key == "points" else camera.info_pub if key == "camera_info"
                else camera.image_pubs[key] for key in outputs]

    assert harness.spin_until(lambda: all(
        camera.image_pub.get_subscription_count() > 0 and camera.info_pub.get_subscription_count() > 0
        and all(pub.get_subscription_count() > 0 for pub in listened(name))
        for name, camera in cameras.items())), "discovery timed out"
    return cameras


def wait_for(harness, cameras: dict, sent: dict, key: str = "depth") -> dict:
    """Each camera's ``key`` output for the frame it was sent."""
    assert harness.spin_until(lambda: all(cameras[name].got(key, msg.header.stamp.sec)
                                          for name, msg in sent.items())), \
        {name: [m.header.stamp.sec for m in cameras[name].received[key]] for name in sent}
    return {name: cameras[name].got(key, msg.header.stamp.sec)[0] for name, msg in sent.items()}


def test_three_cameras_of_two_sizes_each_get_their_own_outputs_and_same_sizes_run_as_one_batch(
        harness_factory, reference):
    # a generous wait: the three frames below are all waiting when the worker takes them
    harness = harness_factory(start=False, cameras=list(CAMERAS), batch_wait_ms=5000.0, publish_points=True)
    cameras = start_cameras(harness, outputs=("depth", "labels", "points", "camera_info"))
    run = harness.node.running
    for name, camera in cameras.items():
        height, width = SIZES[name]
        k = [40.0, 0, width / 2, 0, 40, height / 2, 0, 0, 1]
        camera.info_pub.publish(CameraInfo(width=width, height=height, k=k))
    assert harness.spin_until(lambda: all(c.camera_info is not None for c in run.cameras.values()))

    images = {name: frame(name, seed) for seed, name in enumerate(CAMERAS)}
    sent = {name: cameras[name].publish(images[name]) for name in CAMERAS}
    for key in ("depth", "labels", "points", "camera_info"):
        got = wait_for(harness, cameras, sent, key)
        for name, msg in got.items():
            assert msg.header == sent[name].header, (key, name)          # its own stamp and frame_id
    depth = wait_for(harness, cameras, sent)
    for name in CAMERAS:
        expected = reference.predict(images[name], ("depth",)).depth
        np.testing.assert_allclose(as_array(depth[name]), expected, rtol=1e-4, atol=1e-4, err_msg=name)
    # front and left in one pass of two, right alone
    assert run.batches.snapshot().sizes == {2: 1, 1: 1}
    statuses = {status.name: status for status in diagnostics_of(harness, every=True)}
    main = {kv.key: kv.value for kv in statuses[f"{harness.node.get_name()}: inference"].values}
    assert main["batches (frames in one pass: passes)"] == "1: 1, 2: 1" and main["cameras"] == "front, left, right"
    for name in CAMERAS:
        values = {kv.key: kv.value for kv in statuses[f"{harness.node.get_name()}: camera {name}"].values}
        assert values["frames processed"] == "1" and values["image topic"].endswith(f"/{name}/image")


def test_a_camera_that_stops_does_not_stop_the_others(harness_factory, capfd):
    harness = harness_factory(start=False, cameras=list(CAMERAS), batch_wait_ms=200.0)
    cameras = start_cameras(harness)
    stats = {name: camera.stats for name, camera in harness.node.running.cameras.items()}
    wait_for(harness, cameras, {name: cameras[name].publish(frame(name, 1)) for name in CAMERAS})
    for round_ in range(3):                                # left has stopped
        wait_for(harness, cameras, {name: cameras[name].publish(frame(name, round_)) for name in ("front", "right")})
    assert stats["left"].received == 1 and stats["front"].processed == stats["right"].processed == 4
    # the status line: each camera, then the passes
    capfd.readouterr()
    assert harness.set_param("log_period", 0.2).successful
    harness.spin_for(0.6)
    line = next(line for line in capfd.readouterr().err.splitlines() if "active: front: " in line)
    assert "; left: " in line and "1 received" in line and "; right: " in line and "; batches " in line


def test_a_camera_that_changes_size_is_counted_and_still_served(harness_factory):
    harness = harness_factory(start=False, cameras=["front", "left"])
    cameras = start_cameras(harness, names=("front", "left"))
    stats = {name: camera.stats for name, camera in harness.node.running.cameras.items()}
    wait_for(harness, cameras, {"front": cameras["front"].publish(frame("front", 1))})
    smaller = cameras["front"].publish(frame("front", 2, size=(HEIGHT // 2, WIDTH // 2)))
    got = wait_for(harness, cameras, {"front": smaller})["front"]
    assert (got.height, got.width) == (HEIGHT // 2, WIDTH // 2)
    assert stats["front"].resized == 1 and "changed from 64x48 to 32x24" in stats["front"].last_error
    wait_for(harness, cameras, {"left": cameras["left"].publish(frame("left", 3))})
    assert stats["left"].resized == 0


def test_a_duplicate_or_empty_camera_name_stops_the_start(harness_factory):
    for names, reason in ((["front", "left", "front"], "'front' given more than once"), (["front", ""], "empty")):
        harness = harness_factory(start=False, cameras=names)
        assert not harness.node.start()
        assert "parameter 'cameras'" in harness.node.failure and reason in harness.node.failure


def test_frames_run_together_only_in_one_channel_order_each_converted_on_the_device(harness_factory, reference):
    # front and right send rgb8, left bgr8, all of one size: the bgr8 frame runs in a pass of its own
    harness = harness_factory(start=False, cameras=list(CAMERAS), batch_wait_ms=5000.0)
    cameras = start_cameras(harness)
    images = {name: frame("front", seed) for seed, name in enumerate(CAMERAS)}
    encodings = {"front": "rgb8", "left": "bgr8", "right": "rgb8"}
    sent = {}
    for name in CAMERAS:
        pixels = images[name][:, :, ::-1] if encodings[name] == "bgr8" else images[name]
        sent[name] = image_msg(pixels, encodings[name], next_stamp(), frame_id=f"{name}_optical")
        cameras[name].image_pub.publish(sent[name])
    depth = wait_for(harness, cameras, sent)
    for name in CAMERAS:
        expected = reference.predict(images[name], ("depth",)).depth
        np.testing.assert_allclose(as_array(depth[name]), expected, rtol=1e-4, atol=1e-4, err_msg=name)
    assert harness.node.running.batches.snapshot().sizes == {2: 1, 1: 1}


def test_the_warm_up_covers_the_channel_orders_a_capturing_backend_would_capture_anew():
    from hydranet_ros.node.frames import warmup_channels

    assert warmup_channels("compressed", "cudagraph") == ("bgr",)      # a JPEG is always OpenCV's BGR
    assert warmup_channels("raw", "cudagraph") == warmup_channels("raw", "compile") == ("rgb", "bgr")
    assert warmup_channels("raw", "eager") == warmup_channels("raw", "onnxruntime") == ("rgb",)
