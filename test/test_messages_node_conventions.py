"""The message conventions the node uses (camera info, stamps), tested without ROS 2;
moved here unchanged from test_node_logic.py."""
from __future__ import annotations

import pytest

from hydranet_ros.messages import camera_info, stamps
from hydranet_ros.node import health as node_health


INFO = camera_info.Intrinsics(width=640, height=480,
                     k=(500.0, 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0),
                     p=(500.0, 0.0, 320.0, -25.0, 0.0, 510.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0),
                     roi=(10, 20, 300, 200))


def test_camera_info_unchanged_at_input_resolution():
    assert camera_info.scale_intrinsics(INFO, (640, 480), (640, 480)) == INFO


def test_camera_info_scales_with_the_output():
    half = camera_info.scale_intrinsics(INFO, (640, 480), (320, 240))
    assert (half.width, half.height) == (320, 240)
    assert half.k == (250.0, 0.0, 160.0, 0.0, 255.0, 120.0, 0.0, 0.0, 1.0)
    assert half.p == (250.0, 0.0, 160.0, -12.5, 0.0, 255.0, 120.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    assert half.roi == (5, 10, 150, 100)
    # anisotropic: only x changes
    wide = camera_info.scale_intrinsics(INFO, (640, 480), (1280, 480))
    assert wide.k[0] == 1000.0 and wide.k[2] == 640.0 and wide.k[4] == 510.0 and wide.k[5] == 240.0


def test_uncalibrated_camera_info_stays_uncalibrated():
    blank = camera_info.Intrinsics(width=0, height=0, k=(0.0,) * 9, p=(0.0,) * 12)
    scaled = camera_info.scale_intrinsics(blank, (640, 480), (320, 240))
    assert (scaled.width, scaled.height) == (0, 0) and scaled.k == (0.0,) * 9


def test_camera_info_rejects_empty_sizes():
    with pytest.raises(ValueError, match="positive"):
        camera_info.scale_intrinsics(INFO, (0, 480), (320, 240))


def test_stamp_latency():
    assert stamps.stamp_to_ns(12, 345) == 12_000_000_345
    assert node_health.stamp_latency(0, 10**18) is None
    assert node_health.stamp_latency(10**18, 0) is None      # simulated time not started yet
    assert node_health.stamp_latency(stamps.stamp_to_ns(10, 0), stamps.stamp_to_ns(10, 250_000_000)) == pytest.approx(0.25)
