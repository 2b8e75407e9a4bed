"""Run hydranet_node on a camera topic, or on several cameras with one network, and RViz
with rviz:=true.

    ros2 launch hydranet_ros hydranet.launch.py image_topic:=/camera/image_raw rviz:=true
    ros2 launch hydranet_ros hydranet.launch.py cameras:="[front, left, right]" \
        left_topic:=/left/color/image_raw

The node's topics are relative (image, depth/image, ...). With one camera it runs in
the camera's namespace, as image_pipeline nodes do, so its outputs sit next to the
camera: /camera/image_raw gives /camera/depth/image, /camera/segmentation/image and so
on, the names hydranet_replay writes. Its inputs are remapped onto the camera's topics.
With ``cameras`` each camera's topics carry its name (front/image, front/depth/image,
...); its image is ``<name>_topic`` (default /<name>/image_raw), and its inputs and
outputs are remapped onto that camera's namespace in the same way. The topic names and
the namespace rule are the package's own (``hydranet_ros.messages.topics``), the ones
the node and hydranet_replay use.
"""
import os

from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from hydranet_ros.messages.topics import (  # the node's own topic rules (the package's import loads no torch)
    CAMERA_INFO_TOPIC,
    COMPRESSED_TOPIC,
    IMAGE_TOPIC,
    OUTPUT_TOPICS,
    camera_info_beside,
    camera_namespace,
    topic_in,
)
from launch import LaunchDescription

PACKAGE = "hydranet_ros"
TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")


def camera_names(text: str) -> list[str]:
    """The ``cameras`` argument: "[front, left, right]" (or "front,left,right") -> names, in
    order; empty = one camera on image_topic. The node checks the names (empty, twice)."""
    inner = text.strip()
    if inner.startswith("[") and inner.endswith("]"):
        inner = inner[1:-1]
    return [name.strip().strip("'\"") for name in inner.split(",")] if inner.strip() else []


def camera_remappings(name: str, image_topic: str, camera_info_topic: str = "") -> list[tuple[str, str]]:
    """One camera's relative topics in the node onto the camera's: its inputs onto its image and
    camera_info, and, for a named camera, its outputs beside its image (the single camera's sit
    there already: the node runs in that camera's namespace)."""
    remaps = [(topic_in(name, IMAGE_TOPIC), image_topic),
              (topic_in(name, COMPRESSED_TOPIC), f"{image_topic}/compressed"),
              (topic_in(name, CAMERA_INFO_TOPIC), camera_info_topic or camera_info_beside(image_topic))]
    if name:
        namespace = camera_namespace(image_topic)
        remaps += [(topic_in(name, topic), topic_in(namespace, topic)) for topic in OUTPUT_TOPICS]
    return remaps


def dds_environment(profile: str, environment: dict) -> dict:
    """The node's Fast DDS profile, unless the user's environment already names one (or
    ``profile`` is empty). Fast DDS reads either variable, depending on its version."""
    if not profile or environment.get("FASTRTPS_DEFAULT_PROFILES_FILE") or \
            environment.get("FASTDDS_DEFAULT_PROFILES_FILE"):
        return {}
    return {"FASTRTPS_DEFAULT_PROFILES_FILE": profile, "FASTDDS_DEFAULT_PROFILES_FILE": profile}


def points_switch(argument: str, rviz: bool) -> bool | None:
    """publish_points for the node: the user's argument when given, else on for RViz (its
    PointCloud2 display would stay empty), else None (the params file decides)."""
    if not argument:
        return True if rviz else None
    if argument.lower() not in TRUE_WORDS + FALSE_WORDS:
        raise ValueError(f"publish_points:={argument!r}: expected true or false (or empty)")
    return argument.lower() in TRUE_WORDS


def _arguments() -> list:
    share = FindPackageShare(PACKAGE)
    return [
        DeclareLaunchArgument("image_topic", default_value="/camera/image_raw",
                              description="Camera image topic (sensor_msgs/Image); with input_transport:="
                                          "compressed the node reads <image_topic>/compressed"),
        DeclareLaunchArgument("cameras", default_value="",
                              description="Several cameras on one network, e.g. \"[front, left, right]\": "
                                          "camera <name> reads <name>_topic:=... (default /<name>/image_raw; "
                                          "camera_info beside it) and publishes beside it; empty = the one "
                                          "camera on image_topic"),
        DeclareLaunchArgument("camera_info_topic", default_value="",
                              description="Camera info topic; empty = camera_info beside image_topic"),
        DeclareLaunchArgument("input_transport", default_value="",
                              description="raw or compressed; empty = as in params_file"),
        DeclareLaunchArgument("weights", default_value="",
                              description="Weights file (.safetensors); empty = as in params_file, "
                                          "else the package's shipped weights"),
        DeclareLaunchArgument("device", default_value="",
                              description="auto, cpu, cuda or cuda:N; empty = as in params_file"),
        DeclareLaunchArgument("params_file",
                              default_value=PathJoinSubstitution([share, "config", "hydranet.yaml"]),
                              description="Node parameters (ros__parameters YAML)"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="Namespace of the node, its outputs and RViz; empty = the "
                                          "camera's (image_topic's) namespace, so that the outputs sit "
                                          "next to the camera"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="Configure and activate the node at start; false = leave it "
                                          "unconfigured for a lifecycle manager (ros2 lifecycle set ...)"),
        DeclareLaunchArgument("dds_profile",
                              default_value=PathJoinSubstitution([share, "config", "fastdds_large_images.xml"]),
                              description="Fast DDS XML profile for the node (room for large images in "
                                          "shared memory); empty = none. An exported "
                                          "FASTRTPS_DEFAULT_PROFILES_FILE is kept"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="Use /clock (true when replaying a bag)"),
        DeclareLaunchArgument("rviz", default_value="false",
                              description="Open RViz with config/hydranet.rviz (also turns on the "
                                          "node's depth/colorized and segmentation/colorized, and "
                                          "points unless publish_points is given)"),
        DeclareLaunchArgument("publish_points", default_value="",
                              description="true or false: publish the labelled point cloud; empty = on "
                                          "with rviz:=true (its PointCloud2 display), else as in params_file"),
        DeclareLaunchArgument("rviz_config",
                              default_value=PathJoinSubstitution([share, "config", "hydranet.rviz"]),
                              description="RViz configuration"),
        DeclareLaunchArgument("fixed_frame", default_value="",
                              description="RViz's fixed frame; empty = the configuration's (map). The points "
                                          "are in the camera's optical frame: without TF from it to map, "
                                          "give that frame (the image header's frame_id)"),
        DeclareLaunchArgument("log_level", default_value="info",
                              description="Log level of the node: debug, info, warn, error"),
    ]


def _launch_setup(context, *args, **kwargs) -> list:
    # plain strings from here on, so that optional overrides can be left out entirely
    # instead of overriding the params file with empty values
    def value(name: str) -> str:
        return LaunchConfiguration(name).perform(context).strip()

    use_sim_time = value("use_sim_time").lower() in TRUE_WORDS
    rviz = value("rviz").lower() in TRUE_WORDS
    overrides = {"use_sim_time": use_sim_time, "autostart": value("autostart").lower() in TRUE_WORDS}
    cameras = camera_names(value("cameras"))
    if cameras:
        # undeclared <name>_topic arguments reach the launch configurations all the same
        topics = {name: context.launch_configurations.get(f"{name}_topic", "").strip() or f"/{name}/image_raw"
                  for name in cameras}
        remappings = [remap for name in cameras for remap in camera_remappings(name, topics[name])]
        overrides["cameras"] = cameras
        image_topic = topics[cameras[0]]   # what RViz shows
        namespace = value("namespace")
    else:
        image_topic = value("image_topic")
        remappings = camera_remappings("", image_topic, value("camera_info_topic"))
        namespace = value("namespace") or camera_namespace(image_topic)

    for name in ("weights", "device", "input_transport"):
        if value(name):
            overrides[name] = value(name)
    if rviz:
        overrides.update(publish_depth_colour=True, publish_segm_colour=True)
    points = points_switch(value("publish_points"), rviz)
    if points is not None:
        overrides["publish_points"] = points

    node = Node(
        package=PACKAGE, executable="hydranet_node", name="hydranet_node", namespace=namespace,
        parameters=[value("params_file"), overrides], remappings=remappings,
        arguments=["--ros-args", "--log-level", value("log_level")],
        additional_env=dds_environment(value("dds_profile"), dict(os.environ)),
        output="screen", emulate_tty=True,
        # a node that cannot start (bad parameter, missing weights) ends the launch
        # rather than leaving RViz open on empty displays
        on_exit=Shutdown(reason="hydranet_node exited"))
    actions = [node]
    if rviz:
        fixed_frame = ["-f", value("fixed_frame")] if value("fixed_frame") else []
        actions.append(Node(
            # with several cameras, the first one's view
            package="rviz2", executable="rviz2", name="rviz2",
            namespace=camera_namespace(image_topic) if cameras else namespace,
            arguments=["-d", value("rviz_config"), *fixed_frame], parameters=[{"use_sim_time": use_sim_time}],
            # the RViz config's topics are relative, like the node's: same namespace, same remap
            remappings=[("image", image_topic)], output="screen"))
    return actions


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([*_arguments(), OpaqueFunction(function=_launch_setup)])
