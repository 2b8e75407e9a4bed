"""Play a bag into hydranet_node on simulated time and watch it in RViz.

    ros2 launch hydranet_ros replay.launch.py bag:=/data/drive image_topic:=/camera/image_raw

`ros2 bag play --clock` publishes /clock from the bag's timestamps, so latency and
stamps in the node's outputs refer to the recording, not to the wall clock. The
node runs as hydranet.launch.py runs it: its outputs sit next to the bag's camera
(/camera/image_raw gives /camera/depth/image ...), the names hydranet_replay writes.
The player gets the same Fast DDS profile as the node: a bag recorded from a
best-effort camera plays best effort, and large frames then need it (README, QoS).
"""
import importlib.util
import os
from pathlib import Path

from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription, OpaqueFunction, TimerAction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

PACKAGE = "hydranet_ros"
TRUE_WORDS = ("true", "1", "yes", "on")
# arguments passed through unchanged to hydranet.launch.py
FORWARDED = ("image_topic", "camera_info_topic", "input_transport", "weights", "device",
             "params_file", "namespace", "rviz", "fixed_frame", "log_level", "dds_profile")


def _hydranet_launch():
    """hydranet.launch.py, which lies beside this file (in the source tree and when installed)."""
    spec = importlib.util.spec_from_file_location("hydranet_launch", Path(__file__).with_name("hydranet.launch.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _arguments() -> list:
    share = FindPackageShare(PACKAGE)
    return [
        DeclareLaunchArgument("bag", description="Bag to play (directory or file)"),
        DeclareLaunchArgument("image_topic", default_value="/camera/image_raw",
                              description="Image topic in the bag"),
        DeclareLaunchArgument("camera_info_topic", default_value="",
                              description="Camera info topic in the bag; empty = camera_info beside "
                                          "image_topic"),
        DeclareLaunchArgument("input_transport", default_value="",
                              description="raw or compressed (the bag holds <image_topic>/compressed); "
                                          "empty = as in params_file"),
        DeclareLaunchArgument("rate", default_value="1.0", description="Playback rate (1.0 = real time)"),
        DeclareLaunchArgument("loop", default_value="false", description="Play the bag in a loop"),
        DeclareLaunchArgument("clock_hz", default_value="100",
                              description="Rate at which the player publishes /clock"),
        DeclareLaunchArgument("delay", default_value="5.0",
                              description="Seconds to wait before playing, so that the node has loaded "
                                          "its weights and RViz has subscribed"),
        DeclareLaunchArgument("weights", default_value="", description="Weights file; empty = default"),
        DeclareLaunchArgument("device", default_value="", description="auto, cpu, cuda or cuda:N"),
        DeclareLaunchArgument("params_file",
                              default_value=PathJoinSubstitution([share, "config", "hydranet.yaml"]),
                              description="Node parameters (ros__parameters YAML)"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="Namespace of the node and its outputs; empty = the camera's"),
        DeclareLaunchArgument("dds_profile",
                              default_value=PathJoinSubstitution([share, "config", "fastdds_large_images.xml"]),
                              description="Fast DDS XML profile for the player and the node; empty = none"),
        DeclareLaunchArgument("rviz", default_value="true", description="Open RViz"),
        DeclareLaunchArgument("fixed_frame", default_value="",
                              description="RViz's fixed frame; empty = the configuration's (map); the camera's "
                                          "optical frame shows the points without TF"),
        DeclareLaunchArgument("log_level", default_value="info", description="Log level of the node"),
    ]


def _play_bag(context, *args, **kwargs) -> list:
    def value(name: str) -> str:
        return LaunchConfiguration(name).perform(context).strip()

    # the bag path goes before --clock: `--clock` takes an optional value and would
    # otherwise swallow the path
    cmd = ["ros2", "bag", "play", os.path.expanduser(value("bag")),
           "--clock", value("clock_hz"), "--rate", value("rate")]
    if value("loop").lower() in TRUE_WORDS:
        cmd.append("--loop")
    env = _hydranet_launch().dds_environment(value("dds_profile"), dict(os.environ))
    return [TimerAction(period=float(value("delay")),
                        actions=[ExecuteProcess(cmd=cmd, name="bag_play", output="screen", additional_env=env)])]


def generate_launch_description() -> LaunchDescription:
    hydranet = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare(PACKAGE), "launch", "hydranet.launch.py"])),
        launch_arguments={**{name: LaunchConfiguration(name) for name in FORWARDED},
                          "use_sim_time": "true"}.items())
    return LaunchDescription([*_arguments(), hydranet, OpaqueFunction(function=_play_bag)])
