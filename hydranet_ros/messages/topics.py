"""The output topics the node publishes and the replay tool writes: one table for both."""
from __future__ import annotations

from dataclasses import dataclass

# the rosbag2/ROS 2 type names of a camera frame
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"


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
DEPTH_CAMERA_INFO_TOPIC = "depth/camera_info"
LABEL_INFO_TOPIC = "segmentation/label_info"
# sensor_msgs/PointCloud2: x, y, z, rgb, label in the input's optical frame (messages.point_cloud)
POINTS_TOPIC = "points"

IMAGE_TOPIC = "image"
# image_transport's convention: the compressed form lives under the raw topic
COMPRESSED_TOPIC = "image/compressed"
CAMERA_INFO_TOPIC = "camera_info"

# every topic a camera's outputs go to, relative: what a launch file remaps beside the camera
OUTPUT_TOPICS = (*(spec.topic for spec in OUTPUT_SPECS), DEPTH_CAMERA_INFO_TOPIC, LABEL_INFO_TOPIC, POINTS_TOPIC)


def input_topic(transport: str) -> str:
    return COMPRESSED_TOPIC if transport == "compressed" else IMAGE_TOPIC


def camera_namespace(image_topic: str, msgtype: str = IMAGE_TYPE) -> str:
    """The camera's namespace: ``/camera/image_raw`` and ``/camera/image_raw/compressed`` -> ``/camera``,
    ``/image_raw`` -> ``/``; a relative topic gives a relative one (``cam/image`` -> ``cam``,
    ``image`` -> ``""``), which ROS resolves in the node's own namespace.

    image_transport publishes a CompressedImage one level below the image it
    encodes, so that level is dropped first."""
    parts = [p for p in image_topic.split("/") if p]
    if msgtype == COMPRESSED_TYPE and len(parts) > 1:
        parts = parts[:-1]
    namespace = "/".join(parts[:-1])
    return "/" + namespace if image_topic.startswith("/") else namespace


def topic_in(namespace: str, relative: str) -> str:
    """``relative`` in ``namespace`` (a namespace, or a camera's name), keeping it absolute or
    relative as the namespace is: ``/camera`` -> ``/camera/depth/image``, ``/`` -> ``/depth/image``,
    ``front`` -> ``front/depth/image``, ``""`` -> ``depth/image``."""
    return f"{namespace.rstrip('/')}/{relative}" if namespace else relative


def camera_info_beside(image_topic: str, msgtype: str = IMAGE_TYPE) -> str:
    """The CameraInfo topic of a camera image, beside it (image_transport's convention):
    ``/camera/image_raw`` -> ``/camera/camera_info``."""
    return topic_in(camera_namespace(image_topic, msgtype), CAMERA_INFO_TOPIC)


def join_topic(namespace: str, relative: str) -> str:
    """A bag's topic (bags hold absolute names): ``relative`` in ``namespace`` taken as absolute."""
    return topic_in("/" + namespace.strip("/"), relative.strip("/"))
