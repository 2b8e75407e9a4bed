"""The output topics the node publishes and the replay tool writes: one table for both."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OutputSpec:
    name: str        # the Prediction field
    topic: str       # relative topic name
    encoding: str    # sensor_msgs/Image encoding
    description: str


OUTPUT_SPECS: tuple[OutputSpec, ...] = (
    OutputSpec("depth", "depth/image", "32FC1", "metric depth in metres (REP 118)"),
    OutputSpec("labels", "segmentation/image", "mono8", "class ids, 255 = unlabeled"),
    OutputSpec("overlay", "overlay/image", "rgb8", "input blended with class colours"),
    OutputSpec("depth_colour", "depth/colorized", "rgb8", "depth through a colour map, for display"),
    OutputSpec("segm_colour", "segmentation/colorized", "rgb8", "class colours, for display"),
)
OUTPUTS_BY_NAME = {spec.name: spec for spec in OUTPUT_SPECS}
DEPTH_CAMERA_INFO_TOPIC = "depth/camera_info"
LABEL_INFO_TOPIC = "segmentation/label_info"
