"""Launch files and the RViz config: checked statically everywhere, built where ROS 2 is."""
from __future__ import annotations

import ast
import importlib.util
import py_compile
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest
import yaml

from hydranet_ros.messages.topics import (DEPTH_CAMERA_INFO_TOPIC, IMAGE_TOPIC, IMAGE_TYPE, LABEL_INFO_TOPIC,
                                          OUTPUT_SPECS, POINTS_TOPIC, camera_namespace, join_topic)
from hydranet_ros.node.parameters import PARAMS_BY_NAME

ROOT = Path(__file__).resolve().parents[1]
HYDRANET_LAUNCH = ROOT / "launch" / "hydranet.launch.py"
REPLAY_LAUNCH = ROOT / "launch" / "replay.launch.py"
RVIZ = ROOT / "config" / "hydranet.rviz"
LAUNCH_FILES = (HYDRANET_LAUNCH, REPLAY_LAUNCH)
NO_LAUNCH = "ROS 2 launch/launch_ros are not importable (ROS 2 is not sourced)"


def _declared_arguments(path: Path) -> dict[str, bool]:
    """name -> has a default, for every DeclareLaunchArgument(...) in the file."""
    found = {}
    for call in ast.walk(ast.parse(path.read_text())):
        if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "DeclareLaunchArgument":
            found[call.args[0].value] = any(k.arg == "default_value" for k in call.keywords)
    return found


def _literal(node: ast.AST) -> bool:
    try:
        ast.literal_eval(node)
    except ValueError:
        return False
    return True


def _function(path: Path, name: str):
    """One plain function (or constant) of a launch file, without importing launch: the file's
    functions, its constants and its imports from hydranet_ros are defined, for the ones it uses."""
    tree = ast.parse(path.read_text())
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)
                 or (isinstance(n, ast.Assign) and _literal(n.value))
                 or (isinstance(n, ast.ImportFrom) and (n.module or "").startswith("hydranet_ros"))]
    namespace: dict = {}
    exec(compile(ast.Module(body=functions, type_ignores=[]), str(path), "exec"), namespace)
    return namespace[name]


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_files_compile(path, tmp_path):
    py_compile.compile(str(path), cfile=str(tmp_path / "out.pyc"), doraise=True)


def test_hydranet_launch_arguments():
    args = _declared_arguments(HYDRANET_LAUNCH)
    assert {"image_topic", "weights", "params_file", "namespace", "use_sim_time", "rviz"} <= set(args)
    assert all(args.values())   # everything has a default: `ros2 launch hydranet_ros hydranet.launch.py` runs


def test_replay_launch_arguments():
    args = _declared_arguments(REPLAY_LAUNCH)
    assert {"bag", "image_topic", "rate", "weights", "params_file", "rviz"} <= set(args)
    assert args["bag"] is False and all(v for k, v in args.items() if k != "bag")
    # everything replay forwards must be an argument of hydranet.launch.py
    forwarded = next(n for n in ast.parse(REPLAY_LAUNCH.read_text()).body
                     if isinstance(n, ast.Assign) and n.targets[0].id == "FORWARDED")
    names = {element.value for element in forwarded.value.elts}
    assert names <= set(_declared_arguments(HYDRANET_LAUNCH)) and names <= set(args)
    assert "--clock" in REPLAY_LAUNCH.read_text() and "use_sim_time" in REPLAY_LAUNCH.read_text()


def test_parameter_overrides_in_launch_name_real_parameters():
    tree = ast.parse(HYDRANET_LAUNCH.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "update":
            names |= {k.arg for k in node.keywords}
        if isinstance(node, ast.For) and isinstance(node.iter, ast.Tuple):
            names |= {e.value for e in node.iter.elts}
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "overrides":
            names |= {key.value for key in node.value.keys}
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Subscript) \
                and getattr(node.targets[0].value, "id", None) == "overrides" \
                and isinstance(node.targets[0].slice, ast.Constant):
            names.add(node.targets[0].slice.value)
    assert names == {"use_sim_time", "autostart", "weights", "device", "input_transport", "publish_depth_colour",
                     "publish_segm_colour", "publish_points", "cameras"}
    assert names - {"use_sim_time"} <= set(PARAMS_BY_NAME)   # use_sim_time is rclpy's own


def test_the_launch_files_import_the_topic_rules_without_torch():
    """hydranet.launch.py takes the node's topic names and namespace rule from the package;
    ros2 launch runs under the system's python, which may have no torch at all."""
    code = ("import sys; import hydranet_ros.messages.topics; "
            "assert 'torch' not in sys.modules, 'importing the topic rules imported torch'; "
            "from hydranet_ros import load_predictor; assert callable(load_predictor)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_the_node_runs_in_the_camera_namespace_replay_writes_to():
    """Outputs next to the camera: the launch file's namespace rule is the one hydranet_replay
    puts its outputs under for the same camera, so both give /camera/depth/image."""
    assert _function(HYDRANET_LAUNCH, "camera_namespace") is camera_namespace
    namespace = _function(HYDRANET_LAUNCH, "camera_namespace")("/camera/image_raw")
    assert join_topic(namespace, OUTPUT_SPECS[0].topic) == "/camera/depth/image"


@pytest.mark.parametrize("text, names", [
    ("", []), ("[]", []), ("[front, left, right]", ["front", "left", "right"]), ("front,left", ["front", "left"]),
    ("['front', \"rear/left\"]", ["front", "rear/left"]), ("[front, , left]", ["front", "", "left"]),
])
def test_the_cameras_argument(text, names):
    assert _function(HYDRANET_LAUNCH, "camera_names")(text) == names   # the node refuses an empty name


def test_the_launch_file_knows_every_output_topic():
    assert set(_function(HYDRANET_LAUNCH, "OUTPUT_TOPICS")) == {
        *(spec.topic for spec in OUTPUT_SPECS), DEPTH_CAMERA_INFO_TOPIC, LABEL_INFO_TOPIC, POINTS_TOPIC}


def test_each_camera_is_remapped_onto_its_own_topics():
    remappings = _function(HYDRANET_LAUNCH, "camera_remappings")
    # the single camera: inputs only (its outputs sit beside it through the node's namespace)
    assert remappings("", "/cam/image_raw") == [("image", "/cam/image_raw"),
                                                 ("image/compressed", "/cam/image_raw/compressed"),
                                                 ("camera_info", "/cam/camera_info")]
    assert remappings("", "/cam/image_raw", "/cam/info")[2] == ("camera_info", "/cam/info")
    # a named camera: its inputs, and every output beside its image, as the single camera's
    named = dict(remappings("left", "/left/color/image_raw"))
    assert named["left/image"] == "/left/color/image_raw" and named["left/camera_info"] == "/left/color/camera_info"
    assert named["left/depth/image"] == join_topic(camera_namespace("/left/color/image_raw", IMAGE_TYPE),
                                                   "depth/image") == "/left/color/depth/image"
    assert named["left/points"] == "/left/color/points"
    assert len(named) == 3 + len(_function(HYDRANET_LAUNCH, "OUTPUT_TOPICS"))


@pytest.mark.parametrize("argument, rviz, switch", [
    ("", True, True),          # RViz's PointCloud2 display needs the cloud
    ("", False, None),         # the params file decides
    ("false", True, False), ("true", False, True), ("On", False, True), ("0", True, False),
])
def test_rviz_turns_the_points_on_unless_the_user_chose(argument, rviz, switch):
    assert _function(HYDRANET_LAUNCH, "points_switch")(argument, rviz) is switch


def test_a_misspelt_publish_points_argument_is_refused():
    with pytest.raises(ValueError, match="publish_points:='ture'"):
        _function(HYDRANET_LAUNCH, "points_switch")("ture", True)


def test_the_dds_profile_is_applied_unless_the_user_chose_one():
    dds_environment = _function(HYDRANET_LAUNCH, "dds_environment")
    assert dds_environment("/share/p.xml", {}) == {"FASTRTPS_DEFAULT_PROFILES_FILE": "/share/p.xml",
                                                   "FASTDDS_DEFAULT_PROFILES_FILE": "/share/p.xml"}
    assert dds_environment("", {}) == {}
    assert dds_environment("/share/p.xml", {"FASTRTPS_DEFAULT_PROFILES_FILE": "/mine.xml"}) == {}
    assert dds_environment("/share/p.xml", {"FASTDDS_DEFAULT_PROFILES_FILE": "/mine.xml"}) == {}


def test_the_shipped_dds_profile_is_installed_and_well_formed():
    profile = ROOT / "config" / "fastdds_large_images.xml"
    namespace = {"dds": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}
    root = ElementTree.parse(profile).getroot()
    segment = root.find("dds:transport_descriptors/dds:transport_descriptor/dds:segment_size", namespace)
    assert int(segment.text) >= 1920 * 1080 * 3 * 4      # a few 1080p rgb8 frames in flight
    participant = root.find("dds:participant", namespace)
    assert participant.get("is_default_profile") == "true"
    used = {t.text for t in participant.findall("dds:rtps/dds:userTransports/dds:transport_id", namespace)}
    declared = {t.text for t in root.findall("dds:transport_descriptors/dds:transport_descriptor/dds:transport_id",
                                             namespace)}
    assert used == declared and len(used) == 2          # shared memory and UDP (other machines)
    assert "config/*.xml" in (ROOT / "setup.py").read_text()


# ----- RViz -------------------------------------------------------------------------

def _rviz() -> dict:
    return yaml.safe_load(RVIZ.read_text())


def test_rviz_config_structure():
    config = _rviz()
    assert {"Panels", "Visualization Manager", "Window Geometry"} <= set(config)
    manager = config["Visualization Manager"]
    assert {"Displays", "Global Options", "Views"} <= set(manager)
    names = [d["Name"] for d in manager["Displays"]]
    assert len(names) == len(set(names))
    for display in manager["Displays"]:
        assert display["Class"] in ("rviz_default_plugins/Image", "rviz_default_plugins/PointCloud2")
        topic = display["Topic"]
        assert set(topic) == {"Value", "Depth", "Reliability Policy", "History Policy", "Durability Policy"}
        assert topic["Reliability Policy"] in ("Reliable", "Best Effort")
        assert topic["Durability Policy"] in ("Volatile", "Transient Local")
        assert topic["History Policy"] == "Keep Last" and topic["Depth"] >= 1
        # the geometry section names each image display's dock
        assert display["Name"] in config["Window Geometry"] or display["Class"].endswith("PointCloud2")


def test_rviz_shows_the_node_topics():
    displays = {d["Topic"]["Value"]: d for d in _rviz()["Visualization Manager"]["Displays"]}
    topics = {spec.name: spec.topic for spec in OUTPUT_SPECS}
    assert {IMAGE_TOPIC, topics["depth"], topics["depth_colour"], topics["segm_colour"], topics["overlay"]} \
        <= set(displays)
    assert set(displays) <= {IMAGE_TOPIC, POINTS_TOPIC, *topics.values()}
    # the labelled cloud, coloured by its rgb field
    points = displays[POINTS_TOPIC]
    assert points["Class"] == "rviz_default_plugins/PointCloud2" and points["Color Transformer"] == "RGB8"
    # raw metres shown over a fixed range, not normalised per frame
    depth = displays[topics["depth"]]
    assert depth["Normalize Range"] is False and depth["Min Value"] == 0 and depth["Max Value"] >= 50
    # the camera may be best effort; a reliable display would see nothing from it
    assert displays[IMAGE_TOPIC]["Topic"]["Reliability Policy"] == "Best Effort"


# ----- with ROS 2 -------------------------------------------------------------------

def _load(path: Path):
    pytest.importorskip("launch", reason=NO_LAUNCH)
    pytest.importorskip("launch_ros", reason=NO_LAUNCH)
    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_generate_launch_description(path):
    module = _load(path)
    from launch import LaunchDescription

    assert isinstance(module.generate_launch_description(), LaunchDescription)


@pytest.mark.parametrize("rviz, count", [("false", 1), ("true", 2)])
def test_hydranet_launch_builds_the_nodes(rviz, count):
    module = _load(HYDRANET_LAUNCH)
    from launch_ros.actions import Node

    context = _context(use_sim_time="true", rviz=rviz, autostart="false")
    actions = module._launch_setup(context)
    assert len(actions) == count and all(isinstance(a, Node) for a in actions)
    # what each Node is made with: outputs next to the camera (the node and RViz in /cam),
    # autostart passed on, no DDS profile when it is switched off
    made = []
    module.Node = lambda **kwargs: made.append(kwargs) or kwargs
    module._launch_setup(context)
    assert [kwargs["namespace"] for kwargs in made] == ["/cam"] * count
    assert made[0]["parameters"][1]["autostart"] is False and made[0]["additional_env"] == {}
    assert "cameras" not in made[0]["parameters"][1]
    # with RViz the node publishes what its displays show, the cloud included
    shown = {"publish_depth_colour", "publish_segm_colour", "publish_points"}
    overrides = made[0]["parameters"][1]
    assert all(overrides[name] is True for name in shown) if rviz == "true" else not shown & set(overrides)


def _context(**values):
    from launch import LaunchContext

    context = LaunchContext()
    context.launch_configurations.update({
        "image_topic": "/cam/image_raw", "camera_info_topic": "", "input_transport": "", "weights": "",
        "device": "cpu", "params_file": str(ROOT / "config" / "hydranet.yaml"), "namespace": "",
        "use_sim_time": "false", "rviz": "true", "rviz_config": str(RVIZ), "log_level": "info",
        "autostart": "true", "dds_profile": "", "cameras": "", "fixed_frame": "", "publish_points": "",
        **values})
    return context


def test_hydranet_launch_with_several_cameras():
    module = _load(HYDRANET_LAUNCH)
    made = []
    module.Node = lambda **kwargs: made.append(kwargs) or kwargs
    # left_topic is not a declared argument: ros2 launch passes it on as a launch configuration
    module._launch_setup(_context(cameras="[front, left, right]", left_topic="/left/color/image_raw"))
    node, rviz = made
    assert node["parameters"][1]["cameras"] == ["front", "left", "right"] and node["namespace"] == ""
    remaps = dict(node["remappings"])
    assert remaps["front/image"] == "/front/image_raw" and remaps["right/camera_info"] == "/right/camera_info"
    assert remaps["left/image"] == "/left/color/image_raw" and remaps["left/depth/image"] == "/left/color/depth/image"
    # RViz shows the first camera, beside it
    assert rviz["namespace"] == "/front" and rviz["remappings"] == [("image", "/front/image_raw")]


def test_rviz_fixed_frame_argument():
    module = _load(HYDRANET_LAUNCH)
    made = []
    module.Node = lambda **kwargs: made.append(kwargs) or kwargs
    module._launch_setup(_context(fixed_frame="camera_optical"))
    assert made[1]["arguments"][-2:] == ["-f", "camera_optical"]
    made.clear()
    module._launch_setup(_context())
    assert "-f" not in made[1]["arguments"]


def test_rviz_with_the_points_switched_off():
    module = _load(HYDRANET_LAUNCH)
    made = []
    module.Node = lambda **kwargs: made.append(kwargs) or kwargs
    module._launch_setup(_context(publish_points="false"))
    overrides = made[0]["parameters"][1]
    assert overrides["publish_points"] is False and overrides["publish_depth_colour"] is True
