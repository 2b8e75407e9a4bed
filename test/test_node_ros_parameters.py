"""hydranet_node's parameters with real rclpy, set from outside as `ros2 param set` does: each
live one changes the next output, the others are refused with the reason, ranges are
described, misspelt overrides are named."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from node_harness import (ALL_OUTPUTS, HEIGHT, ROS_SKIP, WIDTH, as_array, check_outputs,  # noqa: F401
                          harness_factory, latched_classes, module_weights, rclpy, reference, rgb_frame)

if rclpy is not None:
    from rcl_interfaces.msg import ParameterType
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import CameraInfo

pytestmark = ROS_SKIP


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


K = [50.0, 0, 32, 0, 50, 24, 0, 0, 1]


def _publisher_of(camera: Any, output: str) -> Any:
    return camera.points_pub if output == "points" else camera.image_pubs.get(output)


def _frame_without(harness: Any, output: str) -> None:
    """The next frame gets its depth image but not ``output``."""
    stamp, _, _ = harness.publish_frame()
    harness.outputs_for(stamp, ("depth",))
    harness.spin_for(0.5)     # the output would have gone out with the depth image
    assert stamp not in harness.stamps_of(output), f"{output} was published while switched off"


@pytest.mark.parametrize("output", ["labels", "depth_colour", "points", "overlay", "segm_colour"])
def test_a_live_output_switch_turns_its_output_on_and_off(harness_factory, reference, output):
    switch = f"publish_{output}"
    harness = harness_factory(subscribe=("depth", output), **{switch: False})
    camera = harness.node.running.first
    assert _publisher_of(camera, output) is None                       # off: not even advertised
    _frame_without(harness, output)

    assert harness.set_param(switch, True).successful
    assert harness.spin_until(lambda: _publisher_of(camera, output) is not None
                              and _publisher_of(camera, output).get_subscription_count() > 0)
    if output == "points":      # back-projected through the latest camera_info
        harness.info_pub.publish(CameraInfo(width=WIDTH, height=HEIGHT, k=K))
        assert harness.spin_until(lambda: camera.camera_info is not None)
    stamp, sent, rgb = harness.publish_frame()
    got = harness.outputs_for(stamp, ("depth", output))
    if output == "points":
        cloud = got["points"]
        assert cloud.header == sent.header and cloud.width * cloud.height > 0
        assert [field.name for field in cloud.fields] == ["x", "y", "z", "rgb", "label"]
    else:
        check_outputs({output: got[output]}, sent, rgb, reference)

    assert harness.set_param(switch, False).successful
    _frame_without(harness, output)


def test_live_output_switches(harness_factory):
    harness = harness_factory(subscribe=("depth",))
    camera = harness.node.running.first

    # camera info: switched off, the next frame has a depth image but no depth/camera_info
    harness.info_pub.publish(CameraInfo(width=WIDTH, height=HEIGHT, k=K))
    assert harness.spin_until(lambda: camera.camera_info is not None)
    stamp, _, _ = harness.publish_frame()
    harness.outputs_for(stamp, ("depth", "camera_info"))
    assert harness.set_param("publish_depth_camera_info", False).successful
    _frame_without(harness, "camera_info")

    # the latched classes go with their switch and come back with it
    assert harness.set_param("publish_label_info", False).successful
    assert not latched_classes(harness, timeout=1.0)
    assert harness.set_param("publish_label_info", True).successful
    assert latched_classes(harness)


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


def test_string_arrays_are_typed_and_an_empty_one_clears_them(harness_factory):
    harness = harness_factory(subscribe=("depth",), publish_points=True, points_exclude_classes=["sky"])
    assert harness.node.get_parameter("points_exclude_classes").value == ["sky"]
    described = harness.describe(["points_exclude_classes", "cameras"])
    assert all(d.type == ParameterType.PARAMETER_STRING_ARRAY for d in described.values())
    assert harness.set_param("points_exclude_classes", ["sky", "road"]).successful
    assert harness.node.running.points_options.exclude == (0, 2)
    # what `ros2 param set <node> points_exclude_classes "[]"` sends: YAML's [] as an empty bool array
    empty = Parameter("points_exclude_classes", Parameter.Type.BOOL_ARRAY, []).to_parameter_msg()
    result = harness.call(SetParameters, "set_parameters", SetParameters.Request(parameters=[empty])).results[0]
    assert result.successful, result.reason
    assert harness.node.get_parameter("points_exclude_classes").value == []
    assert harness.node.running.points_options.exclude == ()
    refused = harness.set_param("points_exclude_classes", "sky")           # a string, not a list
    assert not refused.successful and harness.node.get_parameter("points_exclude_classes").value == []


def test_describe_shows_ranges_and_read_only(harness_factory):
    harness = harness_factory(start=False)
    names = ["overlay_alpha", "qos_depth", "autostart", "depth_colormap"]
    descriptors = harness.describe(names)
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
