"""The stamp conventions the node uses, tested without ROS 2. (depth/camera_info is the
camera's CameraInfo with the depth image's header: test_replay_node_agreement and
test_node_ros check it field by field.)"""
from __future__ import annotations

import pytest

from hydranet_ros.messages import stamps
from hydranet_ros.node import health as node_health


def test_stamp_latency():
    assert stamps.stamp_to_ns(12, 345) == 12_000_000_345
    assert node_health.stamp_latency(0, 10**18) is None
    assert node_health.stamp_latency(10**18, 0) is None      # simulated time not started yet
    assert node_health.stamp_latency(stamps.stamp_to_ns(10, 0), stamps.stamp_to_ns(10, 250_000_000)) == pytest.approx(0.25)
