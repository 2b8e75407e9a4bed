"""The node's parameters tested without ROS 2: the table, the rules, the config, run-time
changes, misspelt names, the weights lookup and the generated docs."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from hydranet_ros.inference import shipped
from hydranet_ros.messages.topics import OUTPUT_SPECS
from hydranet_ros.node import main as node_main
from hydranet_ros.node import parameter_docs as docs
from hydranet_ros.node import parameters as params

ROOT = Path(__file__).resolve().parents[1]


def test_every_parameter_has_a_description_and_a_valid_default():
    assert len({p.name for p in params.PARAMS}) == len(params.PARAMS)
    for spec in params.PARAMS:
        assert len(spec.description) > 15, spec.name
        spec.check(spec.default)
    config = params.load_config({})
    assert config.outputs == ("depth", "labels", "overlay")
    assert config.depth_range is None and config.max_input_pixels == params.DEFAULT_MAX_INPUT_PIXELS
    assert config.qos_reliability == "auto" and config.qos_depth == 1 and config.autostart


def test_every_output_has_a_publish_switch():
    names = {p.name for p in params.PARAMS}
    for spec in OUTPUT_SPECS:
        assert params.publish_param(spec) in names
    on = {spec.name for spec in OUTPUT_SPECS if params.PARAMS_BY_NAME[params.publish_param(spec)].default}
    assert on == {"depth", "labels", "overlay"}


def test_shipped_yaml_holds_the_table_defaults():
    text = (ROOT / "config" / "hydranet.yaml").read_text()
    assert text == docs.parameters_yaml(), "regenerate config/hydranet.yaml from parameter_docs.parameters_yaml()"
    assert yaml.safe_load(text)["/**"]["ros__parameters"] == params.defaults()


@pytest.mark.parametrize("name, value, fragment", [
    ("overlay_alpha", 1.5, "[0, 1]"),
    ("overlay_alpha", True, "number"),
    ("overlay_alpha", "half", "number"),
    ("device", "gpu", "auto, cpu, cuda"),
    ("precision", "fp8", "auto, fp32, fp16, bf16"),
    ("backend", "tflite", "auto, eager, compile, cudagraph, onnxruntime, tensorrt"),
    ("qos_reliability", "sometimes", "auto, best_effort, reliable"),
    ("autostart", "yes", "true or false"),
    ("qos_depth", 0, ">= 1"),
    ("qos_depth", 2.5, "integer"),
    ("input_transport", "h264", "raw, compressed"),
    ("depth_colormap", "rainbow", "turbo"),
    ("publish_depth", "maybe", "true or false"),
    ("max_input_pixels", -1, ">= 0"),
    ("log_period", -2.0, ">= 0"),
    ("warmup_size", "640", "WIDTHxHEIGHT"),
    ("warmup_size", "0x480", "positive"),
    ("depth_display_max", float("nan"), "finite"),
    ("weights", 3, "string"),
    ("no_such_parameter", 1, "unknown parameter"),
    ("points_stride", 0, ">= 1"),
    ("points_max_depth", -1.0, ">= 0"),
    ("points_colour", "rainbow", "input, class"),
    ("points_exclude_classes", "sky", "list of strings"),
    ("cameras", ["front", "left", "front"], "'front' given more than once"),
    ("cameras", ["front", " "], "a camera name is empty"),
    ("cameras", ["front-left", "9lives"], "'front-left', '9lives' cannot prefix a topic"),
    ("batch_wait_ms", -1.0, ">= 0"),
])
def test_bad_parameter_is_named(name, value, fragment):
    with pytest.raises(params.ParamError) as info:
        params.load_config({name: value})
    message = str(info.value)
    assert f"parameter '{name}'" in message and fragment in message


def test_all_problems_are_reported_at_once():
    with pytest.raises(params.ParamError) as info:
        params.load_config({"overlay_alpha": 2.0, "qos_depth": 0, "device": "tpu"})
    assert {name for name, _ in info.value.problems} == {"overlay_alpha", "qos_depth", "device"}


def test_parameter_types_are_forgiving_where_unambiguous():
    config = params.load_config({"overlay_alpha": 1, "qos_depth": 3.0, "publish_depth_colour": "True",
                             "qos_reliability": " Reliable ", "max_input_pixels": 0})
    assert config.overlay_alpha == 1.0 and isinstance(config.overlay_alpha, float)
    assert config.qos_depth == 3 and config.qos_reliability == "reliable"
    assert "depth_colour" in config.outputs and config.max_input_pixels is None


def test_warmup_size_is_width_by_height_or_off():
    assert params.load_config({}).warmup_size == (640, 480)
    assert params.load_config({"warmup_size": "1242x375"}).warmup_size == (1242, 375)
    assert params.load_config({"warmup_size": ""}).warmup_size is None


def test_depth_display_range():
    assert params.load_config({"depth_display_min": 1.0, "depth_display_max": 50.0}).depth_range == (1.0, 50.0)
    with pytest.raises(params.ParamError, match="depth_display_min"):
        params.load_config({"depth_display_min": 60.0, "depth_display_max": 50.0})


def test_points_and_cameras_config():
    config = params.load_config({"cameras": ["front", "rear/left"], "batch_wait_ms": 5.0,
                                 "points_exclude_classes": [" sky ", "road"], "points_max_depth": 30.0})
    assert config.cameras == ("front", "rear/left") and config.batch_wait_s == pytest.approx(0.005)
    options = config.points_options(["sky", "building", "road"])
    assert options.exclude == (0, 2) and options.max_depth == 30.0 and options.stride == 4
    assert params.load_config({}).points_options(["sky"]).max_depth is None        # 0 = no limit
    with pytest.raises(params.ParamError, match="parameter 'points_exclude_classes': unknown class name.*'road'"):
        params.load_config({"points_exclude_classes": ["road"]}).points_options(["sky", "car"])


def test_all_outputs_off_is_an_error():
    off = {params.publish_param(spec): False for spec in OUTPUT_SPECS}
    with pytest.raises(params.ParamError, match="nothing to publish"):
        params.load_config({**off, "publish_depth_camera_info": False})
    assert params.load_config(off).outputs == ()   # camera info alone is still something
    assert params.load_config({**off, "publish_depth_camera_info": False, "publish_points": True}).publish_points


def test_a_precision_or_backend_the_device_cannot_run_falls_back_and_says_so(weights_file):
    from hydranet_ros.inference.predictor import load_predictor

    config = params.load_config({"device": "cpu", "precision": "fp16", "backend": "cudagraph"})
    predictor = load_predictor(weights_file, **config.predictor_options())
    assert (predictor.precision, predictor.backend) == ("fp32", "eager")
    assert params.fallback_notes(config, predictor.precision, predictor.backend) == [
        "precision fp16 cannot run here; running fp32", "backend cudagraph cannot run here; running eager"]
    assert params.fallback_notes(params.load_config({"device": "cpu"}), "fp32", "eager") == []  # auto is never a fallback


def test_device_is_checked_by_the_predictor_rules():
    if not torch.cuda.is_available():
        with pytest.raises(params.ParamError, match="parameter 'device'.*CUDA"):
            params.load_config({"device": "cuda"})
    else:
        with pytest.raises(params.ParamError, match="parameter 'device'.*CUDA device"):
            params.load_config({"device": f"cuda:{torch.cuda.device_count()}"})


def test_predictor_options_feed_load_predictor(weights_file):
    from hydranet_ros.inference.predictor import load_predictor

    config = params.load_config({"device": "cpu", "overlay_alpha": 0.25, "depth_display_max": 40.0,
                             "depth_colormap": "viridis"})
    predictor = load_predictor(weights_file, **config.predictor_options())
    assert predictor.overlay_alpha == 0.25 and predictor.depth_range == (0.0, 40.0)
    assert predictor.depth_colormap == "viridis"


def test_resolve_weights(tmp_path, monkeypatch):
    given = tmp_path / "w.safetensors"
    with pytest.raises(params.ParamError, match=f"parameter 'weights'.*{given}"):
        params.resolve_weights(str(given))
    given.write_bytes(b"x")
    assert params.resolve_weights(str(given)) == given

    missing = tmp_path / "share" / shipped.SHIPPED_WEIGHTS
    monkeypatch.setattr(shipped, "shipped_weights_candidates", lambda: [missing])
    with pytest.raises(params.ParamError, match=f"parameter 'weights': is empty.*{missing}.*set the parameter"):
        params.resolve_weights("")
    missing.parent.mkdir(parents=True)
    missing.write_bytes(b"x")
    assert params.resolve_weights("") == missing


def test_the_node_finds_the_shipped_weights_without_an_ament_index(monkeypatch):
    """A pip install (or a half-sourced shell): ament_index_python is importable but
    AMENT_PREFIX_PATH is unset, and the lookup must still find the package's own file."""
    pytest.importorskip("ament_index_python", reason="ament_index_python is not installed; nothing to unset")
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    assert shipped.ament_share_directory() is None
    path = params.resolve_weights("")
    assert path.is_file() and path == shipped.shipped_weights()


def test_one_lookup_for_every_tool_in_a_fresh_process():
    """replay and the node ask the same function; in a process with AMENT_PREFIX_PATH unset
    it finds the checkout's (or the install's) file and never raises."""
    code = ("from hydranet_ros.inference.shipped import shipped_weights; "
            "from hydranet_ros.node.parameters import resolve_weights; "
            "assert resolve_weights('') == shipped_weights(); print(shipped_weights())")
    env = {key: value for key, value in __import__("os").environ.items() if key != "AMENT_PREFIX_PATH"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_file()


# ----- run-time changes -------------------------------------------------------------

CONFIGURED = params.defaults() | {"device": "cpu"}


def test_a_live_change_gives_the_new_config():
    config = params.check_change(CONFIGURED, {"overlay_alpha": 0.9, "depth_colormap": "Viridis"}, configured=True)
    assert config.overlay_alpha == 0.9 and config.depth_colormap == "viridis"
    assert params.check_change(CONFIGURED, {"publish_depth_colour": True}, configured=True).outputs == \
        ("depth", "labels", "overlay", "depth_colour")
    # not ours (rclpy's use_sim_time): ignored
    assert params.check_change(CONFIGURED, {"use_sim_time": True}, configured=True) == params.load_config(CONFIGURED)


@pytest.mark.parametrize("changes, fragment", [
    ({"overlay_alpha": 1.5}, "[0, 1]"),
    ({"log_period": -1.0}, ">= 0"),
    ({"depth_display_min": 30.0, "depth_display_max": 20.0}, "must be below depth_display_max"),
    ({"publish_depth": False, "publish_labels": False, "publish_overlay": False,
      "publish_depth_camera_info": False}, "nothing to publish"),
    ({"weights": "/elsewhere.safetensors"}, "read at configure"),
    ({"warmup_size": "1280x720"}, "read at configure"),
    ({"max_input_pixels": 100}, "read at configure"),
    ({"autostart": False}, "read once at start-up"),
])
def test_a_change_the_rules_refuse_names_the_parameter(changes, fragment):
    with pytest.raises(params.ParamError) as info:
        params.check_change(CONFIGURED, changes, configured=True)
    assert fragment in str(info.value) and {name for name, _ in info.value.problems} & (set(changes) | {
        ", ".join([*(params.publish_param(s) for s in OUTPUT_SPECS), "publish_points"])})


def test_configure_time_parameters_may_change_while_unconfigured():
    assert params.check_change(CONFIGURED, {"weights": "/elsewhere.safetensors", "device": "cpu"},
                               configured=False) is None
    with pytest.raises(params.ParamError, match="parameter 'device'"):
        params.check_change(CONFIGURED, {"device": "tpu"}, configured=False)   # the rules still hold
    with pytest.raises(params.ParamError, match="read once at start-up"):
        params.check_change(CONFIGURED, {"autostart": False}, configured=False)


def test_a_change_may_not_add_a_problem_but_an_old_one_does_not_block_others():
    broken = CONFIGURED | {"depth_display_min": 60.0, "depth_display_max": 50.0}   # given so at start-up
    assert params.check_change(broken, {"weights": "/w.safetensors"}, configured=False) is None
    assert params.check_change(broken, {"depth_display_max": 80.0}, configured=False) is None
    with pytest.raises(params.ParamError, match="overlay_alpha"):
        params.check_change(broken, {"overlay_alpha": -1.0}, configured=False)


def test_every_parameter_says_when_a_change_takes_effect():
    live = {spec.name for spec in params.PARAMS if spec.applies == params.LIVE}
    assert live == {"overlay_alpha", "depth_display_min", "depth_display_max", "depth_colormap", "log_period",
                    "publish_depth_camera_info", "publish_label_info", "publish_points", "points_stride",
                    "points_max_depth", "points_exclude_classes", "points_organized", "points_colour",
                    "batch_wait_ms", *(params.publish_param(spec) for spec in OUTPUT_SPECS)}
    assert {spec.name for spec in params.PARAMS if spec.applies == params.START} == {"autostart"}


def test_numeric_parameters_carry_the_bounds_their_rule_checks():
    for spec in params.PARAMS:
        if isinstance(spec.default, bool) or not isinstance(spec.default, (int, float)):
            assert spec.bounds is None, spec.name
            continue
        lo, hi = spec.bounds
        spec.check(lo)
        with pytest.raises(ValueError):
            spec.check(lo - 1)
        if hi is not None:
            spec.check(hi)
            with pytest.raises(ValueError):
                spec.check(hi + 1)


def test_misspelt_overrides_are_named_with_the_closest_parameter():
    known = [spec.name for spec in params.PARAMS] + ["use_sim_time"]
    notes = params.unknown_overrides(["devcie", "weigths", "device", "frobnicate"], known)
    assert notes == ["'devcie' is not a parameter of hydranet_node and is ignored; did you mean 'device'?",
                     "'frobnicate' is not a parameter of hydranet_node and is ignored",
                     "'weigths' is not a parameter of hydranet_node and is ignored; did you mean 'weights'?"]
    assert params.unknown_overrides(["use_sim_time", "overlay_alpha"], known) == []


# ----- docs and --help ---------------------------------------------------------------

def test_usage_and_readme_table_list_every_parameter():
    usage, table = docs.format_usage(), docs.parameter_table_markdown()
    for spec in params.PARAMS:
        assert spec.name in usage
        assert f"| `{spec.name}` |" in table
    assert "| `overlay_alpha` | double | `0.5` | 0..1 | live |" in table
    assert "| `weights` | string | `\"\"` |  | at configure |" in table


def test_help_needs_no_ros(capsys):
    assert node_main.main(["hydranet_node", "--help"]) == 0
    out = capsys.readouterr().out
    assert "qos_reliability" in out and "depth/image" in out and "lifecycle" in out
    # arguments after --ros-args belong to ROS, not to us
    assert not node_main._wants_help(["hydranet_node", "--ros-args", "-h"])


def test_without_ros_main_fails_clearly(capsys, monkeypatch):
    from hydranet_ros.node import node

    monkeypatch.setattr(node, "ROS_IMPORT_ERROR", ImportError("No module named 'rclpy'"))
    assert node_main.main(["hydranet_node"]) == 1
    err = capsys.readouterr().err
    assert "ROS 2 is not available" in err and "No module named 'rclpy'" in err


def test_backend_reaches_the_predictor():
    config = params.load_config({"backend": "onnxruntime", "device": "cpu"})
    assert config.predictor_options()["backend"] == "onnxruntime"
    assert params.load_config({"device": "cpu"}).backend == "auto"
